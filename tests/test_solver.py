"""The recursive solver on every path, with the scripted LLM and fake sandboxes (fast, no Docker, no model).

The FakeSandbox decides pass/fail from a rule each test states about the files it is given, so a test only
passes when the solver sent the right code to the right run. Scripts match on the prompt tags of rcp.prompts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from pathlib import Path
from textwrap import dedent as d

import pytest
from fakes import FakeSandbox, LocalPytestSandbox, events_of, executes_tests, fails_when

from rcp import probe
from rcp.assemble import count_checks
from rcp.errors import DockerUnavailableError, ModelOutputError
from rcp.llm import ScriptedLLM
from rcp.prompts import QWEN_SYSTEM, Plan
from rcp.records import EventKind, TaskResult, TaskSpec, TraceNode
from rcp.settings import load_settings
from rcp.solver import (
    PlanError,
    Solver,
    error_cases,
    failing_tests,
    failure_text,
    module_name,
    one_class,
    several_classes,
    small_task,
    stated_errors,
    stated_raises,
    states_error,
    subtree_calls,
    subtree_tokens,
    task_methods,
    test_counts,
    validate_plan,
)

SCRIPTS = Path(__file__).parent / "scripts"
ARITH = "Write a Python module arith.py with functions add(a, b) and mul(a, b)"


def fence(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def root(goal: str, **kw) -> TaskSpec:
    return TaskSpec(goal=goal, root_task=goal, **kw)


@pytest.fixture
def settings():
    # One draft: most paths here are about what happens after a first attempt (voting has its own tests).
    return load_settings(environ={}).model_copy(update={"max_retries": 1, "drafts": 1, "max_depth": 2,
                                                         "max_subtasks": 4, "max_llm_calls": 60, "task_timeout": 60.0})


async def solve(solver: Solver, spec: TaskSpec) -> tuple[TaskResult, list]:
    events: list = []
    result = await solver.solve(spec, events.append)
    return result, events


def prompts_with(llm: ScriptedLLM, *needles: str) -> list[str]:
    texts = ["\n".join(m.content for m in p) for p in llm.prompts]
    return [t for t in texts if all(n in t for n in needles)]


ADD = "def add(a, b):\n    return a + b\n"
MUL = "def mul(a, b):\n    return a * b\n"
ADD_TESTS = "from arith import add\n\ndef test_add():\n    assert add(2, 3) == 5\n    assert add(-1, 1) == 0\n"
MUL_TESTS = "from arith import mul\n\ndef test_mul():\n    assert mul(2, 3) == 6\n    assert mul(0, 7) == 0\n"
ARITH_PLAN = {"parts": [
    {"name": "add", "kind": "function", "signature": "def add(a, b):", "behaviour": "a + b", "tests": ADD_TESTS},
    {"name": "mul", "kind": "function", "signature": "def mul(a, b):", "behaviour": "a * b", "tests": MUL_TESTS},
]}


def arith_rules(*, decide="decompose", root_code=ADD + MUL, add=ADD, mul=MUL, plan=None, extra=()):
    """Rules for the arith task; ``extra`` rules go first so a test can override one situation."""
    return [*extra,
            {"match": r"\[rcp:decide\]", "replies": [{"reason": "r", "action": decide}]},
            {"match": r"\[rcp:plan\]", "replies": plan or [ARITH_PLAN]},
            {"match": r"\[rcp:tests\]", "replies": [fence(ADD_TESTS + "\n" + MUL_TESTS)]},
            {"match": r"\[rcp:code\][\s\S]*Your part: def add\b", "replies": [fence(add)]},
            {"match": r"\[rcp:code\][\s\S]*Your part: def mul\b", "replies": [fence(mul)]},
            {"match": r"\[rcp:code\]", "replies": [fence(root_code)]}]


def arith_correct(files) -> str | None:
    """A rule that knows arithmetic: the module must define add and mul correctly wherever the tests use them."""
    code = next(v for k, v in files.items() if not k.startswith("test_"))
    tests = files["test_arith.py"]
    ns: dict = {}
    try:
        exec(code, ns)  # noqa: S102 - code from this file's scripts
    except Exception as e:
        return f"ERROR collecting: {e!r}"
    for name, args, want in [("add", (2, 3), 5), ("mul", (2, 3), 6)]:
        if f"test_{name}" in tests:
            got = ns[name](*args) if name in ns else "missing"
            if got != want:
                return f"test_{name}: assert {name}{args} == {want}, got {got}"
    return None


# --- direct --------------------------------------------------------------------------------------------------

async def test_solved_directly_with_the_direct_script(settings):
    llm = ScriptedLLM.from_file(SCRIPTS / "direct.json")
    sandbox = FakeSandbox(rule=lambda f: None if set(f) == {"solution.py", "test_solution.py"} else "wrong files")
    result, events = await solve(Solver(llm, sandbox, settings, node="n1"), root(
        "Write a Python function is_prime(n) with tests"))
    assert result.solved and result.verdict == "solved: 3 tests passed"
    assert result.module == "solution" and "def is_prime" in result.code and "from solution import" in result.tests
    assert events_of(events, result.task_id) == ["accepted", "decided", "tests", "tests", "attempt", "tested",
                                                  "result"]  # tests being written, then their count
    assert {e.node for e in events} == {"n1"}
    t = result.trace
    assert (t.decision, t.attempts, t.llm_calls, len(t.tests)) == ("direct", 1, 3, 1)
    assert t.tokens > 0 and t.solved
    # The sandbox ran pytest on exactly the returned files.
    assert sandbox.runs[-1].files == result.files
    assert sandbox.runs[-1].cmd[:3] == ["python3", "-m", "pytest"]


async def test_a_function_the_model_wrote_as_a_method_is_also_put_in_the_module(settings):
    # The 1.5B's shortener.py (bench at 1f7a25d): 7 of 9 programs wrote the task's functions as methods.
    task = ("Write a Python module codes.py with a function and a class.\n"
            "- `enc(n: int) -> str`: `n` in decimal.\n- class `Box` with `put(self, n: int) -> str`: `enc(n)`.")
    tests = "from codes import enc, Box\n\ndef test_enc():\n    assert enc(12) == '12'\n" \
            "    assert Box().put(3) == '3'\n"
    methods = "class Box:\n    def enc(self, n: int) -> str:\n        return str(n)\n\n" \
              "    def put(self, n: int) -> str:\n        return self.enc(n)\n"
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(methods)]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings), root(task, module="codes"))
    assert result.solved, result.verdict
    assert "\ndef enc(n: int) -> str:\n    return str(n)" in result.code and "def enc(self" in result.code


async def test_failure_is_fed_back_and_the_retry_passes(settings):
    bad = "def is_prime(n):\n    return n > 1  # BUG\n"
    good = "def is_prime(n):\n    return n > 1 and all(n % f for f in range(2, n))\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence("def test_four():\n    assert not is_prime(4)\n")]},
        {"match": r"\[rcp:code\]", "replies": [fence(bad), fence(good)]}])
    sandbox = FakeSandbox(rule=fails_when("BUG", "test_four: assert not is_prime(4)\nE   AssertionError: 4 is prime?"))
    result, events = await solve(Solver(llm, sandbox, settings), root("Write is_prime(n)."))
    assert result.solved and result.code.strip() == good.strip()
    retry = prompts_with(llm, "[rcp:code]", "Previous attempt")
    assert len(retry) == 1
    assert "E   AssertionError: 4 is prime?" in retry[0] and "# BUG" in retry[0]
    assert result.trace.attempts == 2
    assert [e.tests_failed for e in events if e.kind == EventKind.TESTED] == [1, 0]


async def test_when_only_one_functions_tests_fail_only_that_function_is_asked_again_and_merged(settings):
    buggy_mul = "def mul(a, b):\n    return a + b + 0  # BUG\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:code\][\s\S]*You fix one function", "replies": [fence(MUL)]},
        *arith_rules(decide="direct", root_code=ADD + "\n\n" + buggy_mul)])
    sandbox = FakeSandbox(rule=arith_correct)
    result, events = await solve(Solver(llm, sandbox, settings), root(ARITH))
    assert result.solved and "def add(a, b):\n    return a + b" in result.code and "BUG" not in result.code
    [fix] = prompts_with(llm, "You fix one function")
    assert "These tests of `mul` fail" in fix and "def test_mul" in fix and "def test_add" not in fix
    assert "# BUG" in fix  # the module it fixes is shown
    assert any("`mul` rewritten in the module" in e.message for e in events)


async def test_a_repeated_attempt_is_not_rerun_and_the_next_is_sampled_hotter(settings):
    bad = "def is_prime(n):\n    return n > 1  # BUG\n"
    same = '"""The same program: only the docstring and comments differ."""\n\n\ndef is_prime(n):\n' \
           '    """Prime?"""\n    return n > 1  # BUG again\n'
    good = "def is_prime(n):\n    return n > 1 and all(n % f for f in range(2, n))\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence("def test_four():\n    assert not is_prime(4)\n")]},
        {"match": r"\[rcp:code\]", "replies": [fence(bad), fence(same), fence(good)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "4 = 2 * 2 is not prime", "wrong": "code"}]}])
    sandbox = FakeSandbox(rule=fails_when("BUG", "test_four: assert not is_prime(4)\nE   AssertionError"))
    result, events = await solve(Solver(llm, sandbox, settings.model_copy(update={"max_retries": 2})),
                                 root("Write is_prime(n)."))
    assert result.solved and result.code.strip() == good.strip()
    assert len(sandbox.runs) == 2  # the repeat was not run again
    code_calls = [c for c, p in zip(llm.calls, llm.prompts, strict=True) if "[rcp:code]" in p[0].content]
    assert [c.temperature for c in code_calls] == [llm.temperature, llm.temperature, llm.temperature + 0.35]
    assert len(prompts_with(llm, "[rcp:code]", "this same code again")) == 1
    assert any("the same code as an earlier attempt" in e.message for e in events if e.kind == EventKind.ATTEMPT)
    assert result.trace.attempts == 3


async def test_a_whole_task_is_drafted_anew_instead_of_retried_whole(settings):
    # Measured on the 1.5B: 12 of 14 first retries of a whole module repeated the code shown (bench traces).
    tests = ("from solution import double\n\n\ndef test_double():\n    assert double(3) == 6\n"
             "    assert double(5) == 10\n")
    plus, times, right = ("def double(x):\n    return x + 3\n", "def double(x):\n    return x * 3\n",
                          "def double(x):\n    return 2 * x\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "2 * 5 is 10", "wrong": "code"}] * 3},
        {"match": r"\[rcp:code\]", "replies": [fence(plus), fence(times), fence(plus), fence(right)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_retries": 3}))
    result, events = await solve(solver, root("Write a Python function `double(x)` returning 2 * x."))
    assert result.solved and result.code.strip() == right.strip()
    attempts = [e.message for e in events if e.kind == EventKind.ATTEMPT]
    assert "attempt 3: a new draft, the same code as an earlier attempt" in attempts
    assert "attempt 4: a new draft, 2 lines" in attempts
    assert not prompts_with(llm, "Previous attempt")  # no retry of the whole module
    # Each new draft is the plain ask, sampled as hot as the drafts after the first.
    code_calls = [(c, p) for c, p in zip(llm.calls, llm.prompts, strict=True) if "[rcp:code]" in p[0].content]
    assert len(code_calls) == 4
    assert all(p[-1].content == code_calls[0][1][-1].content and c.temperature == 0.8 for c, p in code_calls[1:])


async def test_unusable_replies_count_as_failed_attempts(settings):
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": ["I think direct", {"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence("def test_one():\n    assert one() == 1\n")]},
        {"match": r"\[rcp:code\]", "replies": ["Sorry, I cannot help.", fence("def one():\n    return 1\n")]}])
    result, _ = await solve(Solver(llm, FakeSandbox(), settings), root("Write one() returning 1."))
    assert result.solved
    assert result.trace.attempts == 2 and result.trace.llm_calls == 5  # 2 decide, 1 tests, 2 code
    assert any(n.startswith("decide: model reply is not") and "Decision" in n for n in result.trace.notes)
    assert prompts_with(llm, "[rcp:code]", "could not be used")


async def test_at_max_depth_there_is_no_decision_and_no_decomposition(settings):
    llm = ScriptedLLM(rules=arith_rules(root_code=ADD + "def mul(a, b):\n    return a + b\n"))
    solver = Solver(llm, FakeSandbox(rule=arith_correct), settings.model_copy(update={"max_depth": 0}))
    result, _ = await solve(solver, root(ARITH))
    assert not result.solved and result.trace.decision == "direct"
    assert not prompts_with(llm, "[rcp:decide]") and not prompts_with(llm, "[rcp:plan]")
    assert result.trace.attempts == 2  # max_retries=1: two attempts, then an honest "not solved"
    assert result.verdict.startswith("not solved: the tests still fail")


async def test_a_single_function_contract_that_keeps_failing_is_not_split(settings):
    from rcp.records import Contract
    contract = Contract(name="add", kind="function", signature="def add(a, b):", behaviour="a + b", tests=ADD_TESTS)
    spec = TaskSpec(goal="add(a, b)", root_task=ARITH, contract=contract, module="arith", depth=1,
                    parent_id="p1", llm_calls=20)
    llm = ScriptedLLM(rules=arith_rules(add="def add(a, b):\n    return a - b\n"))
    result, events = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings), spec)
    assert not result.solved and result.trace.decision == "direct" and not result.trace.children
    assert not prompts_with(llm, "[rcp:decide]") and not prompts_with(llm, "[rcp:plan]")
    assert result.trace.attempts == 2 and result.verdict.startswith("not solved: the tests still fail")


async def test_examples_the_task_states_are_tests_no_review_can_drop(settings):
    goal = "Write is_prime(n), e.g. `is_prime(9) == False` and `is_prime(2) == True`."
    wrong_test = "def test_nine():\n    assert is_prime(9) == True\n"  # the model's own check, wrong
    bad = "def is_prime(n):\n    return n % 2 == 1 or n == 2  # BUG\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(wrong_test)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "9 = 3 * 3", "wrong": "test"}]},
        {"match": r"\[rcp:code\]", "replies": [fence(bad)]}])
    sandbox = LocalPytestSandbox()
    result, _ = await solve(Solver(llm, sandbox, settings.model_copy(update={"max_retries": 3, "max_depth": 0})),
                            root(goal))
    assert "assert is_prime(9) == False" in result.tests and "assert is_prime(2) == True" in result.tests
    # The review judged a failing check "wrong", yet the task's own example stayed, so the buggy code never passes.
    assert not result.solved and "assert is_prime(9) == False" in sandbox.runs[-1].files["test_solution.py"]


async def test_a_check_one_draft_passes_is_not_reviewed_away(settings):
    # Measured on the 1.5B (romans.py, offline): a review judged `is_roman('IIII') == False` wrong though 1 of the 3
    # drafts passed it; the 7 wrong checks reviews judged were passed by none. Here drafts 1 and 2 fail only
    # `count_vowels('AEI') == 3` alike, which draft 3 passes (it fails `test_empty`), so no vote drops it either.
    tests = ("from solution import count_vowels\n\n\ndef test_empty():\n    assert count_vowels('') == 0\n\n\n"
             "def test_word():\n    assert count_vowels('banana') == 3\n\n\n"
             "def test_upper():\n    assert count_vowels('AEI') == 3\n")
    wrong = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n"
    wrong_2 = "def count_vowels(s):\n    return len([c for c in s if c in 'aeiou'])\n"
    upper_neg = "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s) or -1\n"  # '' is -1
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "AEI are capitals, not vowels", "wrong": "test"}]},
        {"match": r"\[rcp:code\]", "replies": [fence(c) for c in (wrong, wrong_2, upper_neg, wrong)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 3}))
    result, _ = await solve(solver, root("Write count_vowels(s)."))
    # Without the draft's backing the review would drop the check and `wrong` would pass as solved.
    assert not result.solved and "count_vowels('AEI') == 3" in result.tests, result.trace.notes
    assert not prompts_with(llm, "[rcp:review]")
    assert "kept 1 doubted check(s) a draft of 3 passes: assert count_vowels('AEI') == 3" in result.trace.notes


# --- decomposition ------------------------------------------------------------------------------------------

async def test_direct_fails_then_decompose_children_integrate(settings):
    wrong = ADD + "def mul(a, b):\n    return a + b\n"
    llm = ScriptedLLM(rules=arith_rules(decide="direct", root_code=wrong))
    sandbox = FakeSandbox(rule=arith_correct)
    result, events = await solve(Solver(llm, sandbox, settings), root(ARITH))
    assert result.solved and result.module == "arith"
    assert "return a * b" in result.code and "return a + b" in result.code
    # The final tests are the parts' contract tests (the failed attempt's generated tests are not kept).
    assert "def test_add" in result.tests and "def test_mul" in result.tests
    t = result.trace
    assert t.decision == "decompose" and t.reason.startswith("as needed")
    # Three direct rounds (two attempts each) failed before the split (DIRECT_ROUNDS).
    assert t.attempts == 6 and len(t.children) == 2 and all(c.solved for c in t.children)
    # The planner saw why the direct attempt failed.
    assert "assert mul(2, 3) == 6, got 5" in prompts_with(llm, "[rcp:plan]")[0]
    kinds = events_of(events, result.task_id)
    assert kinds[:2] == ["accepted", "decided"] and kinds[-3:] == ["integrating", "tested", "result"]
    assert [e.message for e in events if e.task_id == result.task_id and e.kind == EventKind.DECIDED][1:] == [
        "direct again: not split (1 failed direct round(s): a whole task is split after 3)",
        "direct again: not split (2 failed direct round(s): a whole task is split after 3)",
        "decompose: the direct attempt failed its tests"]
    assert "planned" in kinds
    # The integration run holds both parts and both parts' tests.
    last = sandbox.runs[-1]
    assert "def add" in last.code and "def mul" in last.code and "test_add" in last.tests and "test_mul" in last.tests


async def test_a_plan_check_the_tasks_drafts_refute_is_dropped_and_the_part_held_to_its_own_tests(settings):
    # The plan gets add's only example wrong; both drafts of the whole task agree add(2, 3) is 5 (and crash on mul,
    # which is why the task was split). A part cannot drop its contract's only check, even on a review agreeing it
    # is wrong, so without this the add part is rejected however right it is, and the module is never solved.
    drafts = [ADD + "def mul(a, b):\n    raise NotImplementedError\n",
              "def add(a, b):\n    return b + a\n\n\ndef mul(a, b):\n    raise NotImplementedError('later')\n"]
    wrong_add = "from arith import add\n\ndef test_add():\n    assert add(2, 3) == 6\n"
    plan = {"parts": [{**ARITH_PLAN["parts"][0], "tests": wrong_add}, ARITH_PLAN["parts"][1]]}
    llm = ScriptedLLM(rules=arith_rules(decide="direct", plan=[plan], extra=[
        {"match": r"\[rcp:tests\][\s\S]*Your part: def add", "replies": [fence(ADD_TESTS)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "2 + 3 is 5", "wrong": "test"}]},
        {"match": r"\[rcp:integrate\]", "replies": [fence(ADD + MUL)]},
        {"match": r"\[rcp:code\](?![\s\S]*Your part)", "replies": [fence(c) for c in drafts]}]))  # the whole task
    sandbox = LocalPytestSandbox()
    solver = Solver(llm, sandbox, settings.model_copy(update={"drafts": 2}))
    result, events = await solve(solver, root(ARITH))
    assert result.trace.decision == "decompose" and result.solved and "return a * b" in result.code
    assert "part add: dropped 1 check(s) of the plan that the task's 2 drafts refute: assert add(2, 3) == 6" \
        in result.trace.notes
    # The mul part's example stands: the drafts crash there, which refutes nothing.
    assert not any(n.startswith("part mul: dropped") for n in result.trace.notes)
    assert "add(2, 3) == 6" not in result.tests and "assert add(2, 3) == 5" in result.tests
    assert not any(e.kind == EventKind.REJECTED for e in events)
    # The add part, with no check left, asked for tests of add alone (its module has a sibling it must not test) ...
    asks = prompts_with(llm, "[rcp:tests]", "Your part: def add")
    assert asks and all("Write only `test_add`" in a for a in asks)
    # ... and the parent re-ran the tests it wrote, as its contract had none left.
    assert any("def test_add" in r.tests and "def add" in r.code and "def mul" not in r.code and
               "add(2, 3) == 6" not in r.tests for r in sandbox.runs)


async def test_refuted_plan_checks_spare_the_tasks_examples_and_stated_errors(settings):
    """What _without_refuted weighs, on the task's own drafts (real pytest): both give add(-1, 1) == 0 and
    add(2, 3) == 5. A check of a stated error is kept though both drafts fail it alike, as is the task's example."""
    import asyncio

    from rcp.records import Contract
    from rcp.solver import _Task  # the bookkeeping itself: the plan step alone, without the rounds before it

    task = ARITH + ".\n\n- `add(a, b)`: the sum; raises `ValueError` if `a` is negative, e.g. `add(1, 1) == 3`."
    tests = ("import pytest\nfrom arith import add\n\ndef test_add():\n    assert add(2, 3) == 6\n"
             "    assert add(1, 1) == 3\n    with pytest.raises(ValueError):\n        add(-1, 1)\n"
             "    assert add(0, 0) == 0\n")
    spec = root(task, module="arith")
    loop = asyncio.get_running_loop()
    t = _Task(spec=spec, emit=lambda e: None, trace=TraceNode(task_id="a", goal=task), started=loop.time(),
              deadline=loop.time() + 60, calls_budget=9, calls_left=9)
    t.program(ADD + MUL, True, "draft 1")
    t.program("def add(a, b):\n    return b + a\n\n\ndef mul(a, b):\n    return b * a\n", True, "draft 2")
    contract = Contract(name="add", kind="function", signature="def add(a, b):", behaviour="a + b", tests=tests)
    [kept] = await Solver(ScriptedLLM(replies=["unused"]), LocalPytestSandbox(), settings)._without_refuted(
        t, [contract])
    assert "add(2, 3) == 6" not in kept.tests  # refuted: both drafts give 5
    assert "assert add(1, 1) == 3" in kept.tests  # the task's own example: never dropped
    assert "pytest.raises(ValueError)" in kept.tests and "add(-1, 1)" in kept.tests  # a stated error: kept
    assert "assert add(0, 0) == 0" in kept.tests  # both drafts pass it
    assert t.trace.notes == ["part add: dropped 1 check(s) of the plan that the task's 2 drafts refute: "
                             "assert add(2, 3) == 6"]


async def test_events_are_in_a_sensible_order(settings):
    llm = ScriptedLLM.from_file(SCRIPTS / "delegate.json")
    result, events = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings), root(ARITH))
    assert result.solved
    rid = result.task_id
    kinds = [(e.task_id == rid, e.kind.value) for e in events]
    assert kinds[0] == (True, "accepted") and kinds[-1] == (True, "result")
    children = {e.task_id for e in events if e.parent_id == rid}
    assert len(children) == 2
    planned = kinds.index((True, "planned"))
    integrating = kinds.index((True, "integrating"))
    for cid in children:
        idx = [i for i, e in enumerate(events) if e.task_id == cid]
        assert planned < idx[0] and idx[-1] < integrating  # parts run between planning and integration
        assert events_of(events, cid)[0] == "accepted" and events_of(events, cid)[-1] == "result"
        assert all(e.depth == 1 and e.parent_id == rid for e in events if e.task_id == cid)
    # Elapsed time never runs backwards within one task.
    for tid in children | {rid}:
        el = [e.elapsed_s for e in events if e.task_id == tid]
        assert el == sorted(el)


async def test_invalid_plan_is_asked_again_with_the_error_and_not_executed(settings):
    dup = {"parts": [ARITH_PLAN["parts"][0], ARITH_PLAN["parts"][0]]}
    llm = ScriptedLLM(rules=arith_rules(plan=[dup, {"parts": "no"}, ARITH_PLAN]))
    sandbox = FakeSandbox(rule=arith_correct)
    result, events = await solve(Solver(llm, sandbox, settings), root(ARITH))
    assert result.solved
    plans = prompts_with(llm, "[rcp:plan]")
    assert len(plans) == 3
    assert "rejected" not in plans[0]
    assert "part name add is used twice" in plans[1]
    assert "not a valid Plan" in plans[2]
    # Only the valid plan ran: one PLANNED event, two parts.
    assert events_of(events, result.task_id).count("planned") == 1
    assert len(result.trace.children) == 2


async def test_a_plan_that_never_validates_ends_in_a_direct_attempt(settings):
    bad = {"parts": [{**ARITH_PLAN["parts"][0], "signature": "def plus(a, b):"}, ARITH_PLAN["parts"][1]]}
    llm = ScriptedLLM(rules=arith_rules(plan=[bad]))
    result, _ = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings), root(ARITH))
    assert len(prompts_with(llm, "[rcp:plan]")) == 3  # one plan and two re-asks, then give up on planning
    assert result.solved and result.trace.children == []
    assert "decomposition did not succeed; trying directly" in result.trace.notes


@pytest.mark.parametrize(("change", "error"), [
    ({"parts": [{**ARITH_PLAN["parts"][0], "name": f"p{i}", "signature": f"def p{i}(a, b)",
                 "tests": f"def test_p():\n    assert p{i}(1, 2)\n"} for i in range(5)]},
     "it has 5 parts; it must have 2 to 4"),
    ({"0": {"name": "add me"}}, "part name 'add me' is not a Python identifier"),
    ({"0": {"signature": "def add(a, b"}}, "does not parse"),
    ({"0": {"signature": "def plus(a, b):"}}, "its signature defines plus, not add"),
    ({"0": {"kind": "class"}}, "kind is class but the signature is a function"),
    ({"0": {"tests": ""}}, "part add has no tests"),
    ({"0": {"tests": "def test_x(:"}}, "tests is not valid Python"),
    ({"0": {"tests": "def test_x():\n    assert mul(1, 1) == 1\n"}}, "its tests never use add"),
    ({"0": {"tests": "def test_x():\n    add(1, 1)\n"}}, "its tests have no assert"),
    ({"0": {"tests": "def test_x():\n    assert add(mul(1, 2), 1) == 3\n"}},
     "part add: its tests all use mul, another part; each part is tested alone"),
])
def test_validate_plan_names_each_problem(change, error):
    data = json.loads(json.dumps(ARITH_PLAN))
    if "parts" in change:
        data = change
    else:
        data["parts"][0].update(change["0"])
    with pytest.raises(PlanError, match=error.replace("(", r"\(").replace(")", r"\)")):
        validate_plan(Plan.model_validate(data), module="arith", max_parts=4)


def test_a_part_test_that_uses_another_part_moves_to_the_integration():
    """Seen on the 1.5B: total_area's contract tests built Rectangles, which do not exist where it is tested alone."""
    plan = json.loads(json.dumps(ARITH_PLAN))
    plan["parts"][0]["tests"] = ("from arith import add, mul\n\ndef test_add():\n    assert add(1, 2) == 3\n\n"
                                 "def test_add_of_products():\n    assert add(mul(1, 2), 1) == 3\n")
    contracts, together = validate_plan(Plan.model_validate(plan), module="arith", max_parts=4)
    assert contracts[0].tests == "from arith import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    assert together == "from arith import add, mul\n\ndef test_add_of_products():\n    assert add(mul(1, 2), 1) == 3\n"
    assert contracts[1].tests == validate_plan(Plan.model_validate(ARITH_PLAN), module="arith",
                                               max_parts=4)[0][1].tests
    # A helper outside the tests that builds another part cannot be split: the plan is asked again.
    plan["parts"][0]["tests"] = ("from arith import add, mul\n\nTWO = mul(1, 2)\n\ndef test_add():\n"
                                 "    assert add(TWO, 1) == 3\n\ndef test_add_2():\n    assert add(1, 1) == 2\n")
    with pytest.raises(PlanError, match="part add: its tests all use mul"):
        validate_plan(Plan.model_validate(plan), module="arith", max_parts=4)


SHAPES = ("Write a module shapes.py with a class `Square(side)` with `area(self)`, a class `Disc(r)` with "
          "`area(self)` (3 * r * r) and a function `total_area(shapes)`.")
SQUARE = "class Square:\n    def __init__(self, side):\n        self.side = side\n\n    def area(self):\n" \
         "        return self.side ** 2\n"
DISC = "class Disc:\n    def __init__(self, r):\n        self.r = r\n\n    def area(self):\n" \
       "        return 3 * self.r ** 2\n"
TOTAL = "def total_area(shapes):\n    return sum(s.area() for s in shapes)\n"
SHAPES_PLAN = {"parts": [
    {"name": "Square", "kind": "class", "signature": "class Square:\n    def __init__(self, side)\n    def area(self)",
     "behaviour": "a square",
     "tests": "from shapes import Square\n\ndef test_square():\n    assert Square(2).area() == 4\n"},
    {"name": "Disc", "kind": "class", "signature": "class Disc:\n    def __init__(self, r)\n    def area(self)",
     "behaviour": "a disc", "tests": "from shapes import Disc\n\ndef test_disc():\n    assert Disc(1).area() == 3\n"},
    {"name": "total_area", "kind": "function", "signature": "def total_area(shapes)", "behaviour": "sum of areas",
     "tests": "from shapes import total_area, Square, Disc\n\nclass Fake:\n    def area(self):\n        return 2\n\n"
              "def test_fake():\n    assert total_area([Fake(), Fake()]) == 4\n\n"
              "def test_mixed():\n    assert total_area([Square(2), Disc(1)]) == 7\n"}]}


async def test_a_task_naming_two_classes_is_split_up_front_and_cross_part_tests_run_at_integration(settings):
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:plan\]", "replies": [SHAPES_PLAN]},
        # The total_area part writes tests that build a sibling, which it could never pass alone.
        {"match": r"\[rcp:tests\][\s\S]*total_area",
         "replies": [fence("from shapes import total_area, Square\n\ndef test_empty():\n    assert total_area([]) == 0"
                           "\n\ndef test_squares():\n    assert total_area([Square(1)]) == 1\n")]},
        {"match": r"\[rcp:tests\]", "replies": [fence("def test_nothing_more():\n    assert True\n")]},
        {"match": r"\[rcp:code\][\s\S]*Your part: class Square", "replies": [fence(SQUARE)]},
        {"match": r"\[rcp:code\][\s\S]*Your part: class Disc", "replies": [fence(DISC)]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def total_area", "replies": [fence(TOTAL)]}])
    sandbox = LocalPytestSandbox()
    result, _ = await solve(Solver(llm, sandbox, settings), root(SHAPES))
    assert prompts_with(llm, "[rcp:decide]") == []
    assert result.trace.decision == "decompose" and "2 classes (Square, Disc)" in result.trace.reason
    assert result.solved and len(result.trace.children) == 3 and all(c.solved for c in result.trace.children)
    # Each part ran alone on tests that use nothing but itself ...
    alone = [r for r in sandbox.runs if "def total_area" in r.code and "class Square" not in r.code]
    assert alone and all("Square(" not in r.tests and "Disc(" not in r.tests for r in alone)
    assert all("test_fake" in r.tests for r in alone) and "test_empty" in alone[0].tests  # generated: kept
    assert "test_squares" not in "".join(r.tests for r in sandbox.runs)  # generated, used Square: dropped
    # ... and the plan's tests that need several parts ran once they were assembled.
    last = sandbox.runs[-1]
    assert "test_mixed" in last.tests and "test_square" in last.tests and "test_disc" in last.tests
    assert "test_empty" in last.tests  # a solved part's own tests come along into the module's tests
    assert "test_mixed" in " ".join(result.trace.notes)


def test_validate_plan_rejects_the_whole_task_as_a_part_and_fixes_imports():
    from rcp.records import Contract
    parent = Contract(name="add", kind="function", signature="def add(a, b)", behaviour="sum")
    with pytest.raises(PlanError, match="part add is the whole task"):
        validate_plan(Plan.model_validate(ARITH_PLAN), module="arith", max_parts=4, parent=parent)
    plan = json.loads(json.dumps(ARITH_PLAN))
    plan["parts"][0]["tests"] = "def test_add():\n    assert add(1, 1) == 2\n"  # no import at all
    contracts, _ = validate_plan(Plan.model_validate(plan), module="calc", max_parts=4)
    assert contracts[0].tests.startswith("from calc import add\n")
    assert contracts[1].tests.startswith("from calc import mul")  # `from arith import` rewritten to our module


async def test_mission_context_reaches_a_grandchild_and_glue_is_written(settings, monkeypatch):
    """root -> class Stack (decomposed again) -> helpers push_item/pop_item; Stack is glued from them."""
    monkeypatch.setattr("rcp.solver.SMALL_TASK_NAMES", 1)  # a class part of more methods than this may be split
    goal = "Write a module stack.py with a class Stack (push, pop) and a function describe(stack)."
    stack_sig = "class Stack:\n    def push(self, item)\n    def pop(self)"
    stack_tests = ("from stack import Stack\n\ndef test_stack():\n    s = Stack()\n    s.push(1)\n    s.push(2)\n"
                   "    assert s.pop() == 2\n    assert s.pop() == 1\n")
    describe_tests = ("from stack import describe\n\ndef test_describe():\n    assert describe([1]) == '1 items'\n"
                      "    assert describe([]) == '0 items'\n")
    push_tests = ("def test_push():\n    items = []\n    push_item(items, 3)\n    assert items == [3]\n"
                  "    assert len(items) == 1\n")
    pop_tests = "def test_pop():\n    items = [1, 2]\n    assert pop_item(items) == 2\n    assert items == [1]\n"
    broken = "class Stack:\n    def push(self, item):\n        pass\n\n    def pop(self):\n        return None\n"
    rules = [
        {"match": r"\[rcp:decide\][\s\S]*Your part: class Stack",
         "replies": [{"reason": "two", "action": "decompose"}]},
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "two parts", "action": "decompose"}]},
        {"match": r"\[rcp:plan\][\s\S]*Your part: class Stack", "replies": [{"parts": [
            {"name": "push_item", "kind": "function", "signature": "def push_item(items, item)",
             "behaviour": "append item", "tests": push_tests},
            {"name": "pop_item", "kind": "function", "signature": "def pop_item(items)",
             "behaviour": "remove and return the last item", "tests": pop_tests}]}]},
        {"match": r"\[rcp:plan\]", "replies": [{"parts": [
            {"name": "Stack", "kind": "class", "signature": stack_sig, "behaviour": "LIFO stack",
             "tests": stack_tests},
            {"name": "describe", "kind": "function", "signature": "def describe(stack)",
             "behaviour": "'<n> items'", "tests": describe_tests}]}]},
        # A class part is tried directly first; this one fails, so it is decomposed as needed.
        {"match": r"\[rcp:code\][\s\S]*Your part: class Stack", "replies": [fence(broken)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "pop must return what was pushed", "wrong": "code"}]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def push_item",
         "replies": [fence("def push_item(items, item):\n    items.append(item)\n")]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def pop_item",
         "replies": [fence("def pop_item(items):\n    return items.pop()\n")]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def describe",
         "replies": [fence("def describe(stack):\n    return f'{len(stack)} items'\n")]},
        {"match": r"\[rcp:integrate\][\s\S]*Missing: class Stack", "replies": [fence(
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
            "        push_item(self.items, item)\n\n    def pop(self):\n        return pop_item(self.items)\n")]},
    ]
    llm = ScriptedLLM(rules=rules)
    # The fake sandbox really runs the module's tests (in-process): the glued class must work.
    result, events = await solve(Solver(llm, FakeSandbox(rule=executes_tests), settings), root(goal))
    assert result.solved, result.verdict
    assert result.module == "stack"
    # The class part was tried directly first (no decide call for it), then split when that failed.
    assert prompts_with(llm, "[rcp:code]", "Your part: class Stack")
    assert not prompts_with(llm, "[rcp:decide]", "Your part: class Stack")
    leaf = prompts_with(llm, "[rcp:code]", "Your part: def push_item")[0]
    assert f"Mission (the whole project): {goal}" in leaf
    assert "Path: Write a module stack.py" in leaf and " > Write class Stack: LIFO stack" in leaf
    assert "- def pop_item(items)" in leaf  # its sibling's signature
    assert "def push_item" not in leaf.split("Other parts")[1]  # not itself
    # Depth 2 is the limit here: the grandchildren never asked to decide.
    assert not prompts_with(llm, "[rcp:decide]", "Your part: def push_item")
    stack = next(c for c in result.trace.children if "Stack" in c.goal)
    assert stack.decision == "decompose" and len(stack.children) == 2 and stack.solved
    assert max(e.depth for e in events) == 2

    # With the default limit a two-method class part that fails is not split (seen on the 1.5B: every plan for a
    # small class was "the whole task"): no plan for it, and the root reports the failure honestly.
    monkeypatch.undo()
    llm = ScriptedLLM(rules=[*rules, {"match": r"\[rcp:integrate\]", "replies": [fence(broken)]},
                             # the root's direct attempt after the failed decomposition: still broken
                             {"match": r"\[rcp:tests\]", "replies": [fence(stack_tests)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(broken)]}])
    result, events = await solve(Solver(llm, FakeSandbox(rule=executes_tests), settings), root(goal))
    assert not prompts_with(llm, "[rcp:plan]", "Your part: class Stack") and not result.solved
    assert max(e.depth for e in events) == 1


# --- contract enforcement and delegation ----------------------------------------------------------------------

def peer_result(spec: TaskSpec, code: str) -> TaskResult:
    """What a (lying) peer returns: claims success with whatever code it likes."""
    return TaskResult(task_id=spec.task_id, solved=True, verdict="solved: trust me", module=spec.module,
                      code=code, tests="", trace=TraceNode(task_id=spec.task_id, goal=spec.goal, node="peer",
                                                           solved=True, llm_calls=1))


@pytest.mark.parametrize(("bad_add", "problem"), [
    ("def add(x, y, z):\n    return x + y + z\n", "signature changed: add has parameters (x, y, z)"),
    ("def add(a, b):\n    return a - b\n", "its contract tests fail"),
])
async def test_a_child_breaking_its_contract_is_rejected_and_solved_again_here(settings, bad_add, problem):
    async def peer(spec: TaskSpec, emit) -> TaskResult:
        return peer_result(spec, bad_add if spec.contract.name == "add" else MUL)

    llm = ScriptedLLM(rules=arith_rules())
    sandbox = FakeSandbox(rule=arith_correct)
    result, events = await solve(Solver(llm, sandbox, settings, delegate=peer), root(ARITH))
    assert result.solved and bad_add not in result.code and ADD.strip() in result.code
    rejected = [e for e in events if e.kind == EventKind.REJECTED]
    assert len(rejected) == 1 and rejected[0].message.startswith(f"add: {problem}")
    # The part was solved again here, and its prompt carried the evidence.
    again = prompts_with(llm, "[rcp:code]", "Your part: def add")
    assert len(again) == 1 and "Evidence: The returned code was rejected" in again[0]
    assert not prompts_with(llm, "Your part: def mul")  # mul kept its contract: not redone


async def test_a_failing_or_timed_out_delegate_falls_back_to_solving_here(settings):
    async def peer(spec: TaskSpec, emit) -> TaskResult:
        if spec.contract.name == "add":
            await asyncio.wait_for(asyncio.sleep(10), 0.05)  # the swarm's per-peer timeout firing
        raise RuntimeError("peer 12D3 closed the stream")

    llm = ScriptedLLM(rules=arith_rules())
    result, events = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings, delegate=peer), root(ARITH))
    assert result.solved
    fallbacks = sorted(e.message for e in events if e.kind == EventKind.FALLBACK)
    assert fallbacks[0].startswith("add: the peer failed (TimeoutError")
    assert fallbacks[1].startswith("mul: the peer failed (RuntimeError: peer 12D3 closed the stream)")
    kinds = events_of(events, result.task_id)
    assert kinds.count("delegated") == 2 and kinds.index("delegated") < kinds.index("fallback")
    assert len(result.trace.children) == 2 and all(c.node == "local" for c in result.trace.children)


async def test_children_get_context_and_a_share_of_the_budgets(settings):
    seen: list[TaskSpec] = []

    async def peer(spec: TaskSpec, emit) -> TaskResult:
        seen.append(spec)
        return peer_result(spec, ADD if spec.contract.name == "add" else MUL)

    llm = ScriptedLLM(rules=arith_rules())
    spec = root(ARITH, timeout_s=100.0, llm_calls=20)
    result, _ = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings, delegate=peer), spec)
    assert result.solved
    assert sorted(s.contract.name for s in seen) == ["add", "mul"]
    for s in seen:
        assert s.parent_id == spec.task_id and s.depth == 1 and s.module == "arith"
        assert s.root_task == ARITH and s.ancestors == [ARITH]
        other = "mul" if s.contract.name == "add" else "add"
        assert s.siblings == [f"def {other}(a, b)"]
        assert s.timeout_s <= 100.0 * 0.8  # the rest of the time is kept for integration
    # 2 calls used (decide, plan); of 18 left, max_retries + 2 = 3 are kept for integration, the parts share 15.
    assert [s.llm_calls for s in seen] == [7, 7]
    assert subtree_calls(result.trace) == 2 + 2  # own calls + what the peers reported


async def test_integration_failure_in_one_part_re_solves_that_part_with_evidence(settings):
    mul_v1 = "def mul(a, b):\n    return a * b  # v1\n"
    mul_v2 = "def mul(a, b):\n    return b * a  # v2\n"

    def rule(files):
        code = files["arith.py"]
        if "test_add" in files["test_arith.py"] and "# v1" in code:
            return "test_mul: in the module, mul(2, 3) returned 5 (v1 clashes)"
        return arith_correct(files)

    llm = ScriptedLLM(rules=arith_rules(mul=mul_v1, extra=[
        {"match": r"\[rcp:code\][\s\S]*Your part: def mul[\s\S]*Evidence:", "replies": [fence(mul_v2)]}]))
    result, events = await solve(Solver(llm, FakeSandbox(rule=rule), settings), root(ARITH))
    assert result.solved and "# v2" in result.code
    again = prompts_with(llm, "Your part: def mul", "Evidence:")
    assert len(again) == 1 and "mul(2, 3) returned 5 (v1 clashes)" in again[0]
    assert any(e.kind == EventKind.REJECTED and e.message.startswith("mul: its tests fail in the assembled")
               for e in events)
    assert not prompts_with(llm, "[rcp:integrate]")
    assert len(result.trace.children) == 3  # add, mul, mul again


async def test_a_child_that_honestly_failed_its_contract_is_not_solved_again_with_the_same_tests(settings):
    wrong = MUL_TESTS.replace("mul(0, 7) == 0", "mul(0, 7) == 7")  # a contract check the planner got wrong
    plan = {"parts": [ARITH_PLAN["parts"][0], {**ARITH_PLAN["parts"][1], "tests": wrong}]}

    def rule(files):
        if "mul(0, 7) == 7" in files["test_arith.py"]:
            return "test_mul: assert mul(0, 7) == 7\nE   assert 0 == 7"
        return arith_correct(files)

    llm = ScriptedLLM(rules=arith_rules(plan=[plan], extra=[
        {"match": r"\[rcp:review\]", "replies": [{"reason": "0 * 7 is 0", "wrong": "code"}]},
        {"match": r"\[rcp:integrate\]", "replies": [fence(ADD + MUL)]}]))
    result, events = await solve(Solver(llm, FakeSandbox(rule=rule), settings), root(ARITH))
    # The integration cannot pass the wrong check; the direct attempt after it passes its own tests.
    assert result.solved and result.trace.decision == "decompose" and "return a * b" in result.code
    # The child's own two attempts (max_retries=1), and no third or fourth one at the parent.
    assert len(prompts_with(llm, "[rcp:code]", "Your part: def mul")) == 2
    assert not prompts_with(llm, "Your part: def mul", "Evidence:")
    assert any("mul: not solved again here" in n for n in result.trace.notes)
    assert [e.message.split(":")[0] for e in events if e.kind == EventKind.REJECTED] == ["mul"]


async def test_integration_failure_across_parts_asks_the_model_to_fix_the_module(settings):
    def rule(files):
        code, tests = files["arith.py"], files["test_arith.py"]
        if "test_add" in tests and "test_mul" in tests and "# fixed" not in code:
            return "test_add: arith.py clash\ntest_mul: arith.py clash"
        return arith_correct(files)

    llm = ScriptedLLM(rules=arith_rules(extra=[
        {"match": r"\[rcp:integrate\]", "replies": [fence("# fixed\n" + ADD + "\n\n" + MUL)]}]))
    result, _ = await solve(Solver(llm, FakeSandbox(rule=rule), settings), root(ARITH))
    assert result.solved and "# fixed" in result.code
    fix = prompts_with(llm, "[rcp:integrate]")
    assert len(fix) == 1 and "arith.py clash" in fix[0] and "- def add(a, b)" in fix[0]


# --- guard rails ----------------------------------------------------------------------------------------------

def three_tests_rule(files):
    """Fails the tests a code marker names: attempt markers decide how good an attempt is."""
    code = files[next(k for k in files if not k.startswith("test_"))]
    if "# two-bad" in code:
        return "test_a failed\ntest_b failed"
    if "# one-bad" in code:
        return "test_c failed"
    return None


THREE_TESTS = "def test_a():\n    assert f()\n\ndef test_b():\n    assert f()\n\ndef test_c():\n    assert f()\n"


async def test_llm_call_budget_ends_cleanly_with_the_best_result(settings):
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(THREE_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence("def f():\n    return 1  # one-bad\n"),
                                               fence("def f():\n    return 0  # two-bad\n")]}])
    solver = Solver(llm, FakeSandbox(rule=three_tests_rule), settings.model_copy(update={"max_retries": 9}))
    result, events = await solve(solver, root("Write f().", llm_calls=5))
    assert len(llm.prompts) == 5 and result.trace.llm_calls == 5
    assert not result.solved
    assert result.verdict == "not solved: LLM-call budget of 5 calls used up; the best code passed 2 of 3 tests"
    assert "# one-bad" in result.code and result.tests.count("def test_") == 3
    assert events[-1].kind == EventKind.RESULT and events[-1].tests_passed == 2


async def test_wall_clock_budget_ends_cleanly_with_the_best_result(settings):
    llm = ScriptedLLM(rules=[
        {"match": r"Previous attempt", "replies": [fence("def f():\n    return 1\n")], "delay": 30},
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(THREE_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence("def f():\n    return 1  # one-bad\n")]}])
    started = time.monotonic()
    result, events = await solve(Solver(llm, FakeSandbox(rule=three_tests_rule), settings),
                                 root("Write f().", timeout_s=1.0))
    took = time.monotonic() - started
    assert took < 1.5  # the 30 s call was cut off at the deadline, never waited for
    assert not result.solved and result.verdict.startswith("not solved: wall-clock budget of 1 s used up")
    assert "# one-bad" in result.code
    assert events[-1].kind == EventKind.RESULT


async def test_parts_that_run_out_of_time_leave_an_honest_verdict(settings):
    llm = ScriptedLLM(rules=arith_rules(extra=[
        {"match": r"\[rcp:code\][\s\S]*Your part: def mul", "replies": [fence(MUL)], "delay": 30},
        # With mul missing, the parent asks for a fix of the module; that model call is slow too.
        {"match": r"\[rcp:integrate\]", "replies": [fence(ADD + MUL)], "delay": 30}]))
    result, _ = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings), root(ARITH, timeout_s=2.0))
    assert not result.solved and "wall-clock" in result.verdict
    mul = next(c for c in result.trace.children if "mul" in c.goal)
    assert not mul.solved and any("wall-clock" in n for n in mul.notes)


async def test_a_plan_that_leaves_its_parts_too_little_time_is_not_run(settings):
    # Measured on the 1.5B (calc.py, 600 s): a plan accepted late left each of its four parts 4 s, and all four
    # ended with no code. A part gets at least a tenth of its parent's time, else the time left goes to a direct try.
    llm = ScriptedLLM(rules=arith_rules(extra=[{"match": r"\[rcp:plan\]", "replies": [ARITH_PLAN], "delay": 4.2}]))
    result, _ = await solve(Solver(llm, FakeSandbox(rule=arith_correct), settings), root(ARITH, timeout_s=5.0))
    assert not result.trace.children
    assert any(re.fullmatch(r"plan not run: [01] s left, too little for its parts", n) for n in result.trace.notes)
    assert "decomposition did not succeed; trying directly" in result.trace.notes and result.solved


async def test_cancelling_solve_cancels_the_delegated_children(settings):
    started, cancelled = [], []
    both = asyncio.Event()

    async def peer(spec: TaskSpec, emit) -> TaskResult:
        started.append(spec.contract.name)
        if len(started) == 2:
            both.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(spec.contract.name)
            raise
        raise AssertionError("not reached")

    llm = ScriptedLLM(rules=arith_rules())
    task = asyncio.create_task(Solver(llm, FakeSandbox(), settings, delegate=peer).solve(root(ARITH), lambda e: None))
    await asyncio.wait_for(both.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["add", "mul"]


async def test_cancelling_solve_cancels_children_solved_in_process(settings):
    llm = ScriptedLLM(rules=arith_rules(extra=[{"match": r"Your part: def", "replies": [fence(ADD)], "delay": 60}]))
    events: list = []
    task = asyncio.create_task(Solver(llm, FakeSandbox(), settings).solve(root(ARITH), events.append))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if sum(e.kind == EventKind.ACCEPTED for e in events) == 3:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no orphaned child left running
    assert not any(e.kind == EventKind.RESULT for e in events)


async def test_infrastructure_errors_propagate(settings):
    llm = ScriptedLLM.from_file(SCRIPTS / "direct.json")
    broken = FakeSandbox(error=DockerUnavailableError("Docker does not answer; start it with `dockerd &`"))
    with pytest.raises(DockerUnavailableError):
        await Solver(llm, broken, settings).solve(root("Write a Python function is_prime(n) with tests"),
                                                  lambda e: None)


async def test_infrastructure_errors_in_a_part_propagate_unwrapped(settings):
    llm = ScriptedLLM.from_file(SCRIPTS / "delegate.json")
    broken = FakeSandbox(error=DockerUnavailableError("Docker does not answer"))
    with pytest.raises(DockerUnavailableError):  # not an ExceptionGroup from the TaskGroup
        await Solver(llm, broken, settings).solve(root(ARITH), lambda e: None)


async def test_a_broken_progress_display_does_not_break_the_task(settings):
    def emit(event):
        raise OSError("terminal gone")

    llm = ScriptedLLM.from_file(SCRIPTS / "direct.json")
    result = await Solver(llm, FakeSandbox(), settings).solve(root("Write a Python function is_prime(n)"), emit)
    assert result.solved


# --- helpers --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("goal", "module"), [
    ("Write a module inventory.py with a class Inventory", "inventory"),
    ("Create a Python module named textstats that counts words", "textstats"),
    ("Write a module `geometry` with area functions", "geometry"),
    ("Write a module that parses dates", "solution"),
    ("Write a Python function is_prime(n) with tests", "solution"),
    ("Put it in test_foo.py and bar.py", "bar"),
    ("Write conftest.py with helpers", "solution"),  # pytest would run it before collecting any test
])
def test_module_name(goal, module):
    assert module_name(goal) == module


async def test_pytest_output_is_parsed_from_a_real_run():
    sandbox = LocalPytestSandbox()
    files = {"m.py": "def f():\n    return 1\n",
             "test_m.py": "from m import f\n\ndef test_ok():\n    assert f() == 1\n\n"
                          "def test_bad():\n    assert f() == 2, 'f is not 2'\n\nclass TestK:\n"
                          "    def test_in_class(self):\n        assert f() == 3\n"}
    report = await sandbox.run(files, ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short"])
    assert test_counts(report) == (1, 2)
    assert test_counts(report.model_copy(update={"tests_passed": None, "tests_failed": None})) == (1, 2)
    assert failing_tests(report) == {"test_bad", "TestK"}
    text = failure_text(report)
    assert "f is not 2" in text and "assert 1 == 3" in text and "short test summary" not in text


def test_subtree_sums():
    leaf = TraceNode(task_id="b", goal="g", llm_calls=2, tokens=10)
    top = TraceNode(task_id="a", goal="g", llm_calls=3, tokens=5, children=[leaf, leaf])
    assert subtree_calls(top) == 7 and subtree_tokens(top) == 25


# --- the shipped scripts under real pytest ---------------------------------------------------------------------

@pytest.mark.parametrize(("script", "goal", "tests"), [
    ("direct", "Write a Python function is_prime(n) with tests", 3),
    ("delegate", ARITH, 4),
])
async def test_scripts_pass_real_pytest(settings, script, goal, tests):
    llm = ScriptedLLM.from_file(SCRIPTS / f"{script}.json")
    sandbox = LocalPytestSandbox()
    result, _ = await solve(Solver(llm, sandbox, settings), root(goal))
    assert result.solved and result.verdict == f"solved: {tests} tests passed"
    assert sandbox.runs[-1].report.tests_passed == tests


@pytest.mark.docker
@pytest.mark.parametrize(("script", "goal"), [("direct", "Write a Python function is_prime(n) with tests"),
                                              ("delegate", ARITH)])
async def test_scripts_pass_in_the_docker_sandbox(settings, sandbox_image, script, goal):
    from rcp.sandbox import DockerSandbox, SandboxLimits
    sandbox = await DockerSandbox.create(sandbox_image, SandboxLimits.from_settings(settings))
    try:
        result, _ = await solve(Solver(ScriptedLLM.from_file(SCRIPTS / f"{script}.json"), sandbox, settings),
                                root(goal))
    finally:
        await sandbox.close()
    assert result.solved, result.verdict


@pytest.mark.docker
@pytest.mark.model
@pytest.mark.timeout(1800)
async def test_real_model_and_docker_on_a_two_part_task(settings, sandbox_image):
    """The real 0.5B model with the real sandbox. What must hold is honesty, not success: a small model may fail,
    but the run must end within its budget, and `solved` must mean the returned code passes in Docker."""
    model = settings.resolve(os.environ.get("RCP_TEST_MODEL", "models/qwen2.5-coder-0.5b-instruct.gguf"))
    if not model.is_file():
        pytest.skip(f"{model.name} not present; fetch it with: python -m rcp.models fetch {model.stem}")
    from rcp.llm import LlamaCppLLM
    from rcp.sandbox import DockerSandbox, SandboxLimits
    llm = await LlamaCppLLM.create(model, n_threads=settings.n_threads, n_ctx=settings.n_ctx, max_tokens=768,
                                   temperature=0.2, seed=1234)
    sandbox = await DockerSandbox.create(sandbox_image, SandboxLimits.from_settings(settings))
    # Two parts with easy expected values. In trials the 0.5B solved it once through a real decomposition and
    # failed once (its own tests expected is_even(3) to be True), so only honesty is asserted.
    goal = ("Write a Python module mathx.py with two functions: square(x) returns x * x, and "
            "is_even(n) returns True when the integer n is even, else False.")
    try:
        solver = Solver(llm, sandbox, settings.model_copy(update={"max_retries": 2, "max_depth": 1,
                                                                  "task_timeout": 600.0}))
        started = time.monotonic()
        result, events = await solve(solver, root(goal, timeout_s=900.0, llm_calls=24))
        took = time.monotonic() - started
        assert took < 900 and events[-1].kind == EventKind.RESULT
        assert subtree_calls(result.trace) <= 24
        assert any(e.kind == EventKind.TESTED for e in events)  # generated code really ran in Docker
        if result.solved:
            # Check the claim independently: the returned files, run again in a fresh container, pass.
            report = await sandbox.run(result.files, ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"])
            assert report.exit_code == 0 and (report.tests_passed or 0) > 0
        else:
            assert result.verdict.startswith("not solved")
    finally:
        await sandbox.close()
        await llm.close()


# --- wrong expected values in model-written tests -------------------------------------------------------------

VOWELS = "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)\n"
VOWEL_TESTS = ("from solution import count_vowels\n\n\ndef test_empty():\n    assert count_vowels('') == 0\n\n\n"
               "def test_word():\n    assert count_vowels('hello world') == 2\n\n\n"
               "def test_upper():\n    assert count_vowels('AEI') == 3\n")


def vowel_rules(verdict: str):
    return [{"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
            {"match": r"\[rcp:tests\]", "replies": [fence(VOWEL_TESTS)]},
            {"match": r"\[rcp:code\]", "replies": [fence(VOWELS)]},
            {"match": r"\[rcp:review\]", "replies": [{"reason": "h-e-l-l-o w-o-r-l-d has e, o, o: 3",
                                                      "wrong": verdict}]}]


async def test_a_check_the_review_judges_wrong_is_dropped_and_the_code_passes(settings):
    llm = ScriptedLLM(rules=vowel_rules("test"))
    sandbox = LocalPytestSandbox()  # real pytest output: the failing assert is found in its traceback
    result, _ = await solve(Solver(llm, sandbox, settings), root("Write count_vowels(s)."))
    assert result.solved and result.verdict == "solved: 2 tests passed"
    assert "hello world" not in result.tests and "test_upper" in result.tests
    # Asked only after two attempts failed the same way, and shown the assert and what pytest said.
    reviews = prompts_with(llm, "[rcp:review]")
    assert len(reviews) == 1 and len(prompts_with(llm, "[rcp:code]")) == 2
    assert "assert count_vowels('hello world') == 2" in reviews[0] and "assert 3 == 2" in reviews[0]
    assert any(n.startswith("dropped 1 check(s) judged wrong") for n in result.trace.notes)


async def test_a_check_the_review_upholds_stays_and_the_task_is_not_solved(settings):
    llm = ScriptedLLM(rules=vowel_rules("code"))
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root("Write count_vowels(s)."))
    assert not result.solved and "hello world" in result.tests
    assert result.verdict.endswith("the best code passed 2 of 3 tests")


async def test_reviews_never_drop_more_than_a_third_of_the_checks(settings):
    wrong_all = VOWEL_TESTS.replace("== 0", "== 9").replace("== 3", "== 8")  # every expectation is wrong
    rules = vowel_rules("test")
    rules[1] = {"match": r"\[rcp:tests\]", "replies": [fence(wrong_all)]}
    llm = ScriptedLLM(rules=rules)
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0,
                                                                                         "max_retries": 3})),
                            root("Write count_vowels(s)."))
    assert not result.solved
    # 3 checks: one may go after a review, never more, however often the model blames the tests.
    assert len(prompts_with(llm, "[rcp:review]")) == 1
    assert [n for n in result.trace.notes if n.startswith("dropped")] == [
        "dropped 1 check(s) judged wrong: assert count_vowels('') == 9"]
    assert len(prompts_with(llm, "[rcp:code]")) == 4


MATMUL_TESTS = ("from solution import multiply\n\n\ndef test_square():\n"
                "    assert multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]\n\n\n"
                "def test_ragged():\n    assert multiply([[1, 2], [3, 4]], [[1, 2], [3]]) == [[7, 10], [15, 22]]\n\n\n"
                "def test_one():\n    assert multiply([[2]], [[3]]) == [[6]]\n")
MATMUL_A = ("def multiply(a, b):\n    return [[sum(a[i][k] * b[k][j] for k in range(len(b)))"
            " for j in range(len(b[0]))] for i in range(len(a))]\n")
MATMUL_B = ("def multiply(a, b):\n    out = []\n    for row in a:\n        out.append([sum(row[k] * b[k][j] "
            "for k in range(len(b))) for j in range(len(b[0]))])\n    return out\n")


async def test_a_check_whose_call_crashes_alike_is_neither_a_vote_nor_reviewed(settings):
    # Seen on the 1.5B (matrix.py): a generated test fed multiply a ragged matrix the task never defines, and the
    # right drafts all raised IndexError on it; a review dropped it. But in intervals.py a review dropped the right
    # `merge([(1, 2), (2, 4)]) == [(1, 4)]` on which the drafts raised TypeError: a shared crash is no evidence.
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(MATMUL_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(MATMUL_A), fence(MATMUL_B), fence(MATMUL_A)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "b is not a matrix", "wrong": "test"}]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2,
                                                                                         "max_depth": 0})),
                            root("Write multiply(a, b), the product of two matrices."))
    assert not [n for n in result.trace.notes if "drafts agree" in n]  # the same IndexError is no agreed value
    assert not prompts_with(llm, "[rcp:review]") and not result.solved and "test_ragged" in result.tests
    assert "kept 1 doubted check(s) no two of 2 drafts fail alike: assert multiply([[1, 2], [3, 4]], [[1, 2], [3]])" \
        " == [[7, 10], [15, 22]]" in result.trace.notes


RHYTHM_TESTS = ("from solution import count_vowels\n\n\ndef test_word():\n    assert count_vowels('banana') == 3\n\n\n"
                "def test_none():\n    assert count_vowels('rhythm') == 1\n")  # wrong: no vowel in rhythm
RHYTHM_A = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n"
RHYTHM_B = "def count_vowels(s):\n    return len([c for c in s if c in 'aeiou'])\n"  # 0 on rhythm, as RHYTHM_A
RHYTHM_NEG = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s) or -1\n"  # -1 on rhythm
RHYTHM_H = "def count_vowels(s):\n    return sum(c in 'aeiouh' for c in s)\n"  # 2 on rhythm


@pytest.mark.parametrize("second", [RHYTHM_B, RHYTHM_H])
async def test_only_a_check_two_drafts_fail_with_one_value_is_reviewed(settings, second):
    # No vote drops `count_vowels('rhythm') == 1`: the three drafts do not all give one value. When two give 0, a
    # review judges it (and here drops it); when all three give another value, the check stays unreviewed.
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(RHYTHM_TESTS)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "rhythm has no vowel", "wrong": "test"}]},
        {"match": r"Previous attempt", "replies": [fence(RHYTHM_A)]},
        {"match": r"\[rcp:code\]", "replies": [fence(RHYTHM_A), fence(second), fence(RHYTHM_NEG)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 3}))
    result, _ = await solve(solver, root("Write count_vowels(s)."))
    assert not [n for n in result.trace.notes if "drafts agree" in n]
    if second == RHYTHM_B:
        assert len(prompts_with(llm, "[rcp:review]")) == 1 and result.solved
        assert "rhythm" not in result.tests
    else:
        assert not prompts_with(llm, "[rcp:review]") and not result.solved and "rhythm" in result.tests
        assert "kept 1 doubted check(s) no two of 3 drafts fail alike: assert count_vowels('rhythm') == 1" in \
            result.trace.notes


async def test_every_program_a_task_writes_is_logged_once_at_debug_with_its_tests(settings, caplog):
    # A bench's --traces keeps the node logs, so another choice among a task's programs can be graded later.
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(RHYTHM_TESTS)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "rhythm has no vowel", "wrong": "code"}]},
        # A new draft repeating draft 1 (not logged again), then another.
        {"match": r"\[rcp:code\]", "replies": [fence(RHYTHM_A), fence(RHYTHM_B), fence(RHYTHM_NEG),
                                                fence(RHYTHM_A + "# again\n"), fence(RHYTHM_H + "\n")]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 2}))
    with caplog.at_level(logging.DEBUG, logger="rcp.solver"):
        result, _ = await solve(solver, root("Write count_vowels(s)."))
    logged = [r.getMessage() for r in caplog.records if ": program (" in r.getMessage()]
    tid = result.task_id
    assert [m.split("\n", 1)[0] for m in logged] == [
        f"task {tid}: program (draft 1, draft)", f"task {tid}: program (draft 2, draft)",
        f"task {tid}: program (draft 3, draft)", f"task {tid}: program (draft 5, draft)"]
    assert logged[1].split("\n", 1)[1] == RHYTHM_B and logged[3].split("\n", 1)[1] == RHYTHM_H
    tests = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"task {tid}: tests\n")]
    assert len(tests) == 1 and "count_vowels('rhythm') == 1" in tests[0]


FG_TASK = "Write a module fg.py with `f(x: int) -> int` (returns x) and `g(x: int) -> int` (returns 2 * x)."
FG = ["def f(x):\n    return x\n\n\ndef g(x):\n    return 2 * x\n",
      "def f(x):\n    return x + 0\n\n\ndef g(x):\n    return x * 2\n"]


M_DOUBLE = "class M:\n    def double(self, x):\n        return 2 * x\n"
M_HALF = "\n    def half(self, x):\n        return x / 2\n"


async def test_an_ask_for_the_missed_functions_is_left_after_an_unusable_reply(settings):
    # Measured on the 1.5B (textstats.py): a reply without code, then tests missing two of four functions, and no
    # ask left for those two. At most one ask more: here the model never tests half, and it stops after three.
    # (A task of several functions asks for each one's tests apart: see the next test. One class is asked whole.)
    task = "Write a module m.py with a class `M` with methods `double(self, x)` and `half(self, x)`."
    one = "from m import M\n\ndef test_double():\n    assert M().double(3) == 6\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": ["I cannot.", fence(one)]},
        {"match": r"\[rcp:code\]", "replies": [fence(M_DOUBLE + M_HALF)]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root(task))
    asks = prompts_with(llm, "[rcp:tests]")
    assert len(asks) == 3 and "Test only `half`" in asks[2] and "Test only `" not in asks[1]
    assert not result.solved and "never use half" in result.verdict


@pytest.mark.parametrize("other_g_check", [False, True])
async def test_no_vote_or_review_drops_the_last_check_of_a_function_the_task_names(settings, other_g_check):
    tests = "from fg import f, g\n\n\ndef test_f():\n    assert f(1) == 1\n\n\ndef test_g():\n    assert g(2) == 5\n"
    if other_g_check:
        tests += "\n\ndef test_g_one():\n    assert g(1) == 2\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(c) for c in FG]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "2 * 2 is 4", "wrong": "test"}]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2,
                                                                                         "max_depth": 0})),
                            root(FG_TASK))
    # Both drafts agree g(2) is 4. With another check of g the wrong one goes; as g's only check it stays, so the
    # module is not claimed solved on a test of f alone, and no review is asked to drop it either.
    assert result.solved is other_g_check
    assert ("g(2) == 5" in result.tests) is not other_g_check
    assert not prompts_with(llm, "[rcp:review]")
    assert ("kept 1 doubted check(s): the only ones of g" in result.trace.notes) is not other_g_check


async def test_passing_tests_that_never_use_a_named_function_are_no_solution(settings):
    # Measured on the 1.5B (intervals.py): asked twice, the model tested only merge, and the module was "solved".
    only_f = "from fg import f\n\n\ndef test_f():\n    assert f(1) == 1\n"
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(only_f)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(FG[0])]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root(FG_TASK))
    assert not result.solved and result.code == FG[0]
    assert result.verdict == ("not solved: no attempt was tested on everything the task names; the best code passed "
                              "its 1 tests, which never use g")
    # No retry of code that passes: the tests, not the code, are what is missing.
    # Tests asked for: all, then g alone twice (once as a second ask, once as the ask more that missed names get).
    assert len(prompts_with(llm, "[rcp:code]")) == 1 and len(prompts_with(llm, "[rcp:tests]")) == 3


VOWELS_2 = "def count_vowels(s):\n    return len([c for c in s.lower() if c in 'aeiou'])\n"
VOWELS_3 = "def count_vowels(s):\n    n = 0\n    for c in s:\n        if c.lower() in 'aeiou':\n            n += 1\n" \
           "    return n\n"


VOWEL_TASK = ("Write a Python module solution.py with this function.\n\n"
              "- `count_vowels(s: str) -> int`: how many characters of `s` are vowels (aeiou, in any case).")


@pytest.mark.parametrize("timeout, together", [(600.0, [3]), (200.0, [])])
async def test_a_whole_tasks_drafts_are_written_together_while_there_is_time_for_all(settings, timeout, together):
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(VOWEL_TESTS)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(VOWELS_2), fence(VOWELS), fence(VOWELS_3)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0}))
    result, events = await solve(solver, root(VOWEL_TASK, timeout_s=timeout))
    assert llm.together == together  # with less than TOGETHER_MIN_S left, one at a time (a deadline cuts one)
    assert (events[[e.message for e in events].index("drafts 1-3: written together")].kind == EventKind.ATTEMPT) \
        if together else not any("together" in e.message for e in events)
    # Every draft is run and voted on either way; all three pass, so the vote chooses among them.
    assert result.solved and result.trace.attempts == 3 and len(prompts_with(llm, "rcp:code")) == 3
    assert any(n.startswith("3 of 3 drafts passed the tests") for n in result.trace.notes)
    assert result.trace.llm_calls == 1 + 3 + sum(1 for p in llm.prompts if "Errors to check" in p[-1].content)


FG_LIST_TASK = ("Write a Python module solution.py with these functions.\n\n- `f(x: int) -> int`: returns x.\n"
                "- `g(x: int) -> int`: returns 2 * x.")  # typed, so it has fuzz calls (as a whole task's drafts need)
FG_TESTS = ("from solution import f, g\n\n\ndef test_f():\n    assert f(1) == 1\n    assert f(3) == 3\n\n\n"
            "def test_g():\n    assert g(2) == 4\n    assert g(5) == 10\n")


def fg(f: str, g: str) -> str:
    return fence(f"def f(x):\n    return {f}\n\n\ndef g(x):\n    return {g}\n")


def fg_rules(code_replies: list[str], fixes: list[str]) -> list[dict]:
    return [{"match": r"\[rcp:tests\]", "replies": [fence(FG_TESTS)]},
            {"match": r"\[rcp:review\]", "replies": [{"reason": "as the task says", "wrong": "code"}]},
            *([{"match": r"These tests of `g` fail", "replies": fixes}] if fixes else []),
            {"match": r"\[rcp:code\]", "replies": code_replies}]


FG_WRONG_DRAFTS = [fg("x + 1", "x * 3"), fg("0", "0"), fg("-x", "x")]  # each fails f and g, no two alike


async def test_a_whole_tasks_new_drafts_are_written_together_and_taken_by_the_retries_in_turn(settings):
    llm = ScriptedLLM(rules=fg_rules([*FG_WRONG_DRAFTS, FG_WRONG_DRAFTS[1], fence(FG[0]), fg("x", "x + 2")], []))
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_retries": 3,
                                                                          "max_depth": 0}))
    result, events = await solve(solver, root(FG_LIST_TASK, timeout_s=600.0))
    assert llm.together == [2, 3, 3]  # tests of f and g, the first drafts, then the 3 retries' new drafts
    attempts = [e.message for e in events if e.kind == EventKind.ATTEMPT]
    assert "attempts 4-6: new drafts written together" in attempts
    assert "attempt 4: a new draft, the same code as an earlier attempt" in attempts
    assert "attempt 5: a new draft, 6 lines" in attempts
    assert result.solved and result.code.strip() == FG[0].strip() and result.trace.attempts == 5
    assert len(prompts_with(llm, "[rcp:code]")) == 6  # the third new draft was written, and not needed


async def test_new_drafts_written_together_that_no_retry_took_still_run_and_vote(settings):
    # Attempt 4's new draft mends f: the retries after it fix g alone (one-function fixes, both wrong), and the
    # two new drafts written with it are run after the last retry: the second of them is right.
    llm = ScriptedLLM(rules=fg_rules([*FG_WRONG_DRAFTS, fg("x", "x + 2"), fg("x", "x"), fence(FG[1])],
                                     [fence("def g(x):\n    return x - 1\n"), fence("def g(x):\n    return 4\n")]))
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_retries": 3,
                                                                          "max_depth": 0}))
    result, events = await solve(solver, root(FG_LIST_TASK, timeout_s=600.0))
    assert llm.together == [2, 3, 3] and len(prompts_with(llm, "These tests of `g` fail")) == 2
    attempts = [e.message for e in events if e.kind == EventKind.ATTEMPT]
    assert attempts.index("attempt 7: a new draft, 6 lines") < attempts.index("attempt 8: a new draft, 6 lines")
    assert result.solved and result.code.strip() == FG[1].strip() and result.trace.attempts == 8


async def test_drafts_that_agree_against_a_check_drop_it_without_asking_the_model(settings):
    rules = vowel_rules("code")  # a review would uphold the wrong check: voting must not need one
    rules[2] = {"match": r"\[rcp:code\]", "replies": [fence(VOWELS), fence(VOWELS_2), fence(VOWELS_2)]}
    llm = ScriptedLLM(rules=rules)
    sandbox = LocalPytestSandbox()
    result, events = await solve(Solver(llm, sandbox, settings.model_copy(update={"drafts": 3, "max_depth": 0})),
                                 root("Write count_vowels(s)."))
    assert result.solved and result.verdict == "solved: 2 tests passed"
    assert "hello world" not in result.tests and "test_upper" in result.tests
    assert not prompts_with(llm, "[rcp:review]")
    assert [n for n in result.trace.notes if "drafts agree" in n] == [
        "2 drafts agree against 1 check(s), dropped: assert count_vowels('hello world') == 2 "
        "(AssertionError: assert 3 == 2 +  where 3 = count_vowels('hello world'))"]
    # Every draft is the task asked plainly (the model's default system prompt, the task text alone): the first at
    # the base temperature, the others hotter. None sees the tests.
    code_asks = [p for p in llm.prompts if "[rcp:code]" in p[0].content]
    assert [[m.content for m in ask] for ask in code_asks] == [[f"[rcp:code] {QWEN_SYSTEM}",
                                                                "Write count_vowels(s)."]] * 3
    code_calls = [c for c, p in zip(llm.calls, llm.prompts, strict=True) if "[rcp:code]" in p[0].content]
    assert [c.temperature for c in code_calls] == [llm.temperature, 0.8, 0.8]
    messages = [e.message for e in events if e.kind == EventKind.ATTEMPT]
    assert "draft 3: the same code as an earlier draft" in messages
    # 2 drafts run, then both again without the dropped check; both pass, and one probe run votes between them.
    assert len(sandbox.runs) == 5 and any(n.startswith("2 of 2 drafts passed the tests") for n in result.trace.notes)


async def test_drafts_passing_no_whole_test_still_vote_with_the_checks_they_passed(settings):
    # Seen on the 1.5B (intervals.py): every draft failed a check of every test function, so none passed a test,
    # yet all failed the same two wrong checks alike. A check each passed before its failing one makes it a voter.
    tests = ("from solution import count_vowels\n\n\ndef test_all():\n    assert count_vowels('') == 0\n"
             "    assert count_vowels('hello world') == 2\n    assert count_vowels('AEI') == 3\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(VOWELS), fence(VOWELS_2)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "e, o, o", "wrong": "code"}]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0}))
    result, _ = await solve(solver, root("Write count_vowels(s)."))
    assert result.solved and result.verdict == "solved: 1 tests passed"
    assert "hello world" not in result.tests and "'AEI') == 3" in result.tests
    assert not prompts_with(llm, "[rcp:review]")


async def test_a_wrong_check_behind_a_voted_out_one_is_voted_on_in_the_rerun(settings):
    # Seen on the 1.5B (textstats.py): pytest stops a test at its first failing check, so the drafts' failing a
    # second wrong check alike showed only once the first was dropped.
    tests = ("from solution import count_vowels\n\n\ndef test_words():\n    assert count_vowels('') == 0\n"
             "    assert count_vowels('hello world') == 2\n    assert count_vowels('banana') == 2\n\n\n"
             "def test_upper():\n    assert count_vowels('AEI') == 3\n    assert count_vowels('xyz') == 0\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(VOWELS), fence(VOWELS_2)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "counted", "wrong": "code"}]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0}))
    result, _ = await solve(solver, root("Write count_vowels(s)."))
    assert result.solved and result.verdict == "solved: 2 tests passed"
    assert "hello world" not in result.tests and "banana" not in result.tests and "'xyz') == 0" in result.tests
    votes = [n for n in result.trace.notes if "drafts agree" in n]
    assert len(votes) == 2
    assert votes[0].startswith("2 drafts agree against 1 check(s), dropped: assert count_vowels('hello world') == 2")
    assert votes[1].startswith("2 drafts agree against 1 check(s), dropped: assert count_vowels('banana') == 2")
    assert not prompts_with(llm, "[rcp:review]") and not prompts_with(llm, "Previous attempt")


async def test_generated_checks_contradicting_the_tasks_examples_are_dropped_before_any_draft(settings):
    # Seen on the 1.5B (calc.py): a generated check wanted the task's own example call to raise ValueError.
    tests = ("import pytest\nfrom solution import count_vowels\n\n\ndef test_vowels():\n"
             "    assert count_vowels('hello') == 3\n    assert count_vowels('xyz') == 0\n\n\n"
             "def test_errors():\n    with pytest.raises(ValueError):\n        count_vowels('hello')\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(VOWELS)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "hello has 2 vowels", "wrong": "code"}]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0}))
    result, _ = await solve(solver, root("Write count_vowels(s), e.g. `count_vowels('hello') == 2`."))
    assert result.solved and result.trace.attempts == 1
    assert "== 3" not in result.tests and "ValueError" not in result.tests
    assert "count_vowels('hello') == 2" in result.tests and "'xyz') == 0" in result.tests
    assert ("dropped 2 check(s) that contradict the task's examples: assert count_vowels('hello') == 3; "
            "with pytest.raises(ValueError):") in "\n".join(result.trace.notes)


async def test_drafts_failing_the_tasks_example_rank_below_one_passing_it(settings):
    # Two drafts sharing a bug outvote a right one on every observation; the task's example says which is right.
    lower = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n"
    lower_2 = "def count_vowels(s):\n    return len([c for c in s if c in 'aeiou'])\n"
    tests = ("from solution import count_vowels\n\n\ndef test_words():\n    assert count_vowels('xyz') == 0\n"
             "    assert count_vowels('Apple') == 1\n")  # wrong, and the two lower-case drafts pass it
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(lower), fence(lower_2), fence(VOWELS), fence(lower)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "A is a vowel", "wrong": "test"}]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0}))
    result, events = await solve(solver, root("Write count_vowels(s), e.g. `count_vowels('AEI') == 3`."))
    assert not result.solved  # two drafts pass the wrong check: no review may drop it
    assert result.code.strip() == VOWELS.strip()
    assert any("3 drafts: draft 3 is the best" in e.message and "2 of 3 failing the task's examples ranked last"
               in e.message for e in events)


async def test_a_check_only_some_drafts_fail_stays_and_the_majority_draft_is_retried(settings):
    wrong = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n"  # misses upper case
    retry = "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)  # retried\n"
    tests = VOWEL_TESTS.replace("== 2", "== 3")  # every check right
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"Previous attempt", "replies": [fence(retry)]},
        {"match": r"\[rcp:code\]", "replies": [fence(wrong), fence(wrong.replace("s)", "s) + 0")), fence(VOWELS_3)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 1}))
    result, _ = await solve(solver, root("Write count_vowels(s)."))
    # The third draft is right and passes at once: nothing is dropped, and no retry is needed.
    assert result.solved and result.code.strip() == VOWELS_3.strip() and "AEI" in result.tests
    assert not any("drafts agree" in n for n in result.trace.notes) and not prompts_with(llm, "Previous attempt")


ACCT_TASK = ("Write a Python module acct.py with functions `take(balance, amount)`: returns balance - amount, raises "
             "ValueError if amount is not positive; and `name(owner)`: returns owner.title().")
ACCT_A = ("def take(balance, amount):\n    if amount <= 0:\n        raise ValueError(amount)\n"
          "    return balance - amount\n\n\ndef name(owner):\n    return owner.title()\n")
ACCT_B = ("def take(balance, amount):\n    if not amount > 0:\n        raise ValueError('not positive')\n"
          "    return balance - amount\n\n\ndef name(owner):\n    return str(owner).title()\n")


async def test_drafts_agree_against_a_raises_check_and_a_builtin_imported_from_the_module_is_ignored(settings):
    # Both seen on the 1.5B (bank.py): generated tests importing ValueError from the module (every draft not
    # defining its own ValueError failed at collection), and a pytest.raises the task never asked for.
    tests = d("""
        import pytest
        from acct import take, name, ValueError

        def test_take():
            assert take(5, 2) == 3
            with pytest.raises(ValueError):
                take(5, 0)

        def test_name():
            assert name("ann") == "Ann"
            with pytest.raises(KeyError):
                name("bob")
        """)
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(ACCT_A), fence(ACCT_B)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0}))
    result, _ = await solve(solver, root(ACCT_TASK))
    assert result.solved, result.verdict
    assert "KeyError" not in result.tests and "take(5, 0)" in result.tests
    assert "from acct import take, name\n" in result.tests
    assert [n for n in result.trace.notes if "drafts agree" in n][0].startswith(
        "2 drafts agree against 1 check(s), dropped: with pytest.raises(KeyError):\n    name(\"bob\")")


async def test_drafts_agreeing_against_a_check_of_a_stated_error_keep_it(settings):
    # Seen on the 1.5B (bank.py): every draft's transfer let a negative amount through, the drafts voted the check of
    # its ValueError out, and the module returned as solved failed that hidden test. The task's sentence wins: the
    # check stays and the retry adds the refusal. A raises check of an error the task never states still goes.
    task = ("Write a module m.py:\n\n- `take(balance: int, amount: int) -> int`: balance - amount; raises "
            "`ValueError` if amount is negative.\n- `name(s: str) -> str`: s capitalized.")
    tests = d("""
        import pytest
        from m import take, name

        def test_take():
            assert take(5, 2) == 3
            with pytest.raises(ValueError):
                take(5, -1)

        def test_name():
            assert name("ann") == "Ann"
            with pytest.raises(KeyError):
                name("bob")
        """)
    lax = "def take(balance, amount):\n    return balance - amount\n\n\ndef name(s):\n    return s.capitalize()\n"
    lax_2 = lax.replace("balance - amount", "int(balance) - int(amount)")
    fixed = lax.replace("    return balance",
                        "    if amount < 0:\n        raise ValueError(amount)\n    return balance")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"You fix one function", "replies": [fence(fixed.split("\n\n\n")[0])]},
        {"match": r"\[rcp:code\]", "replies": [fence(lax), fence(lax_2)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0}))
    result, _ = await solve(solver, root(task))
    assert result.solved and "raise ValueError(amount)" in result.code, result.verdict
    assert "take(5, -1)" in result.tests and "KeyError" not in result.tests
    assert [n for n in result.trace.notes if "drafts agree" in n] == [
        "2 drafts agree against 1 check(s), dropped: with pytest.raises(KeyError):\n    name(\"bob\") (Failed: DID "
        "NOT RAISE KeyError)"]


CODES_TASK = ("Write a Python module codes.py with `encode(n: int) -> str`: returns str(n); and a class `Store` with "
              "`add(self, url: str) -> str`: the code of a new url (1, 2, ...), and `get(self, code: str) -> str`: "
              "the url of a code, KeyError for an unknown code.")
CODES = d("""
    def encode(n):
        return str(n)


    class Store:
        def __init__(self):
            self.urls = {}

        def add(self, url):
            code = encode(len(self.urls) + 1)
            self.urls[code] = url
            return code

        def get(self, code):
            return self.urls[code]
    """)


async def test_a_method_imported_by_the_tests_and_example_usage_in_the_module_are_dropped(settings):
    # Both seen on the 1.5B (shortener.py, bench): tests importing the methods `shorten` and `expand` from the module,
    # and a module whose example usage raised KeyError on import. Every run failed at collection.
    tests = d("""
        import pytest
        from codes import encode, Store, add, get

        def test_store():
            s = Store()
            assert s.add("http://a") == "1"
            assert s.get("1") == "http://a"
            assert encode(7) == "7"
        """)
    usage = CODES + '\n# Example usage\nstore = Store()\nprint(store.get("12345"))\n'
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(usage)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 1, "max_depth": 0}))
    result, _ = await solve(solver, root(CODES_TASK))
    assert result.solved, result.verdict
    assert "from codes import encode, Store\n" in result.tests
    assert "print" not in result.code and "class Store" in result.code
    assert task_methods(CODES_TASK) == {"add", "get"}


async def test_a_failed_decomposition_with_time_left_is_followed_by_more_direct_attempts(settings):
    wrong = ACCT_A.replace("owner.title()", "owner.upper()")
    tests = ("import pytest\nfrom acct import take, name\n\n\ndef test_take():\n    assert take(5, 2) == 3\n\n\n"
             "def test_name():\n    assert name('ann') == 'Ann'\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:plan\]", "replies": [{"parts": "no"}]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "title case is Ann", "wrong": "code"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        # The three direct rounds before a split (DIRECT_ROUNDS: a draft and a retry each) are wrong; the round
        # after the failed split is right.
        {"match": r"\[rcp:code\]", "replies": [fence(wrong.replace("upper", u)) for u in
                                               ("upper", "swapcase", "lower", "casefold", "strip", "rstrip")] +
         [fence(ACCT_A)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_retries": 1, "max_depth": 1}))
    result, events = await solve(solver, root(ACCT_TASK))
    assert result.solved and result.code.strip() == ACCT_A.strip(), result.verdict
    assert len(prompts_with(llm, "[rcp:plan]")) == 3
    assert "decomposition did not succeed; trying directly again with the time left" in result.trace.notes
    decided = [e.message for e in events if e.kind == EventKind.DECIDED]
    assert decided[-1] == "direct again: the decomposition did not succeed"


def arith_at_one_second_a_call(*codes: str) -> ScriptedLLM:
    """The arith task decided "direct", where every decision, test, review and code call takes 1 s; ``codes`` are
    the code replies in order."""
    return ScriptedLLM(rules=arith_rules(decide="direct", extra=[
        {"match": r"\[rcp:review\]", "replies": [{"reason": "2 * 3 is 6", "wrong": "code"}], "delay": 1.0},
        {"match": r"\[rcp:tests\]", "replies": [fence(ADD_TESTS + "\n" + MUL_TESTS)], "delay": 1.0},
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "r", "action": "direct"}], "delay": 1.0},
        {"match": r"\[rcp:code\]", "replies": [fence(c) for c in codes], "delay": 1.0}]))


async def test_a_split_whose_parts_would_get_too_little_model_time_is_not_planned(settings):
    # Measured on the 1.5B (textstats.py, 600 s, 2 cores): a split started with 171 s left gave four parts 132 s
    # each; sharing the host's two generation slots, two of them waited 107 s for one and ended with no code. Here
    # each call takes 1 s and one slot is shared: after the direct round ~4.5 s are left, so two parts would get
    # ~1.4 s of model time each, less than two calls. No plan is asked; the time goes to another direct attempt.
    mul_adds = "def mul(a, b):\n    return a + b\n"
    llm = arith_at_one_second_a_call(ADD + mul_adds, ADD + mul_adds + "# again\n", ADD + MUL)
    solver = Solver(llm, FakeSandbox(rule=arith_correct), settings.model_copy(update={"generation_slots": 1}))
    result, events = await solve(solver, root(ARITH, timeout_s=10.0))
    assert result.solved and result.code.strip() == (ADD + MUL).strip(), result.verdict
    assert not prompts_with(llm, "[rcp:plan]") and not result.trace.children
    note = next(n for n in result.trace.notes if "not split" in n)
    assert re.fullmatch(r"\d+ s left: 2 parts would get \d s of model time each on this host, less than 2 calls of "
                        r"1 s: not split; trying directly again with the time left", note), note
    decided = [e.message for e in events if e.kind == EventKind.DECIDED]
    assert decided[-1].startswith("direct again: not split (")


async def test_a_task_that_can_neither_split_nor_try_again_says_so(settings):
    # As above with 6 s: after the direct round (4 calls of 1 s) ~1.7 s are left, too little for the parts of a
    # split and for two more calls. Seen on the 1.5B (romans.py): the task ended 93 s early with no word of why.
    llm = arith_at_one_second_a_call(ADD + "def mul(a, b):\n    return a + b\n",
                                     ADD + "def mul(a, b):\n    return b + a\n")
    solver = Solver(llm, FakeSandbox(rule=arith_correct), settings.model_copy(update={"generation_slots": 1}))
    result, _ = await solve(solver, root(ARITH, timeout_s=6.0))
    assert not result.solved and len(prompts_with(llm, "[rcp:code]")) == 2 and not prompts_with(llm, "[rcp:plan]")
    assert any(re.fullmatch(r".*: not split, and the [0-2] s left are too few to try again", n)
               for n in result.trace.notes), result.trace.notes


async def test_a_slow_plan_call_is_not_taken_for_what_a_part_needs(settings):
    # A plan is the longest call (up to PLAN_TOKENS); a part makes tests and code calls. Here the plan takes 3 s and
    # ~4.6 s are left after it: were it taken for "a call", two parts on one slot would get ~1.8 s of model time
    # each, less than two such calls, and `make demo`'s up-front split of shapes.py could be refused the same way.
    llm = ScriptedLLM(rules=arith_rules(extra=[{"match": r"\[rcp:plan\]", "replies": [ARITH_PLAN], "delay": 3.0}]))
    solver = Solver(llm, FakeSandbox(rule=arith_correct), settings.model_copy(update={"generation_slots": 1}))
    result, _ = await solve(solver, root(ARITH, timeout_s=8.0))
    assert result.solved and len(result.trace.children) == 2, result.trace.notes


async def test_the_draft_most_drafts_agree_with_is_the_best(settings):
    upper_only = "def count_vowels(s):\n    return sum(c in 'AEIOU' for c in s)\n"  # fails test_word
    lower_a = "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n"  # fails test_upper
    lower_b = "def count_vowels(s):\n    return len([c for c in s if c in 'aeiou'])\n"  # fails test_upper too
    tests = VOWEL_TESTS.replace("== 2", "== 3")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(upper_only), fence(lower_a), fence(lower_b), fence(VOWELS)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 1}))
    result, events = await solve(solver, root("Write count_vowels(s)."))
    assert result.solved and result.code.strip() == VOWELS.strip()
    # Each draft passes 2 of 3 tests, but two fail the same one: they form the larger group, so the best is the
    # first of them; nothing was dropped, as only one draft is wrong on each check.
    assert any(e.message.startswith("3 drafts: draft 2 is the best") for e in events)
    assert not any("drafts agree" in n for n in result.trace.notes)


async def test_a_parent_judges_a_check_its_peer_dropped_and_amends_the_contract(settings):
    plan = json.loads(json.dumps(ARITH_PLAN))
    plan["parts"][1]["tests"] = MUL_TESTS.replace("mul(0, 7) == 0", "mul(0, 7) == 7")  # the planner miscounted

    async def peer(spec: TaskSpec, emit) -> TaskResult:
        # The peer returns correct code, and tests without the check it judged wrong.
        code = ADD if spec.contract.name == "add" else MUL
        tests = spec.contract.tests.replace("    assert mul(0, 7) == 7\n", "")
        return peer_result(spec, code).model_copy(update={"tests": tests})

    llm = ScriptedLLM(rules=arith_rules(plan=[plan], extra=[
        {"match": r"\[rcp:review\]", "replies": [{"reason": "0 times 7 is 0", "wrong": "test"}]}]))
    sandbox = LocalPytestSandbox()
    result, events = await solve(Solver(llm, sandbox, settings, delegate=peer), root(ARITH))
    assert result.solved, result.verdict
    assert not any(e.kind == EventKind.REJECTED for e in events)  # amended, not re-solved
    assert len(prompts_with(llm, "[rcp:review]", "assert mul(0, 7) == 7")) == 1
    assert "mul(0, 7) == 7" not in result.tests and "mul(2, 3) == 6" in result.tests
    assert not prompts_with(llm, "[rcp:code]")  # nothing was written again here


# --- reading code replies -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "defines"), [
    ("Here:\n```python\ndef f():\n    return 1\n```\nExample:\n```python\nprint(f())\n```", "def f"),
    ("```py\ndef f():\n    return 1\n```\n```python\ndef test_f():\n    assert f() == 1\n```", "def f"),
    ("```python\ndef f():\n    return 1\n", "def f"),  # cut off before the closing fence, still whole code
    ("```python\ndef f():\n    return 1\n\ndef g():\n    return f(", "def f"),  # cut off mid-line: the prefix
    ("def f():\n    return 1\n", "def f"),  # no fence at all
])
def test_code_replies_are_read(reply, defines):
    from rcp.prompts import parse_code_reply
    code = parse_code_reply(reply)
    assert defines in code and "print(" not in code and "def test_f" not in code


def test_a_module_whose_docstring_the_model_broke_is_read_without_its_docstrings():
    # Seen on the 1.5B (romans.py): the task's `""` copied into a docstring ended it mid-way.
    from rcp.prompts import parse_code_reply
    reply = ('```python\nclass R:\n    """Numerals."""\n\n    def f(self, s):\n        """\n        Raises for '
             'anything else, e.g. """, "IIII".\n        """\n        return len(s)\n\n\ndef g():\n    \'\'\'e.g. '
             '""", "x"\n    \'\'\'\n\n\ndef h():\n    """Kept\n    or not."""\n    return "\\"\\"\\""\n```\n')
    code = parse_code_reply(reply)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["R"]().f("XIV") == 3 and namespace["g"]() is None and namespace["h"]() == '"""'
    assert '"""' not in code.replace('"\\"\\"\\""', "")  # every docstring went, the string stayed


def test_tests_whose_names_the_model_wrote_with_spaces_are_read_with_the_words_joined():
    # Seen on the 1.5B (calc.py): both replies to the ask for checks of stated errors named every test this way.
    from rcp.prompts import parse_code_reply
    reply = ('```python\nimport pytest\nfrom calc import tokenize\n\n'
             'def test_tokenize raises_ValueError_on any_other_character():\n'
             '    with pytest.raises(ValueError):\n        tokenize("1 a")\n\n'
             'def test_ok():\n    assert tokenize("def x y(") == ["def x y("]\n```\n')
    code = parse_code_reply(reply, want_tests=True)
    assert "def test_tokenize_raises_ValueError_on_any_other_character():" in code
    assert 'tokenize("def x y(")' in code  # only def lines are joined
    with pytest.raises(ModelOutputError):  # a spaced name in code that still does not parse is no salvage
        parse_code_reply("```python\ndef test a b(:\n    pass\n```", want_tests=True)


@pytest.mark.parametrize(("reply", "error"), [
    ("I cannot help with that.", "no ```python block with a function or class definition"),
    ("```python\ndef f(:\n```", "syntax error: line 1"),
    ("```python\nfrom m import f\n\ndef test_f():\n    assert f()\n```", "no ```python block with a function"),
])
def test_unusable_code_replies_are_model_errors(reply, error):
    from rcp.errors import ModelOutputError
    from rcp.prompts import parse_code_reply
    with pytest.raises(ModelOutputError, match=re.escape(error)):
        parse_code_reply(reply)


def test_plan_repairs_what_small_models_get_wrong():
    """Seen with the 0.5B model: prose after the signature's colon, and newlines escaped twice in the tests."""
    from rcp.prompts import plan_schema
    plan = json.loads(json.dumps(ARITH_PLAN))
    plan["parts"][0]["signature"] = "def add(a, b): return the sum of a and b."
    plan["parts"][0]["tests"] = "from arith import add\\nassert add(1, 2) == 3\\nassert add(0, 0) == 0"
    contracts, _ = validate_plan(Plan.model_validate(plan), module="arith", max_parts=4)
    assert contracts[0].signature == "def add(a, b):"
    assert contracts[0].tests == ("from arith import add\n\n\ndef test_add_1():\n    assert add(1, 2) == 3\n\n\n"
                                  "def test_add_2():\n    assert add(0, 0) == 0\n")
    # Seen on the 1.5B: asserts run together on one line, cut off at the string's bound.
    plan["parts"][1]["tests"] = "assert mul(2, 3) == 6 assert mul(0, 5) == 0 assert mul(7, 1"
    contracts, _ = validate_plan(Plan.model_validate(plan), module="arith", max_parts=4)
    assert count_checks(contracts[1].tests) == 2 and "mul(7" not in contracts[1].tests
    # Seen on the 1.5B: a signature without its `def`.
    plan["parts"][1]["signature"] = "mul(a: int, b: int) -> int"
    contracts, _ = validate_plan(Plan.model_validate(plan), module="arith", max_parts=4)
    assert contracts[1].signature == "def mul(a: int, b: int) -> int:"
    # The schema sent to the model allows no more parts than MAX_SUBTASKS.
    five = {"parts": [{**plan["parts"][1], "name": f"m{i}"} for i in range(5)]}
    with pytest.raises(ValueError, match="at most 4 items"):
        plan_schema(4).model_validate(five)


def test_stated_raises_counts_checks_met_less_errors_raised_where_most_voters_give_a_value():
    task = "Write a module m.py:\n\n- `get(s: str) -> int`: its value; raises `ValueError` for a bad `s`."
    raises = probe.Position("test_bad", 0, frozenset({"get"}), "with pytest.raises(ValueError):\n    get('x')")
    other = probe.Position("test_bad", 1, frozenset({"get"}), "with pytest.raises(KeyError):\n    get('y')")
    value = probe.Position("test_get", 0, frozenset({"get"}), "get('I')")
    fuzz_value = probe.Position("test_rcp_fuzz_get", 0, frozenset({"get"}), "get('Q')")

    def seen(bad: str, got: str, fuzzed: str) -> probe.Observed:
        return probe.Observed({"test_bad": [bad, "raise:KeyError"], "test_get": [got], "test_rcp_fuzz_get": [fuzzed]})

    right = seen("raise:ValueError", "1", "raise:ValueError")  # raising where the fuzz calls ask is no fault
    lax = seen("no-raise", "1", "7")
    strict = seen("raise:ValueError", "raise:ValueError", "raise:ValueError")  # raises on everything
    positions = [raises, other, value, fuzz_value]
    # KeyError is no error the task states: its check counts for nobody. Two of three voters give get('I') a value.
    assert stated_raises(task, [right, lax, strict], positions, voters=3) == [1, 0, 0]
    # With the strict program's twin voting, get('I') has no majority of values: nothing is taken off.
    assert stated_raises(task, [right, lax, strict, strict], positions, voters=4) == [1, 0, 1, 1]
    assert stated_raises(task.replace("`ValueError`", "an error"), [right, lax], positions, voters=2) == [0, 0]


def test_stated_errors_are_read_from_the_bullets_of_a_task():
    text = d("""\
        Write a module m.py with an exception class `Broke(Exception)` and a class `Shop`:

        - `__init__(self, size: int)`: `ValueError` if `size < 1`.
        - `pay(self, n: int) -> int`: raises `Broke` when short, and KeyError (or `ValueError` for n <= 0).
        - `total(self) -> int`: the sum; never raises an Exception.
        Every method raises `TypeError` for a str.
        """)
    # Per bullet: built-in exceptions and the task's own, in order; __init__ through its class; prose ignored.
    assert [e[:2] for e in stated_errors(text)] == [
        ("Shop", "ValueError"), ("pay", "Broke"), ("pay", "KeyError"), ("pay", "ValueError")]
    assert stated_errors(text)[0][2] == "`__init__(self, size: int)`: `ValueError` if `size < 1`."


def test_a_rule_for_every_method_taking_a_parameter_applies_to_each_method_with_it():
    text = d("""\
        Write a module m.py with a class `Bank`:

        - `deposit(self, account: int, amount: int) -> int`: adds `amount`.
        - `transfer(self, src: int, dst: int, amount: int, memo: dict[str, int] = {}) -> None`: `ValueError` if same.
        - `balance(self, account: int) -> int`: the balance.

        Every method taking an account number raises `KeyError` for an unknown account, and every method taking an
        `amount` raises `ValueError` if it is not positive. Every function with `memo` raises `TypeError` at times.
        """)
    rule = "every method taking an `amount` raises `ValueError` if it is not positive."
    # No backticked parameter, no rule (account number); the rule's scope ends at the next rule or the sentence.
    assert stated_errors(text) == [("transfer", "ValueError", "`transfer(self, src: int, dst: int, amount: int, memo: "
                                    "dict[str, int] = {}) -> None`: `ValueError` if same."),
                                   ("deposit", "ValueError", rule), ("transfer", "ValueError", rule),
                                   ("transfer", "TypeError", "Every function with `memo` raises `TypeError` at "
                                                             "times.")]


DIV = "def div(a, b):\n    return a / b\n"
SAFE_DIV = "def div(a, b):\n    if b == 0:\n        raise ValueError('b is 0')\n    return a / b\n"
DIV_TASK = "Write a module m.py with:\n\n- `div(a: float, b: float) -> float`: a / b; raises `ValueError` if `b` is 0."


@pytest.mark.parametrize("errors_reply, solved", [
    (fence("import pytest\nfrom m import div\n\ndef test_zero():\n    with pytest.raises(ValueError):\n"
           "        div(1, 0)\n"), True),
    ("I cannot write that.", False),  # unusable twice (asked again once): the tests stay as they were, noted
])
async def test_a_stated_error_no_test_checks_gets_a_check_written(settings, errors_reply, solved):
    llm = ScriptedLLM(rules=[
        {"match": r"Errors to check", "replies": [errors_reply]},
        {"match": r"rcp:tests", "replies": [fence("from m import div\n\ndef test_d():\n    assert div(6, 2) == 3")]},
        {"match": r"Previous attempt", "replies": [fence(SAFE_DIV)]},
        {"match": r"\[rcp:code\]", "replies": [fence(DIV)]}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                                 root(DIV_TASK))
    errors_prompt = prompts_with(llm, "Errors to check")
    assert len(errors_prompt) == (1 if solved else 2) and "- `div` raises `ValueError`: `div(a: float" in \
        errors_prompt[0]
    assert "showing how to build" not in errors_prompt[0]  # functions alone: no object to set up
    assert result.solved
    if solved:  # the code without the check of b == 0 failed, and its retry raises
        assert "pytest.raises(ValueError)" in result.tests and "raise ValueError" in result.code
        assert "writing checks of 1 stated error(s): div raises ValueError" in [e.message for e in events]
    else:  # the plain division passed the tests there are
        assert "raises" not in result.tests and result.code == DIV
        assert sum(n.startswith("error tests:") for n in result.trace.notes) == 2


@pytest.mark.parametrize("line, exception, cases", [
    ("- `remove(self, name, qty)`: Raises `KeyError` if `name` is unknown, and `ValueError` if `qty` is not "
     "positive or is more than the units in stock (the stock is then left unchanged).", "ValueError", 2),
    ("- `remove(self, name, qty)`: Raises `KeyError` if `name` is unknown, and `ValueError` if `qty` is not "
     "positive or is more than the units in stock.", "KeyError", 1),
    ("- `shorten(self, url)`: new code. `ValueError` if `url` does not start with `http://` or `https://`.",
     "ValueError", 1),
    ("- `eval_rpn(t)`: `ValueError` when the list is not valid (too few operands, or operands left over).",
     "ValueError", 1),
    ("- `parse_date(s)`: raises `ValueError` for any other format or an impossible date such as `\"2023-02-30\"`.",
     "ValueError", 2),
    ("- `f(x)`: raises ValueError if x or y is negative, or z is 0; sorted or not.", "ValueError", 3),
    ("- `move(self, src, dst, amount)`: Raises `ValueError` if `src == dst` or `amount` is not positive.",
     "ValueError", 2),
    ("- `open(self, mode)`: `ValueError` unless `mode` is `r` or `w`, e.g. `open(\"x\")`.", "ValueError", 1),
])
def test_error_cases_count_the_conditions_a_stated_error_joins_with_or(line, exception, cases):
    assert error_cases(line, exception) == cases


STOCK_TASK = ("Write a module m.py with:\n\n- `take(stock: int, n: int) -> int`: the stock left; raises `ValueError` "
              "if `n` is not positive or is more than `stock`.")
TAKE = "def take(stock, n):\n    if n > stock:\n        raise ValueError('too many')\n    return stock - n\n"
SAFE_TAKE = TAKE.replace("if n > stock:", "if n <= 0 or n > stock:")


async def test_each_case_of_a_stated_error_gets_a_check(settings):
    """Measured on the 1.5B (inventory.py): one ValueError check of `remove` (too many units), none of 0 units, and
    a `remove` that accepted 0 was "solved"."""
    one_case = ("import pytest\nfrom m import take\n\ndef test_t():\n    assert take(5, 2) == 3\n\n"
                "def test_many():\n    with pytest.raises(ValueError):\n        take(1, 2)\n")
    llm = ScriptedLLM(rules=[
        {"match": r"Errors to check", "replies": [fence("import pytest\nfrom m import take\n\ndef test_zero():\n"
                                                        "    with pytest.raises(ValueError):\n        take(5, 0)\n")]},
        {"match": r"rcp:tests", "replies": [fence(one_case)]},
        {"match": r"Previous attempt", "replies": [fence(SAFE_TAKE)]},
        {"match": r"\[rcp:code\]", "replies": [fence(TAKE)]}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                                 root(STOCK_TASK))
    asked = prompts_with(llm, "Errors to check")
    assert "- `take` raises `ValueError`, 2 cases, one test each: `take(stock" in asked[0]
    assert "writing checks of 1 stated error(s): take raises ValueError (2 cases)" in [e.message for e in events]
    assert result.solved and "take(5, 0)" in result.tests and result.code.strip() == SAFE_TAKE.strip()


PAY_TASK = ("Write a module m.py with:\n\n- `pay(src: int, dst: int, amount: int) -> int`: what is left; raises "
            "`ValueError` if `src == dst`.\n\nEvery function taking an `amount` raises `ValueError` if it is not "
            "positive.")
PAY = "def pay(src, dst, amount):\n    if src == dst:\n        raise ValueError('same')\n    return src - amount\n"
SAFE_PAY = PAY.replace("if src == dst:", "if src == dst or amount <= 0:")
PAY_TESTS = "import pytest\nfrom m import pay\n\ndef test_p():\n    assert pay(5, 1, 2) == 3\n"


def pay_check(*cases: tuple[str, str]) -> str:
    """A reply to the ask for checks of stated errors: a test (name, call) of each call raising ValueError."""
    return fence("import pytest\nfrom m import pay\n" + "".join(
        f"\ndef {name}():\n    with pytest.raises(ValueError):\n        {call}\n" for name, call in cases))


async def solve_pay(settings, tests: str, error_replies: list[str]):
    """PAY_TASK solved with ``tests`` written, ``error_replies`` to the asks for checks of its stated errors, PAY as
    the first code and SAFE_PAY as its fix: the scripted model, the result and the events."""
    llm = ScriptedLLM(rules=[
        {"match": r"Errors to check", "replies": error_replies},
        {"match": r"rcp:tests", "replies": [fence(tests)]},
        {"match": r"Previous attempt", "replies": [fence(SAFE_PAY)]},
        {"match": r"\[rcp:code\]", "replies": [fence(PAY)]}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                                 root(PAY_TASK))
    return llm, result, events


async def test_a_rule_for_every_function_taking_a_parameter_adds_its_case_to_the_bullets_own(settings):
    """Measured on the 1.5B (bank.py): deposit and withdraw were checked for a 0 amount, transfer only for src == dst,
    and both the swarm's and one plain call's transfer moved 0 or a negative amount."""
    same = PAY_TESTS + "\ndef test_same():\n    with pytest.raises(ValueError):\n        pay(1, 1, 2)\n"
    llm, result, _ = await solve_pay(settings, same, [pay_check(("test_zero", "pay(5, 1, 0)"))])
    asked = prompts_with(llm, "Errors to check")
    assert "- `pay` raises `ValueError`, 2 cases, one test each: `pay(src" in asked[0]
    assert "Every function taking an `amount` raises `ValueError` if it is not positive" in asked[0]
    assert result.solved and "pay(5, 1, 0)" in result.tests and result.code.strip() == SAFE_PAY.strip()


WALLET_TASK = ("Write a module m.py with a class `Wallet`:\n\n- `open(owner: str) -> int`: a new account's number, "
               "from 1.\n- `deposit(account: int, amount: int) -> None`: adds amount.\n- `balance(account: int) -> "
               "int`: its money.\n- `take(account: int, amount: int) -> None`: raises `ValueError` if amount is "
               "more than the balance.")
WALLET = d("""
    class Wallet:
        def __init__(self):
            self.money = {}

        def open(self, owner):
            self.money[len(self.money) + 1] = 0
            return len(self.money)

        def deposit(self, account, amount):
            self.money[account] += amount

        def balance(self, account):
            return self.money[account]

        def take(self, account, amount):
            if amount > self.money[account]:
                raise ValueError(amount)
            self.money[account] -= amount
    """)


async def test_the_ask_for_checks_of_stated_errors_shows_how_the_tests_build_the_object(settings):
    """Measured on the 1.5B (bank.py, two runs): the checks of stated errors called a bank without accounts, so
    `withdraw(1, 100)` expecting InsufficientFunds failed every draft (KeyError) and `transfer(1, 2, 0)` passed only
    drafts that check the amount before the accounts."""
    tests = d("""
        from m import Wallet

        def test_open():
            w = Wallet()
            assert w.open("ann") == 1

        def test_deposit():
            w = Wallet()
            a = w.open("ann")
            w.deposit(a, 5)
            assert w.balance(a) == 5
        """)
    errors = d("""
        import pytest
        from m import Wallet

        def test_take_too_much():
            w = Wallet()
            a = w.open("ann")
            with pytest.raises(ValueError):
                w.take(a, 1)
        """)
    llm = ScriptedLLM(rules=[
        {"match": r"Errors to check", "replies": [fence(errors)]},
        {"match": r"rcp:tests", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(WALLET)]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root(WALLET_TASK))
    [asked] = prompts_with(llm, "Errors to check")
    # The test calling the most methods, shown before the errors asked for.
    shown = asked.split("showing how to build what a call needs:")[1].split("Errors to check")[0]
    assert "def test_deposit():" in shown and "w.deposit(a, 5)" in shown and "test_open" not in shown
    assert result.solved and "w.take(a, 1)" in result.tests


async def test_a_case_of_a_stated_error_left_out_is_asked_for_again_by_its_own_sentence(settings):
    """Measured on the 1.5B (bank.py): asked for `transfer`'s 2 ValueError cases, it wrote the `src == dst` one only,
    and no module's `transfer` refused an amount of 0."""
    llm, result, events = await solve_pay(settings, PAY_TESTS, [pay_check(("test_same", "pay(1, 1, 2)")),
                                                                pay_check(("test_zero", "pay(5, 1, 0)"))])
    first, again = prompts_with(llm, "Errors to check")
    assert "- `pay` raises `ValueError`, 2 cases, one test each: `pay(src" in first
    # The second ask names the one case left, by the sentence stating it, not the bullet whose case was written.
    assert "- `pay` raises `ValueError`: Every function taking an `amount` raises `ValueError` if it is not " \
           "positive" in again
    assert "`pay(src" not in again.split("Errors to check")[1]
    assert "writing checks of the stated error cases still unchecked: pay raises ValueError" in \
        [e.message for e in events]
    assert result.solved and "pay(1, 1, 2)" in result.tests and "pay(5, 1, 0)" in result.tests
    assert result.code.strip() == SAFE_PAY.strip()


async def test_an_unusable_reply_of_error_checks_is_asked_for_again_with_what_was_wrong(settings):
    """Measured on the 1.5B (calc.py, twice): the reply to the ask for checks of stated errors did not parse, no
    stated error was checked, and the module returned accepted mismatched parentheses."""
    unusable = fence("import pytest\nfrom m import pay\n\ndef test_same(:\n    pay(1, 1, 2)\n")
    both = pay_check(("test_same", "pay(1, 1, 2)"), ("test_zero", "pay(5, 1, 0)"))
    llm, result, events = await solve_pay(settings, PAY_TESTS, [unusable, both])
    first, again = prompts_with(llm, "Errors to check")
    assert "previous reply could not be used" not in first
    assert "Your previous reply could not be used: " in again and "syntax error" in again
    assert any(e.message.startswith("writing checks of the stated errors again, the reply could not be used: pay "
                                    "raises ValueError") for e in events)
    assert result.solved and "pay(1, 1, 2)" in result.tests and "pay(5, 1, 0)" in result.tests
    assert result.code.strip() == SAFE_PAY.strip()


async def test_checks_of_a_stated_error_past_the_cases_asked_for_are_cut(settings):
    """Measured on the 1.5B (dateutils.py): asked for 2 cases of `parse_date` raising ValueError (and one of
    `add_business_days`), it wrote 17 of `parse_date` in one test, a day earlier each time, 15 of them valid dates
    that no right program rejects."""
    task = ("Write a module m.py with:\n\n- `pay(src: int, dst: int, amount: int) -> int`: what is left; raises "
            "`ValueError` if `src == dst` or if the amount is not positive.\n- `back(amount: int) -> int`: the "
            "amount; raises `ValueError` if `amount` is negative.")
    code = "def pay(src, dst, amount):\n    if src == dst or amount <= 0:\n        raise ValueError('no')\n" \
           "    return src - amount\n\n\ndef back(amount):\n    if amount < 0:\n        raise ValueError('no')\n" \
           "    return amount\n"
    tests = "import pytest\nfrom m import pay, back\n\ndef test_p():\n    assert pay(5, 1, 2) == 3\n" \
            "    assert back(2) == 2\n"
    ladder = "".join(f"    with pytest.raises(ValueError):\n        pay({a}, 1, {b})\n"
                     for a, b in [(1, 2), (5, 0), (6, 1), (7, 3)])
    reply = fence("import pytest\nfrom m import pay, back\n\ndef test_errors():\n" + ladder +
                  "    with pytest.raises(ValueError):\n        back(-1)\n")
    llm = ScriptedLLM(rules=[{"match": r"Errors to check", "replies": [reply]},
                             {"match": r"rcp:tests", "replies": [fence(tests)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(code)]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root(task))
    assert result.solved and "pay(1, 1, 2)" in result.tests and "pay(5, 1, 0)" in result.tests
    assert "back(-1)" in result.tests
    assert "pay(6, 1, 1)" not in result.tests and "pay(7, 1, 3)" not in result.tests


async def test_checks_of_a_stated_error_are_kept_against_reviews(settings):
    """Measured on the 1.5B (inventory.py): reviews judged `remove("item", 0)` raising ValueError wrong, though the
    task says a `qty` that is not positive raises it, and a `remove` that accepted 0 passed as solved."""
    tests = ("import pytest\nfrom m import take\n\ndef test_t():\n    assert take(5, 2) == 3\n\n"
             "def test_many():\n    with pytest.raises(ValueError):\n        take(1, 2)\n\n"
             "def test_zero():\n    with pytest.raises(ValueError):\n        take(5, 0)\n")
    llm = ScriptedLLM(rules=[
        {"match": r"rcp:tests", "replies": [fence(tests)]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "0 units can be taken", "wrong": "test"}]},
        {"match": r"Previous attempt", "replies": [fence(TAKE.replace("'too many'", "'more'")), fence(SAFE_TAKE)]},
        {"match": r"\[rcp:code\]", "replies": [fence(TAKE)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0, "max_retries": 2}))
    result, _ = await solve(solver, root(STOCK_TASK))
    # The draft and the first retry both accept 0 alike (a review's cue); the check stays and no review is asked.
    assert not prompts_with(llm, "[rcp:review]")
    assert "kept 1 doubted check(s) of errors the task states: with pytest.raises(ValueError):\n    take(5, 0)" \
        in result.trace.notes
    assert result.solved and "take(5, 0)" in result.tests and result.code.strip() == SAFE_TAKE.strip()


@pytest.mark.parametrize("check, stated", [
    ("with pytest.raises(ValueError):\n    take(5, 0)", True),
    ("with pytest.raises(ValueError):\n    inv = Inv()\n    inv.take(5, 0)", True),  # a method call counts too
    ("with pytest.raises(KeyError):\n    take(5, 0)", False),  # not the error the task states
    ("with pytest.raises(ValueError):\n    give(5, 0)", False),  # not the function it states it for
    ("assert take(5, 0) == 5", False),
])
def test_states_error_knows_checks_of_the_errors_a_task_states(check, stated):
    assert states_error(STOCK_TASK, check) is stated


async def test_inputs_the_task_says_are_errors_are_checks_no_vote_drops(settings):
    task = ("Write a module m.py with:\n\n- `num(s: str) -> int`: the digits of `s` as an int; raises `ValueError` "
            "for anything else, e.g. `\"x\"`.")
    lenient = "def num(s):\n    return int(s) if s.isdigit() else 0\n"
    lenient_2 = "def num(s):\n    if s.isdigit():\n        return int(s)\n    return 0\n"
    strict = "def num(s):\n    if not s.isdigit():\n        raise ValueError(s)\n    return int(s)\n"
    llm = ScriptedLLM(rules=[
        {"match": r"rcp:tests", "replies": [fence("from m import num\n\ndef test_n():\n    assert num('1') == 1\n")]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "x is no number", "wrong": "test"}]},
        {"match": r"\[rcp:code\]", "replies": [fence(lenient), fence(lenient_2), fence(strict)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0}))
    result, _ = await solve(solver, root(task))
    # Both drafts return 0 for "x": without the task's word for it, they would vote the check out.
    assert "with pytest.raises(ValueError):\n        num('x')" in result.tests
    assert result.solved and result.code.strip() == strict.strip()
    assert not any("drafts agree" in n for n in result.trace.notes)


DIVS_TASK = ("Write a Python module arith.py with:\n\n- `add(a, b)`: a + b.\n"
             "- `div(a, b)`: a / b; raises `ValueError` if `b` is 0.")


async def test_the_roots_error_checks_run_at_integration(settings):
    root_tests = ("import pytest\nfrom arith import add, div\n\ndef test_add():\n    assert add(2, 3) == 5\n\n"
                  "def test_div():\n    assert div(6, 2) == 3\n\n"
                  "def test_zero():\n    with pytest.raises(ValueError):\n        div(1, 0)\n")
    plain_div = "def div(a, b):\n    return a / b\n"
    safe_div = "def div(a, b):\n    if b == 0:\n        raise ValueError('b is 0')\n    return a / b\n"
    plan = {"parts": [
        {"name": "add", "kind": "function", "signature": "def add(a, b):", "behaviour": "a + b",
         "tests": "assert add(2, 3) == 5\nassert add(0, 0) == 0"},
        {"name": "div", "kind": "function", "signature": "def div(a, b):", "behaviour": "a / b",
         "tests": "assert div(6, 2) == 3\nassert div(1, 1) == 1"}]}
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:plan\]", "replies": [plan]},
        {"match": r"\[rcp:review\]", "replies": [{"reason": "2 + 3 = 5", "wrong": "code"}]},
        {"match": r"\[rcp:tests\]", "replies": [fence(root_tests)]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def add\b", "replies": [fence(ADD)]},
        {"match": r"\[rcp:code\][\s\S]*Your part: def div\b", "replies": [fence(plain_div)]},
        {"match": r"\[rcp:integrate\]", "replies": [fence(ADD + safe_div)]},
        {"match": r"\[rcp:code\]", "replies": [fence("def add(a, b):\n    return a - b\n" + safe_div)]}])
    sandbox = LocalPytestSandbox()
    result, _ = await solve(Solver(llm, sandbox, settings), root(DIVS_TASK))
    assert result.trace.decision == "decompose" and len(result.trace.children) == 2
    # The parts' contracts never check the error. The integration runs the root's check with them, and the fix it
    # asked for raises.
    first = next(r.files["test_arith.py"] for r in sandbox.runs if "assert add(0, 0) == 0" in r.files["test_arith.py"]
                 and "div(1, 1)" in r.files["test_arith.py"])
    assert "div(1, 0)" in first and prompts_with(llm, "[rcp:integrate]")
    assert result.solved and "raise ValueError" in result.code and "div(1, 0)" in result.tests, result.verdict


@pytest.mark.parametrize("text, why", [
    ("Write a module m.py with `f(x) -> int`, `g(s: str)` and `h()`; e.g. `f(2) == 4`.", "the task names 3 functions"),
    ("A class `Stack` with `push(self, x)`, `pop(self)`; `Stack().pop()` raises.",
     "the task names 2 functions in one class"),
    ("Write is_prime(n) with tests", ""),  # nothing in backticks: the model decides
    ("`a()` `b()` `c()` `d()` `e()` `f()` `g()`", ""),  # seven: too many to try in one go
    ("a class `A` with `x(self)` and a class `B` with `y(self)`", ""),  # two classes
    ("a class `Rect(w, h)` with `area(self)`; a class `Circle(r)` with `area(self)`", ""),
    ("an exception class `Broke(Exception)` and a class `Bank` with `pay(self, n)`",
     "the task names 1 function in one class"),
    ("Complete `f` in solution.py:\n```python\ndef f(x):\n    def inner():\n        pass\n```",
     "the task names 1 function"),  # a pasted stub (HumanEval): its top-level definitions
])
def test_small_task_is_told_by_the_names_it_puts_in_backticks(text, why):
    assert small_task(text) == why


@pytest.mark.parametrize("text, why", [
    ("a class `A` with `x(self)` and a class `B` with `y(self)`", "the task names 2 classes (A, B): each is a part"),
    ("an exception class `Broke(Exception)` and a class `Bank` with `pay(self, n)`", ""),
    ("a class `Stack` with `push(self, x)`", ""),
])
def test_several_classes_split_up_front(text, why):
    assert several_classes(text).startswith(why) and bool(several_classes(text)) == bool(why)


@pytest.mark.parametrize("text, why", [
    ("a class `Stack` with `push(self, x)` and `pop(self)`", "the task is one class, Stack, with 2 methods"),
    ("a class `C` with `__init__(self, n)` and `get(self)`", "the task is one class, C, with 2 methods"),
    ("`f(x)` and a class `C` with `g(self)`", ""),  # a function beside the class: a part of its own
    ("a class `A` with `x(self)` and a class `B` with `y(self)`", ""),
    ("`f(x)` and `g(x)`", ""),
])
def test_a_task_of_one_class_is_told_by_its_methods(text, why):
    assert one_class(text) == why


async def test_a_task_of_one_class_is_not_split_into_its_methods(settings):
    # Measured on the 1.5B (inventory.py): the plan turned the four methods into four functions, which could not
    # pass the class's tests. The time goes to another direct attempt.
    task = "Write a module c.py with a class `C` with `get(self)` returning 1."
    tests = "from c import C\n\n\ndef test_get():\n    assert C().get() == 1\n"
    wrong = "class C:\n    def get(self):\n        return 2\n"
    right = wrong.replace("2", "1")
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
                             {"match": r"\[rcp:code\]", "replies": [fence(wrong), fence(wrong), fence(right)]}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings), root(task))
    assert result.solved and not prompts_with(llm, "[rcp:plan]") and not prompts_with(llm, "[rcp:decide]")
    assert "the task is one class, C, with 1 method: not split; trying directly again with the time left" \
        in result.trace.notes
    assert [e.message for e in events if e.kind == EventKind.DECIDED][-1] == \
        "direct again: a class is not split into its methods"


async def test_a_task_not_split_is_tried_again_round_after_round_while_time_is_left(settings):
    # Measured on the 1.5B (lrucache.py, bench at 0694ff0): its second round ended with 278 s of 600 unused.
    task = "Write a module c.py with a class `C` with `get(self)` returning 1."
    tests = "from c import C\n\n\ndef test_get():\n    assert C().get() == 1\n"
    wrong = "class C:\n    def get(self):\n        return 2\n"
    codes = [fence(wrong)] * 4 + [fence(wrong.replace("2", "1"))]  # two rounds of a draft and a retry fail
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
                             {"match": r"\[rcp:code\]", "replies": codes}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings), root(task))
    assert result.solved
    assert [e.message for e in events if e.kind == EventKind.DECIDED][-2:] == \
        ["direct again: a class is not split into its methods"] * 2


async def test_a_budget_cutting_the_work_short_leaves_a_last_vote_on_the_programs_since_the_last(settings):
    # Measured on the 1.5B (intervals.py): the deadline cut a second direct round after two drafts passing 7 and 8
    # of 9 hidden tests, and the module voted before them (2/9) was returned. Here the LLM-call budget cuts it.
    task = "Write a module c.py with a class `C` with `get(self)` returning 1."
    tests = ("from c import C\n\n\ndef test_get():\n    assert C().get() == 3\n\n\n"
             "def test_int():\n    assert isinstance(C().get(), int)\n")
    crash = "class C:\n    def get(self):\n        return 1 + None\n"
    llm = ScriptedLLM(rules=[{"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
                             {"match": r"\[rcp:code\]", "replies": [
                                 fence(crash), fence(crash.replace("None", "[]")),  # the first round: both crash
                                 fence(crash.replace("1 + None", "1"))]}])  # the second: one draft, then no calls
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_retries": 0,
                                                                          "max_llm_calls": 4}))
    result, _ = await solve(solver, root(task))
    assert not result.solved and "return 1\n" in result.code
    votes = [n for n in result.trace.notes if n.startswith("vote of")]
    assert votes == ["vote of 2 drafts over 2 programs on 2 observations: kept draft 1, agreed with 0 times",
                     "vote of 3 drafts over 3 programs on 2 observations: chose draft 1, agreed with 2 times; the "
                     "best by tests, agreed with 0 times"], result.trace.notes
    assert result.verdict.startswith("not solved: LLM-call budget of 4 calls used up")


async def test_a_small_task_is_tried_directly_without_a_decide_call(settings):
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence("from solution import one\n\ndef test_one():\n"
                                                      "    assert one() == 1\n")]},
        {"match": r"\[rcp:code\]", "replies": [fence("def one():\n    return 1\n")]}])
    result, events = await solve(Solver(llm, FakeSandbox(), settings), root("Write `one()` returning 1."))
    assert result.solved and not prompts_with(llm, "[rcp:decide]")
    assert result.trace.reason == "the task names 1 function: tried directly first, split only if that fails"


async def test_tests_must_use_every_function_the_task_names_and_code_must_define_them(settings):
    task = "Write a module m.py with a class `M` with methods `double(self, x)` and `half(self, x)`."
    one = "from m import M\n\ndef test_double():\n    assert M().double(3) == 6\n"
    other = "from m import M\n\ndef test_half():\n    assert M().half(8) == 4\n"
    partial = M_DOUBLE
    full = M_DOUBLE + M_HALF
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(one), fence(other)]},
        {"match": r"\[rcp:code\]", "replies": [fence(partial), fence(full)]}])
    sandbox = LocalPytestSandbox()
    result, events = await solve(Solver(llm, sandbox, settings.model_copy(update={"max_depth": 0})), root(task))
    # The first tests are kept, and the second ask is for tests of half alone, beside them.
    assert result.solved and "def half" in result.code and "test_half" in result.tests
    assert "test_double" in result.tests
    again = prompts_with(llm, "[rcp:tests]", "the tests never use half: test every function the task names")
    assert len(again) == 1 and "Test only `half`" in again[0] and "assert M().double(3) == 6" in again[0]
    # The first code lacked half(): not run, and the retry was told what is missing.
    assert any(e.message == "attempt 1: not run, half not defined" for e in events if e.kind == EventKind.TESTED)
    assert prompts_with(llm, "[rcp:code]", "does not define half, which the task names")
    assert len(sandbox.runs) == 1


async def test_each_function_of_a_module_gets_its_own_test_ask(settings):
    # Measured on the 1.5B (6 module tasks of 3-4 functions): asked for a module's tests, it wrote one test function
    # of the first function, asserts until max_tokens; asked per function, every function was tested.
    task = "Write a module m.py with `double(x)` and `half(x)`; e.g. `double(2) == 4`."
    one = "from m import double\n\ndef test_double():\n    assert double(3) == 6\n"
    other = "from m import half\n\ndef test_half():\n    assert half(8) == 4\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\][\s\S]*Write only `test_double`", "replies": [fence(one)]},
        {"match": r"\[rcp:tests\][\s\S]*Write only `test_half`", "replies": ["I cannot.", fence(other)]},
        {"match": r"\[rcp:code\]", "replies": [fence("def double(x):\n    return 2 * x\n\n\ndef half(x):\n"
                                                      "    return x / 2\n")]}])
    result, events = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                                 root(task))
    assert result.solved and "def test_double" in result.tests and "def test_half" in result.tests
    assert "assert double(2) == 4" in result.tests  # the task's example stays
    asks = prompts_with(llm, "[rcp:tests]")
    assert len(asks) == 3 and "could not be used" in asks[2] and "Write only `test_half`" in asks[2]
    assert "tests of half: reply has no ```python block" in " ".join(result.trace.notes)
    # The first asks are written together (one decode step feeds both on llama.cpp); an unusable one is asked again
    # alone, with what was wrong.
    assert llm.together == [2] and result.trace.llm_calls == 4
    assert [e.message for e in events if e.kind == EventKind.TESTS][:2] == [
        "writing tests of double, half together",
        "writing tests of half again: reply has no ```python block with pytest tests (a block has a syntax error: "
        "line 1: invalid syntax)"]


async def test_a_reply_ends_once_it_holds_what_is_kept_of_it(settings):
    # Measured on the 1.5B (romans.py): asked for the test of one function it listed 18 asserts until max_tokens, of
    # which 4 are kept; asked for 3 stated-error checks it wrote 15 `pytest.raises` blocks until max_tokens; and it
    # explains its code after the code block (~80 tokens a reply).
    task = ("Write a module m.py with:\n\n- `double(x)`: twice x, e.g. `double(2) == 4`.\n"
            "- `half(x)`: x // 2; raises `ValueError` if `x` is None.")
    double = "from m import double\n\ndef test_double():\n" + "".join(f"    assert double({i}) == {2 * i}\n"
                                                                       for i in range(10))
    half = "from m import half\n\ndef test_half():\n" + "".join(f"    assert half({2 * i}) == {i}\n"
                                                                 for i in range(10))
    errors = "import pytest\nfrom m import half\n\n" + "".join(
        f"def test_none_{i}():\n    with pytest.raises(ValueError):\n        half(None)\n\n" for i in range(5))
    llm = ScriptedLLM(rules=[
        {"match": r"Errors to check", "replies": [fence(errors)]},
        {"match": r"\[rcp:tests\][\s\S]*Write only `test_double`", "replies": [fence(double)]},
        {"match": r"\[rcp:tests\][\s\S]*Write only `test_half`", "replies": [fence(half)]},
        {"match": r"\[rcp:code\]", "replies": [fence("def double(x):\n    return 2 * x\n\n\ndef half(x):\n"
                                                      "    if x is None:\n        raise ValueError(x)\n"
                                                      "    return x // 2\n") + "\n\nThis module defines two "
                                                "functions: `double` returns twice its argument, and ...\n"]}])
    result, _ = await solve(Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"max_depth": 0})),
                            root(task))
    assert result.solved
    assert [c.finish for c in llm.calls] == ["enough"] * 4  # the code's explanation was not generated either
    assert "assert double(3) == 6" in result.tests and "double(4)" not in result.tests
    assert result.tests.count("half(None)") == 1 and "test_none_1" not in result.tests  # 1 case stated, 1 written
    assert llm.calls[2].completion_tokens < len(fence(errors)) // 8


TAKE_TASK = ("Write a Python function `take(balance, amount)`: returns balance - amount; raises `ValueError` if "
             "amount is not positive (0 included) or more than the balance.")
TAKE_A = ("def take(balance, amount):\n    if amount <= 0 or amount > balance:\n        raise ValueError(amount)\n"
          "    return balance - amount\n")
TAKE_B = ("def take(balance, amount):\n    if not 0 < amount <= balance:\n        raise ValueError('bad amount')\n"
          "    return balance - amount\n")
TAKE_C = ("def take(balance, amount):\n    if amount < 0:\n        raise ValueError(amount)\n"
          "    return balance - amount\n")
# Two wrong checks (0 is an error) that only the wrong draft passes, and one right check it fails.
TAKE_TESTS = d("""
    import pytest
    from solution import take

    def test_take():
        assert take(5, 2) == 3

    def test_zero():
        assert take(5, 0) == 5

    def test_zero_twice():
        assert take(5, 0) + take(2, 0) == 7

    def test_over():
        with pytest.raises(ValueError):
            take(5, 9)
    """)


async def test_unsolved_the_program_the_drafts_agree_with_beats_the_one_passing_the_most_tests(settings):
    # Seen on the 1.5B (inventory.py): a wrong test expected remove(x, 0) not to raise, and the draft passing the
    # most generated tests was wrong where the plain draft was right.
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(TAKE_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(TAKE_A), fence(TAKE_C), fence(TAKE_B)]}])
    sandbox = LocalPytestSandbox()
    solver = Solver(llm, sandbox, settings.model_copy(update={"drafts": 3, "max_depth": 0, "max_retries": 0}))
    result, events = await solve(solver, root(TAKE_TASK))
    assert not result.solved and result.code.strip() == TAKE_A.strip()
    assert result.verdict == "not solved: the tests still fail after every attempt; the best code passed 2 of 4 tests"
    note = "vote of 3 drafts over 3 programs on 4 observations: chose draft 1, agreed with 9 times; the best by " \
           "tests, agreed with 6 times"
    assert note in result.trace.notes and note in [e.message for e in events if e.kind == EventKind.TESTED]
    # 3 drafts, the vote's run of all three (choosing the one to retry; the end's vote reuses its observations),
    # and the voted program against the tests for its verdict.
    assert len(sandbox.runs) == 5


async def test_unsolved_a_program_raising_a_stated_error_where_checked_beats_the_majority(settings):
    # Seen on the 1.5B (bank.py): most drafts never checked transfer's amount, the one check of a transfer of 0
    # raising ValueError was met by two programs, and the vote kept a majority draft (9/10 hidden tests) where
    # one of the two passed 10/10. Here the only draft right on both stated cases (over the balance, and 0) fails
    # the wrong check of 0 as the draft agreed with most does, and that one never raises on too much.
    tests = d("""
        import pytest
        from solution import take

        def test_take():
            assert take(5, 2) == 3

        def test_over():
            with pytest.raises(ValueError):
                take(5, 9)

        def test_zero():
            assert take(5, 0) == 5
        """)
    no_over = TAKE_C.replace("amount < 0", "amount <= 0")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(TAKE_C), fence(no_over), fence(TAKE_A)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 0}))
    result, _ = await solve(solver, root(TAKE_TASK.replace("function `take", "function:\n- `take")))
    assert not result.solved and result.code.strip() == TAKE_A.strip(), result.trace.notes
    assert "vote of 3 drafts over 3 programs on 27 observations: chose draft 3, stated-error score 1, agreed " \
           "with 47 times; the best by tests, agreed with 52 times" in result.trace.notes


async def test_the_vote_counts_no_crash_the_task_does_not_state(settings):
    # The same drafts, but the task never names ValueError: raising it on 0 is then a crash, no vote, and the
    # program passing the most tests stays the best.
    task = TAKE_TASK.replace("raises `ValueError`", "fails")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(TAKE_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(TAKE_A), fence(TAKE_C), fence(TAKE_B)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0,
                                                                          "max_retries": 0}))
    result, _ = await solve(solver, root(task))
    assert not result.solved and result.code.strip() == TAKE_C.strip()
    assert any(n.startswith("vote of 3 drafts over 3 programs on 4 observations: kept draft 2")
               for n in result.trace.notes), result.trace.notes


SHAPES_TASK = d("""\
    Write a Python module shapes.py with these functions:

    - `double(x: int) -> int`: twice `x`.
    - `square(x: int) -> int`: `x` times `x`.
    """)
SHAPES_TESTS = d("""\
    from shapes import double, square

    def test_double():
        assert double(2) == 4
        assert double(3) == 6

    def test_square():
        assert square(3) == 9
        assert square(2) == 4
    """)


def shapes(double: str, square: str) -> str:
    return f"def double(x):\n    return {double}\n\n\ndef square(x):\n    return {square}\n"


# Each draft has one function right, two drafts agree on each right one, and the wrong ones never agree.
SHAPES_DRAFTS = [shapes("2 * x", "x * x + 100"), shapes("x + x", "x * x - 100"), shapes("x + 100", "x * x"),
                 shapes("x - 100", "x ** 2")]


async def solve_shapes(settings, caplog, tests: str) -> tuple[TaskResult, list]:
    """SHAPES_TASK with ``tests`` written and the four SHAPES_DRAFTS, no retries, the solver's DEBUG log kept."""
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(tests)]},
        {"match": r"\[rcp:code\]", "replies": [fence(c) for c in SHAPES_DRAFTS]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 4, "max_depth": 0,
                                                                          "max_retries": 0}))
    with caplog.at_level(logging.DEBUG, logger="rcp.solver"):
        return await solve(solver, root(SHAPES_TASK))


async def test_unsolved_each_function_is_taken_from_the_program_the_drafts_agree_with_most_on_it(settings, caplog):
    # Seen on the 1.5B (calc.py): the voted draft kept the spaces in `tokenize` (6/8 hidden tests); another draft's
    # `tokenize` with the voted draft's other functions passed 8/8. Here no draft passes both tests.
    result, events = await solve_shapes(settings, caplog, SHAPES_TESTS)
    assert result.solved, result.trace.notes
    assert any(": program (the mosaic, scored, not voting)" in r.getMessage() for r in caplog.records)
    namespace: dict = {}
    exec(result.code, namespace)
    assert [namespace["double"](x) for x in (-3, 0, 5)] == [-6, 0, 10]
    assert [namespace["square"](x) for x in (-3, 0, 5)] == [9, 0, 25]
    note = next(n for n in result.trace.notes if n.startswith("the mosaic (double of draft 1, square of draft 3)"))
    assert note.startswith("the mosaic (double of draft 1, square of draft 3): chosen, agreed with ")
    assert note.endswith("passed 2 tests against 1") and note in [e.message for e in events]


async def test_a_mosaic_passing_no_more_tests_than_the_voted_program_is_not_chosen(settings, caplog):
    # Seen offline on the 1.5B (intervals.py): the voted draft alone had `gaps` right, the drafts' majority shared a
    # misreading; the mosaic took the majority's `gaps` (8/9 hidden tests to 6/9). Here the tests check `square` as
    # the voted draft computes it, and one check no draft passes.
    tests = SHAPES_TESTS.replace("assert square(3) == 9\n    assert square(2) == 4", "assert square(3) == 109") + \
        "\n\ndef test_never():\n    assert double(1) + square(1) == 0\n"
    result, _ = await solve_shapes(settings, caplog, tests)
    assert result.code.strip() == SHAPES_DRAFTS[0].strip(), result.trace.notes
    # Nor is it a program of later votes, where it would win on agreement alone (what it is made to maximise).
    assert not any("program (the mosaic" in r.getMessage() for r in caplog.records)
    assert any(n.startswith("the mosaic (double of draft 1, square of draft 3): not chosen") and
               n.endswith("passed 1 tests against 2") for n in result.trace.notes), result.trace.notes


async def test_the_vote_keeps_a_retry_answering_where_every_draft_crashes(settings):
    # Seen on the 1.5B (intervals.py): every draft's merge raised TypeError, and a retry that answered (passing 4 of
    # 5 test functions) lost the vote to a crashing draft, since a crash is no vote and nothing agreed with the retry.
    crash_a = "def take(balance, amount):\n    return balance - [amount]\n"
    crash_b = "def take(balance, amount):\n    return sum(balance, amount)\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(TAKE_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(crash_a), fence(crash_b), fence(TAKE_C)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 2, "max_depth": 0,
                                                                          "max_retries": 1}))
    result, _ = await solve(solver, root(TAKE_TASK))
    assert not result.solved and result.code.strip() == TAKE_C.strip()
    assert result.verdict == "not solved: the tests still fail after every attempt; the best code passed 3 of 4 tests"


def test_after_a_vote_only_a_solution_replaces_the_voted_best():
    from rcp.records import TestRun
    from rcp.solver import _Candidate, _Task  # the bookkeeping itself: no path reaches this quickly

    def cand(code: str, passed: int, failed: int) -> _Candidate:
        return _Candidate(code=code, tests="t", run=TestRun(passed=passed, failed=failed, exit_code=int(failed > 0)))

    t = _Task(spec=root("x"), emit=lambda e: None, trace=TraceNode(task_id="a", goal="x"), started=0.0, deadline=1.0,
              calls_budget=1, calls_left=1)
    t.offer(cand("a", 1, 3))
    t.offer(cand("b", 3, 1))  # before any vote, more tests passed is better
    assert t.best.code == "b"
    t.best, t.ballot = cand("voted", 2, 2), ("tests", "voted")
    t.offer(cand("c", 3, 1))  # after it, passing more of the same tests is not
    assert t.best.code == "voted"
    t.offer(cand("d", 4, 0))  # a solution is
    assert t.best.code == "d"


BOX_TASK = d("""\
    Write a Python module box.py with a class `Box` that keeps the latest items:

    - `__init__(self, size: int)`: an empty box holding at most `size` items.
    - `put(self, x: int) -> None`: adds `x`; when the box is then over its size, the oldest items are dropped.
    - `items(self) -> list`: the items, oldest first.
    """)
BOX_WRONG = ("class Box:\n    def __init__(self, size):\n        self.size = size\n        self._items = []\n\n"
             "    def put(self, x):\n        self._items.append(x)\n\n    def items(self):\n"
             "        return list(self._items)\n")
BOX_RIGHT = BOX_WRONG.replace("        self._items.append(x)\n", "        self._items.append(x)\n"
                              "        while len(self._items) > max(self.size, 0):\n            self._items.pop(0)\n")
BOX_RIGHT_TOO = BOX_WRONG.replace("        self._items.append(x)\n", "        self._items = (self._items + [x])"
                                  "[-self.size:] if self.size > 0 else []\n")
BOX_TESTS = ("from box import Box\n\n\ndef test_put():\n    b = Box(10)\n    b.put(1)\n    b.put(2)\n"
             "    assert b.items() == [1, 2]\n")


async def test_drafts_passing_weak_tests_are_told_apart_by_the_fuzz_calls_vote(settings):
    """Seen on the 1.5B (lrucache.py): the tests never filled the cache, the plain draft passed them and was
    returned at once, wrong (6/9 hidden tests); two other drafts were right."""
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(BOX_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(BOX_WRONG), fence(BOX_RIGHT), fence(BOX_RIGHT_TOO)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0}))
    result, events = await solve(solver, root(BOX_TASK))
    assert result.solved and result.code.strip() == BOX_RIGHT.strip()
    note = next(n for n in result.trace.notes if n.startswith("3 of 3 drafts passed the tests"))
    assert "(draft 1, draft 2, draft 3); vote on the tests and fuzz calls" in note and "chose draft 2" in note
    assert note in [e.message for e in events if e.kind == EventKind.TESTED]


async def test_drafts_passing_once_a_check_they_agree_against_is_dropped_are_voted_on_too(settings):
    """Seen on the 1.5B (lrucache.py, bench at 8d2bdbc): the 3 drafts failed a wrong check of `keys` alike; once it
    was dropped the first draft passed and was returned at once (6/9 hidden tests); the vote chose draft 2 (9/9)."""
    wrong = "\n\ndef test_order():\n    b = Box(10)\n    b.put(1)\n    b.put(2)\n    assert b.items() == [2, 1]\n"
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(BOX_TESTS + wrong)]},
        {"match": r"\[rcp:code\]", "replies": [fence(BOX_WRONG), fence(BOX_RIGHT), fence(BOX_RIGHT_TOO)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0}))
    result, _ = await solve(solver, root(BOX_TASK))
    assert result.solved and "[2, 1]" not in result.tests
    assert result.code.strip() == BOX_RIGHT.strip()
    assert any(n.startswith("3 of 3 drafts passed the tests") and "chose draft 2" in n for n in result.trace.notes)


async def test_a_passing_draft_ends_the_drafts_when_no_fuzz_call_could_tell_them_apart(settings):
    # No bullet signatures (nothing to fuzz): the first passing draft is the result, as one call would give it.
    task = "Write a Python module box.py with a class `Box(size)` keeping the latest `size` items (`put`, `items`)."
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:tests\]", "replies": [fence(BOX_TESTS)]},
        {"match": r"\[rcp:code\]", "replies": [fence(BOX_WRONG), fence(BOX_RIGHT), fence(BOX_RIGHT_TOO)]}])
    solver = Solver(llm, LocalPytestSandbox(), settings.model_copy(update={"drafts": 3, "max_depth": 0}))
    result, _ = await solve(solver, root(task))
    assert result.solved and result.code.strip() == BOX_WRONG.strip()
    assert len(prompts_with(llm, "rcp:code")) == 1
