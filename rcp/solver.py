"""The recursive solver every node runs: decide, decompose, delegate, execute, test, integrate.

``Solver.solve(spec, emit)`` turns a ``TaskSpec`` into a ``TaskResult``. It is pure async with everything
injected: the ``LLM``, the ``Sandbox``, and a ``Delegate`` that sends a subtask to a peer (the swarm's job).

The loop (issue 5):

1. **Decide** direct or decompose (schema-constrained, with a reason). At ``MAX_DEPTH`` it executes without
   asking; a contract that is a single function is solved directly and never split, and a task that names at
   most six functions (and one class at most) in backticks is tried directly without asking. Decomposition is
   *as needed*: a direct attempt that fails its tests through the retry budget is followed by a decomposition,
   and a decomposition that does not succeed, with ``AGAIN_SHARE`` of the time left, by another direct attempt.
   A task that is one class (``one_class``) is never split into its methods: another direct attempt follows.
2. **Decompose** into 2..``MAX_SUBTASKS`` contracts. A plan is validated (unique identifiers, signatures and tests
   parse, tests use their part) and an invalid plan is asked again with the error, never executed; test lines
   the model ran together or cut off are repaired first (``rcp.assemble.repair_tests``). A split is started only
   if each part gets at least ``MIN_PART_SHARE`` of the task's time and, sharing this host's generation slots,
   the model time of ``PART_CALLS`` calls (``Solver._parts_short``); a whole task that cannot afford its split
   is tried directly again instead. A plan's check the task's own drafts refute (none passes it, most agree on
   another value) is dropped before the parts start (``Solver._without_refuted``); a part left with none writes
   its own tests, and the parent holds it to those.
3. **Delegate** the parts concurrently (bounded by a semaphore, under a ``TaskGroup`` so cancelling ``solve``
   cancels them). A delegate that raises means the swarm gave up on peers: the part is solved here (FALLBACK).
   Without a delegate the parts are solved by this solver, in this process.
4. **Execute** a leaf: tests come from the contract (plus generated ones when the contract's are thin, or only
   generated ones for a task without contract: one ask per function the task names, and per class with its
   methods, when it names several (``test_groups``; the asks written together); else one ask, and when that never
   uses some function the task names, tests of those alone are asked for next). The first attempt is ``DRAFTS``
   programs (voting, below), each checked against the contract's signature and run with pytest in the sandbox;
   the chosen draft's failure is fed back, up to ``MAX_RETRIES`` more attempts. When the failing tests call only
   one of the module's functions, a retry asks for that function alone and merges it in
   (``one_failing_function``): what passed stays, and the reply is a few lines instead of a module. A retry that
   returns the same program is not run again, and the next one is sampled hotter (at a low temperature the same
   prompt gives the same code). A whole task's retries are new drafts instead (unless one function is fixed),
   written together as its first drafts are.
5. **Integrate**: the parts are assembled by ``rcp.assemble`` (no model involved), glue is asked for when the
   parent's own contract is not among the parts, and every part's contract tests plus the parent's own contract
   tests run together in one fresh sandbox run. A failure confined to one part's tests re-solves that part with
   the evidence; any other failure asks the model to fix the assembled module.
6. **Return** the best tested code with the tests it ran against and the trace.

Wrong tests: small models miscompute expected values more often than they miswrite simple code (seen on the 1.5B:
``assert word_count('This is a test.') == 3``). Voting: a whole task's drafts are the task asked plainly, as one call
to the model would be, first at the base temperature, then hotter; a part's first draft sees the tests and the others
only the contract. An assert (or a
``pytest.raises`` block that did not raise) every distinct working draft (one that passed some check) fails with the
same message (so they agree on one value the test does not expect) is dropped without asking the model (at most half
the checks; the drafts vote again on the rerun, as pytest showed only each test's first failing check), and the
draft whose behaviour the drafts agree with most (the behaviour vote, below) is the one retried. Later,
when the same assert fails the same way for two attempts, a ``[rcp:review]`` call judges it; an assert judged wrong is
dropped (at most a third of a test file's checks, never all). Only a check the drafts dispute is reviewed
(``_reviewed``, each check probed alone on every draft): none of them passes it, and two fail it with one same value.
A crash is no such value (drafts sharing a bug are no majority), so a check on which the drafts raise an error the
task never states stays; with fewer than two drafts every such check is reviewed. Neither a vote nor a review drops
the last checks of a function or method the task names, and no review drops a check that a function raises an error
the task states for it (``states_error``). A parent re-judges any contract check its child dropped before accepting
the child, and amends the contract only if it agrees.

Behaviour vote: when a direct attempt ends with no program passing its tests, every program it wrote runs the tests
as probes (``rcp.probe``: each check records what the code gives rather than comparing it with the expected value),
the drafts vote (retries are scored but do not vote; a crash the task never states is no vote), and the program
the drafts agree with most, the earliest on a tie, becomes the task's best instead of the one passing the most tests.
A whole task's probes include seeded calls on inputs made from its bullet signatures (``rcp.fuzz``), which exercise
what its generated tests leave out; and when a whole task's draft passes its tests, the other drafts are still
written (while ``MORE_DRAFTS_MIN_S`` are left) and the passing draft the drafts agree with most is kept
(``_among_passing``): drafts passing weak tests alike can still differ. A task of several module-level functions
left unsolved also gets a mosaic (``_mosaic``): each function from the program the drafts agree with most on it,
the best if it passes more of the tests than the voted program and ranks no lower in the vote.

Stated errors: a task's tests get one ``pytest.raises`` check (one extra LLM call) of each case of an error a bullet
of the task says a function raises (```f(...)```: ... raises `ValueError` if `n` is 0 or negative: two cases)
that the generated tests do not check, and of a rule over every method taking a named parameter ("every method
taking an `amount` raises `ValueError` if ..."), once per method with it. Those error checks also run when the task's
parts are integrated.

Examples the task states (```name(literals) == literal``` in backticks, a value a one-parameter function's bullet
gives for a literal input, as ```[]` for `[]```, and inputs a bullet says raise, as ```ValueError` for a
non-canonical numeral, e.g. `"IIII"```) are the only expected values rcp can trust: they join the tests of the leaf
and of the child contract they concern, and no vote or review ever drops them. A generated check that contradicts
one (the same call expecting another value, or an error where the example gives a value, or the reverse) is
dropped before any draft is written, and in every vote a program that failed one ranks below all that did not.

Contract enforcement: a parent never trusts a child's report. It checks the returned code's signature with
``ast`` and re-runs the contract tests in its own sandbox run; a child that fails is REJECTED and solved again
here with the evidence, unless it reported honestly that it failed these very tests after all its attempts (then
it is integrated as it is, and the integration's fix step or the verdict deals with it).

Budgets: each task has an LLM-call budget (``spec.llm_calls``, capped by ``MAX_LLM_CALLS``) and a wall clock
(``spec.timeout_s``). Children get a share of what is left; the rest is returned after they finish. When a
budget runs out the task ends with its best tested code and ``solved=False``. ``solved`` is True only when the
returned code passed the returned tests in the sandbox.

Errors: ``ModelOutputError`` (an unusable reply) is a failed attempt, retried within budget.
``InfrastructureError`` (Docker down, model missing) propagates, as does cancellation.

Trace accounting: ``TraceNode.llm_calls`` and ``tokens`` count the calls of that node only; sum over the tree
(``subtree_calls``) for a whole task.

Deliberately left out: choosing peers (the swarm's ``Delegate``), languages other than Python, and reuse of
results across tasks.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import logging
import math
import re
import statistics
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from rcp import fuzz, probe, prompts
from rcp.assemble import (
    BUILTIN_EXCEPTIONS,
    AssemblyError,
    FailedAssert,
    Piece,
    against_examples,
    assemble,
    assert_sources,
    cap_checks,
    cap_raises,
    check_signature,
    check_sources,
    clauses,
    clean_module,
    code_key,
    count_checks,
    defined_names,
    drop_asserts,
    failed_asserts,
    fenced_listings,
    hoist_methods,
    is_identifier,
    merge_tests,
    normalize_tests,
    one_failing_function,
    parse_signature,
    passed_a_check,
    raises_checks,
    raises_counts,
    raises_only,
    references,
    repair_tests,
    setup_example,
    signature_header,
    signature_line,
    split_tests,
    task_examples,
    test_names,
)
from rcp.enough import asserts_written, code_written, raises_written
from rcp.errors import BudgetExhausted, ModelOutputError
from rcp.llm import LLM, ChatMessage, Enough, slot_count
from rcp.prompts import Decision, Plan, Review
from rcp.records import (
    MAX_TEXT,
    Contract,
    EventKind,
    ProgressEvent,
    TaskResult,
    TaskSpec,
    TestRun,
    TraceNode,
    new_task_id,
)
from rcp.sandbox import Sandbox, SandboxReport
from rcp.settings import Settings
from rcp.slots import widened_slots

logger = logging.getLogger(__name__)

Emit = Callable[[ProgressEvent], None]
Delegate = Callable[[TaskSpec, Emit], Awaitable[TaskResult]]
M = TypeVar("M", bound=BaseModel)

PYTEST = ("python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short")
MAX_ANCESTORS = 4  # goals kept on a subtask's path; the root task travels separately
MAX_ANCESTOR_CHARS = 300
MAX_SIBLING_CHARS = 200
PLAN_ASKS = 3  # a plan and two re-asks with the validation error
TEST_ASKS = 2
DECIDE_ASKS = 2
SMALL_TASK_NAMES = 6  # a task naming at most this many functions (one class at most) is tried directly first
DECIDE_TOKENS = 256  # a one-sentence reason and an action fit in ~80 tokens
TESTS_TOKENS = 400  # 6 short tests are ~250 tokens; a model repeating one assert is cut off sooner
MAX_GENERATED_CHECKS = 8  # asserts kept of generated tests (rcp.assemble.cap_checks says why)
NAME_TESTS_TOKENS = 250  # a test function of 4 asserts is ~150 tokens (prompts.tests_of)
NAME_CHECKS = 4  # asserts kept of the test function of one name
PLAN_TOKENS = 1536  # 4 parts at the Plan schema's string bounds (~870 chars each) are ~900 tokens; room for JSON
THIN_TESTS = 2  # contract tests with fewer checks than this get generated tests added
# A retry whose prompt is the same as the last one's gets the same code back at a low temperature (seen in real
# runs on the 1.5B: three retries of 195 identical tokens). The attempt after a repeat is sampled hotter.
REPEAT_TEMPERATURE_STEP = 0.35
DRAFT_TEMPERATURE = 0.7  # drafts after the first are sampled this hot, so they can differ
PLAIN_DRAFT_TEMPERATURE = 0.8  # a whole task's plain drafts after the first (as measured, see _draft_asks)
MAX_RETRY_TEMPERATURE = 1.0
# After a whole task's draft passed its tests, the other drafts are still written (to vote on the passing ones'
# behaviour, see Solver._among_passing) only while this many seconds are left: a 1.5B draft takes ~40-80 s on 2 cores.
MORE_DRAFTS_MIN_S = 120.0
# Drafts written together all end when the longest does (~1.4-1.9 times one draft's time on 2 cores): with less
# time left than this they are written one at a time, so a deadline cuts the last draft, not all of them.
TOGETHER_MIN_S = 240.0
# The end of a task's time kept for a last vote (Solver._last_vote): a vote is a probe run and a test run in the
# sandbox, measured 0.4-0.9 s each on this host while the swarm generates.
VOTE_RESERVE_S = 10.0
VOTE_RESERVE_SHARE = 0.02
DIRECT_ROUNDS = 3  # a whole task's failed direct rounds before it may be split (see Solver._split_blocker)
AGAIN_SHARE = 0.2  # after a failed decomposition, a direct attempt is made again if this share of the time is left
CHILD_TIME_SHARE = 0.8  # parts may use this share of the remaining time; the rest is kept for integration
MIN_CHILD_SECONDS = 1.0
# A part gets at least this share of its parent's time, or the split is not started: measured on the 1.5B (calc.py,
# 600 s), a plan accepted late left its four parts 4 s each, and all four ended unsolved with no code.
MIN_PART_SHARE = 0.1
PART_CALLS = 2  # the model time a part needs at least: its tests or a retry, and one draft (see _parts_short)
RECENT_CALLS = 8  # the node's latest chat calls that say what a part's call costs now
# pytest imports conftest.py before collecting: generated code there would run before any test and could forge
# the verdict (tests/test_hostile.py), so a task naming it gets solution.py.
_RESERVED_MODULES = {"conftest"}
_BUILTINS = set(dir(builtins))
_EXCEPTION_BASE = r"\s*\(\s*\w*(Exception|Error)\s*\)"  # what follows an exception class's name: `(ValueError)`
_STOP_WORDS = {"that", "which", "with", "for", "to", "of", "in", "and", "the", "a", "an", "containing", "providing",
               "implementing", "where", "whose", "named", "called", "file", "python", "module"}


class PlanError(ValueError):
    """A decomposition that must not be executed; the message is shown to the model when re-asking."""


def _classes_in_task(text: str) -> dict[str, str]:
    """Classes a task names (```class X(...)``` or ``class `X...```) -> what follows the name in the backticks."""
    return {m[1] or m[3]: m[2] or m[4] for m in re.finditer(
        r"`class\s+([A-Za-z_]\w*)([^`]*)|\bclass `([A-Za-z_]\w*)([^`]*)", text)}


def named_in_task(text: str) -> list[str]:
    """The functions, methods and classes a task names in backticks (```name(...)```) or defines in a fenced
    listing, builtins left out."""
    found = re.findall(r"`(?:def\s+|class\s+)?([A-Za-z_]\w*)\s*\(", text) + list(_classes_in_task(text))
    # Top-level definitions in a fenced listing the task gives (a stub to complete, as in HumanEval).
    for block in fenced_listings(text):
        found += re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", block, re.MULTILINE)
    return [n for n in dict.fromkeys(found) if n not in _BUILTINS]


def _exceptions_in(text: str, own: Collection[str] = ()) -> list[str]:
    """The built-in exceptions (and those in ``own``) a text names, in order."""
    return [e for e in dict.fromkeys(re.findall(r"\b([A-Z]\w*)\b", text))
            if (e in BUILTIN_EXCEPTIONS and e not in ("Exception", "BaseException")) or e in own]


def stated_errors(text: str) -> list[tuple[str, str, str]]:
    """(name, exception, line) for each error a task's bullet line says its function or method raises, as in
    ``- `identity(n: int) -> ...`: ...; `ValueError` if `n < 1`.`` Built-in exceptions and the exception classes
    the task defines count; ``__init__``'s errors are checked on calls of the task's one class."""
    own = {c for c, rest in _classes_in_task(text).items() if re.match(_EXCEPTION_BASE, rest)}
    classes = _component_classes(text)
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*[-*]\s+`(?:def\s+)?([A-Za-z_]\w*)\s*\(", line)
        if m is None:
            continue
        name = m[1]
        if name == "__init__":
            if len(classes) != 1:
                continue
            name = classes[0]
        out += [(name, exc, line.strip().lstrip("-* ")) for exc in _exceptions_in(line, own)]
    return out + _errors_of_every_taking(text, own)


# "every method taking an `amount` raises `ValueError` if ...": one rule over every named function or method with that
# parameter. Its scope runs to the next such phrase or the end of the sentence.
_EVERY_TAKING = re.compile(r"\bevery (?:method|function)s? (?:taking|that takes|with) (?:an? |the )?"
                           r"(?:argument |parameter )?`(\w+)`", re.IGNORECASE)


def _errors_of_every_taking(text: str, own: Collection[str]) -> list[tuple[str, str, str]]:
    """(name, exception, clause) for a rule such as "every method taking an `amount` raises `ValueError` if it is not
    positive", once per function or method of the task's bullet lines whose signature (``fuzz.signatures``) has that
    parameter.

    Measured on the 1.5B (bank.py): deposit and withdraw were checked for a 0 amount, transfer was not, and both the
    swarm's and one plain call's module let transfer move 0 or a negative amount."""
    params: dict[str, set[str]] = {}
    for fn in fuzz.signatures(text):
        a = fn.args
        params.setdefault(fn.name, {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if p})
    out = []
    for sentence in clauses(text):
        sentence = " ".join(sentence.split())  # a rule may wrap
        found = list(_EVERY_TAKING.finditer(sentence))
        for i, m in enumerate(found):
            scope = sentence[m.start():found[i + 1].start() if i + 1 < len(found) else len(sentence)]
            scope = scope.strip().rstrip(",").removesuffix(" and").strip()
            out += [(name, exc, scope) for exc in _exceptions_in(scope, own)
                    for name, names in params.items() if m[1] in names and name != "__init__"]
    return out


def states_error(task: str, check: str) -> bool:
    """Whether ``check`` (a failed check's source) is a ``pytest.raises(E)`` block calling a function or method
    that the task says raises ``E``."""
    return bool(raises_checks(check) & stated_pairs(task))


def stated_pairs(task: str) -> set[tuple[str, str]]:
    """(exception, name) of every error the task states (``stated_errors``), as ``raises_checks`` names checks."""
    return {(exc, name) for name, exc, _ in stated_errors(task)}


def stated_raises(task: str, observed: Sequence[probe.Observed], positions: Sequence[probe.Position],
                  voters: int) -> list[int]:
    """Each program's standing on the errors the task states (``stated_errors``): the ``pytest.raises`` checks of
    one it answers with that very error, less the checks of a value in the tests (not the fuzz calls) where it
    raises while most of the first ``voters`` programs answer with a value.

    A vote ranks by it before agreement: the task's sentence, not the drafts' majority, says such a call raises.
    Measured on the 1.5B (bank.py, bench at 4df627f): the one check of ``transfer(1, 2, 0)`` raising ValueError
    was met by 2 of 9 programs, and the vote kept a majority draft that never checks the amount (9/10 hidden
    tests) where one of those two passed 10/10; the same run at 22c5c5e chose that one. A check all programs fail
    alike (a call on a bank without accounts expecting InsufficientFunds) ranks none above another. What is taken
    off is a program raising on everything (romans.py at 22c5c5e: `is_roman` true for one symbol or pair only, so
    ``from_roman`` raised on every input and met 6 checks of errors where the others met 4; chosen, 3/8 hidden tests
    against the 5/8 the vote by agreement kept)."""
    stated = stated_pairs(task)
    wanted = [(pos, {f"raise:{exc}" for exc, name in raises_checks(pos.source) if (exc, name) in stated})
              for pos in positions if pos.source.startswith("with ")]
    valued = [pos for pos in positions if not pos.source.startswith("with ")
              and not pos.test.startswith(fuzz.TEST_PREFIX)
              and 2 * sum(probe.is_value(o.at(pos)) for o in observed[:voters]) > voters]
    return [sum(o.at(pos) in kinds for pos, kinds in wanted if kinds) -
            sum(probe.is_error(o.at(pos)) for pos in valued) for o in observed]


def error_cases(line: str, exception: str) -> int:
    """How many cases a bullet line states for ``exception``: the conditions joined by "or" in the clause that names
    it, as in ```ValueError` if `qty` is not positive or is more than the units in stock`` (2). Alternatives
    in backticks that end the condition (```http://` or `https://```) and asides in parentheses are one case."""
    for clause in clauses(line):
        named = re.search(rf"`{exception}`|\b{exception}\b", clause)
        if named is None:
            continue
        rest = clause[named.end():]
        if other := re.search(r"`?\b[A-Z]\w*(?:Error|Exception)\b", rest):
            rest = rest[:other.start()]  # up to the next exception's own conditions
        # Alternatives end the condition: "`src == dst` or `amount` is not positive" is two.
        rest = re.sub(r"`[^`]*`(?:\s*,\s*|\s+or\s+)`[^`]*`(?=\s*(?:[,.;)]|$))", "`x`", rest)
        while (shorter := re.sub(r"\([^()]*\)", "", rest)) != rest:
            rest = shorter
        return 1 + len(re.findall(r"\bor\b", re.sub(r"`[^`]*`", "x", rest)))
    return 1


def unused_names(names: Sequence[str], tests: str) -> list[str]:
    """The ``names`` the test file never uses (dunder methods, as ``__init__``, are used through their class)."""
    return [n for n in names if not n.startswith("__") and not references(tests, n)]


def all_definitions(code: str) -> set[str]:
    """Every function, method and class name ``code`` defines, at any depth (nothing if it does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}


def _component_classes(text: str) -> list[str]:
    """The classes a task names in backticks that are components; an exception class (`class NotFound(KeyError)`)
    is a line of code, not a component."""
    return [c for c, rest in _classes_in_task(text).items() if not re.match(_EXCEPTION_BASE, rest)]


def _methods(signature: str) -> list[str]:
    """The method lines of a class contract's signature (``def name(``...)."""
    return re.findall(r"^\s+(?:async\s+)?def\s+(\w+)", signature, re.MULTILINE)


def small_task(text: str) -> str:
    """Why a task is small enough to try directly before any split ('' when it is not or it cannot tell): it
    names, in backticks, at most ``SMALL_TASK_NAMES`` functions or methods and at most one class."""
    names = set(named_in_task(text)) - set(_classes_in_task(text))  # `Inventory()` in an example is the class
    components = _component_classes(text)
    if not names or len(names) > SMALL_TASK_NAMES or len(components) > 1:
        return ""
    where = " in one class" if components else ""
    return f"the task names {len(names)} function{'s' if len(names) > 1 else ''}{where}"


def _methods_in_task(text: str) -> set[str]:
    """The names a task writes in backticks as methods (```name(self...```)."""
    return set(re.findall(r"`(?:def\s+)?([A-Za-z_]\w*)\s*\(\s*self\b", text))


def test_groups(text: str) -> list[tuple[str, bool]]:
    """What a task's tests are asked for one by one (``Solver._tests_by_name``): (name, is a class) for each
    function it names that is no method, then each class that is a component (its methods are tested with it)."""
    methods, classes = task_methods(text), _classes_in_task(text)
    functions = [n for n in dict.fromkeys(named_in_task(text)) if n not in methods and n not in classes
                 and not n.startswith("__")]
    return [(n, False) for n in functions] + [(c, True) for c in _component_classes(text)]


test_groups.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name


def task_methods(text: str) -> set[str]:
    """The names a task gives only as methods (```name(self...```), never as a function of the module."""
    methods = _methods_in_task(text)
    functions = set(re.findall(r"`(?:def\s+)?([A-Za-z_]\w*)\s*\((?!\s*self\b)", text))
    return methods - functions


def one_class(text: str) -> str:
    """Why a task is one class and nothing to split ('' when it is not): it names one class, at most
    ``SMALL_TASK_NAMES`` functions, and every one of them in backticks as a method (```name(self...```)."""
    names = set(named_in_task(text)) - set(_classes_in_task(text))
    methods = _methods_in_task(text)
    classes = _component_classes(text)
    if len(classes) != 1 or not names or len(names) > SMALL_TASK_NAMES or not names <= methods:
        return ""
    return f"the task is one class, {classes[0]}, with {len(names)} method{'s' if len(names) > 1 else ''}"


def several_classes(text: str) -> str:
    """Why a task splits up front along its classes ('' when it names fewer than two component classes)."""
    classes = _component_classes(text)
    if len(classes) < 2:
        return ""
    return f"the task names {len(classes)} classes ({', '.join(classes)}): each is a part of its own"


def module_name(goal: str) -> str:
    """The module a task names ("a module inventory.py" -> inventory), else ``solution``."""
    for m in re.finditer(r"\b([A-Za-z_][A-Za-z0-9_]*)\.py\b", goal):
        if is_identifier(m.group(1)) and not m.group(1).startswith("test") and m.group(1) not in _RESERVED_MODULES:
            return m.group(1)
    m = re.search(r"\bmodule\s+(?:named\s+|called\s+)?[`'\"]?([A-Za-z_][A-Za-z0-9_]*)", goal, re.I)
    if m and m.group(1).lower() not in _STOP_WORDS | _RESERVED_MODULES and is_identifier(m.group(1)):
        return m.group(1)
    return "solution"


def task_names(spec: TaskSpec) -> list[str]:
    """What a task asks its node to define: its contract's name, or the names the task states."""
    return [spec.contract.name] if spec.contract is not None else named_in_task(spec.goal)


def module_functions(spec: TaskSpec) -> list[str]:
    """The functions a task asks for at module level: a function part's name, or the names a whole task states
    that are neither classes nor methods only (``task_methods``)."""
    if spec.contract is not None:
        return [spec.contract.name] if spec.contract.kind == "function" else []
    classes, methods = _classes_in_task(spec.goal), task_methods(spec.goal)
    return [n for n in named_in_task(spec.goal) if n not in classes and n not in methods]


def fuzz_calls(spec: TaskSpec) -> str:
    """The whole task's fuzz calls (rcp.fuzz) on its bullet signatures, one object's methods when it is one class;
    '' for a part (its contract has no bullet lines) or a task without signatures."""
    if spec.contract is not None:
        return ""
    classes = _component_classes(spec.goal)
    return fuzz.calls(spec.goal, spec.module, cls=classes[0] if len(classes) == 1 else "")


def stated_exceptions(root_task: str) -> set[str]:
    """The exceptions the root task names: raising one of them is behaviour a draft may vote for."""
    own = {c for c, rest in _classes_in_task(root_task).items() if re.match(_EXCEPTION_BASE, rest)}
    return set(_exceptions_in(root_task, own))


def vote_probes(spec: TaskSpec, tests: str, calls: str) -> probe.Probes:
    """What a behaviour vote runs: ``tests`` and the task's fuzz ``calls`` (``fuzz_calls``) as probes of the names
    the task asks for (rcp.probe); AssemblyError when they cannot be probed."""
    return probe.probes(f"{tests.rstrip()}\n\n\n{calls}" if calls else tests, task_names(spec))


def mosaic(spec: TaskSpec, codes: Sequence[str], observed: Sequence[probe.Observed],
           positions: Sequence[probe.Position], voters: int, missed: Sequence[bool],
           win: int) -> tuple[str, dict[str, int]] | None:
    """A task's module with each function the task asks for at module level (``module_functions``, two or more)
    taken from the program whose behaviour the first ``voters`` agree with most on the positions naming it
    (rcp.probe.agreement with ``names``; programs ``missed`` failing the task's examples last, ties to the vote's
    winner ``win``, then the earliest), assembled with the winner's other code first (a clashing helper of another
    program renamed), and which program each function came from; None when every function is the winner's or the
    programs cannot be assembled. ``Solver._mosaic`` says when it replaces the voted program."""
    functions = module_functions(spec)
    if len(functions) < 2:
        return None
    errors = stated_exceptions(spec.root_task)
    pick = {}
    for name in functions:
        scores = probe.agreement(observed, positions, voters=voters, names=frozenset({name}), errors=errors)
        pick[name] = max(range(len(codes)), key=lambda i: (not missed[i], scores[i], i == win, -i))
    if all(i == win for i in pick.values()):
        return None
    owners = [win, *sorted(set(pick.values()) - {win})]
    try:
        code = assemble([Piece(owner=f"p{i}", code=codes[i]) for i in owners], module=spec.module,
                        keep={name: f"p{i}" for name, i in pick.items()}).code
    except AssemblyError:
        return None
    return code, pick


def sibling_names(spec: TaskSpec) -> set[str]:
    """The names the sibling parts of a subtask define (from their signature lines)."""
    return {m[1] for line in spec.siblings if (m := re.match(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)", line))}


def _ranked_last(t: _Task, codes: Sequence[str]) -> str:
    """A vote's note on the programs it ranked last for failing an example the task states ('' when none did).

    An example is the user's own expected value, the one kind rcp can trust (rcp.assemble.task_examples); a program
    failing it is wrong whatever the drafts agree on. Seen on the 1.5B (calc.py, bench run at 91d95f5): the vote
    chose a draft whose tokenize raised on the task's own `tokenize("12+(3*4)")`, its hidden tests 4 of 8."""
    missed = sum(code_key(c) in t.missed for c in codes)
    return f"; {missed} of {len(codes)} failing the task's examples ranked last" if missed else ""


def _standing(rank: tuple[int, int]) -> str:
    """A program's rank in a vote in words: its standing on the stated errors (``stated_raises``), its agreement."""
    raised, agreed = rank
    return (f"stated-error score {raised}, " if raised else "") + f"agreed with {agreed} times"


def _with_examples(tests: str, task: str, module: str, name: str | None) -> str:
    """``tests`` plus the examples the task states for ``name`` (all of them without a name) not in it yet."""
    examples = task_examples(task, module, only=name)
    if not examples or assert_sources(examples) <= assert_sources(tests):
        return tests
    try:
        return merge_tests([Piece("task", examples), Piece("tests", tests)], module).code
    except AssemblyError:
        return tests


def _spent_on_these_tests(result: TaskResult, contract: Contract) -> bool:
    """Whether a child honestly failed its contract tests after its attempts, with the agreed signature.

    A child that claimed success, returned no code, broke the signature or never ran the tests is worth solving again.
    """
    return (not result.solved and bool(result.code.strip()) and result.trace.attempts > 1
            and check_signature(result.code, contract.signature) is None)


def subtree_calls(trace: TraceNode) -> int:
    return trace.llm_calls + sum(subtree_calls(c) for c in trace.children)


def subtree_tokens(trace: TraceNode) -> int:
    return trace.tokens + sum(subtree_tokens(c) for c in trace.children)


def validate_plan(plan: Plan, *, module: str, max_parts: int,
                  parent: Contract | None = None) -> tuple[list[Contract], str]:
    """The plan's parts as contracts, and the part tests that use several parts (run when the parts are
    integrated); or ``PlanError`` listing what is wrong (for the re-ask)."""
    problems: list[str] = []
    if not 2 <= len(plan.parts) <= max_parts:
        problems.append(f"it has {len(plan.parts)} parts; it must have 2 to {max_parts}")
    seen: set[str] = set()
    contracts = []
    for part in plan.parts:
        name = part.name.strip()
        if not is_identifier(name):
            problems.append(f"part name {name!r} is not a Python identifier")
            continue
        if name in seen:
            problems.append(f"part name {name} is used twice; names must be unique")
            continue
        seen.add(name)
        if parent is not None and name == parent.name:
            problems.append(f"part {name} is the whole task; split it into smaller helpers")
            continue
        signature = part.signature.strip()
        if not re.match(r"(async\s+)?(def|class)\s", signature):
            # Seen on the 1.5B (romans.py): `to_roman(n: int) -> str`, the `def` left out, for every part.
            signature = ("def " if part.kind == "function" else "class ") + signature
        try:
            sig = parse_signature(signature)
        except AssemblyError as e:
            problems.append(f"part {name}: {e}")
            continue
        kind = "class" if sig.__class__.__name__ == "ClassDef" else "function"
        if sig.name != name:
            problems.append(f"part {name}: its signature defines {sig.name}, not {name}")
            continue
        if kind != part.kind:
            problems.append(f"part {name}: kind is {part.kind} but the signature is a {kind}")
            continue
        if not part.tests.strip():
            problems.append(f"part {name} has no tests")
            continue
        try:
            tests = normalize_tests(repair_tests(part.tests), module, [name])
        except AssemblyError as e:
            problems.append(f"part {name}: {e}")
            continue
        if not references(tests, name):
            problems.append(f"part {name}: its tests never use {name}")
            continue
        if count_checks(tests) == 0:
            problems.append(f"part {name}: its tests have no assert")
            continue
        contracts.append(Contract(name=name, kind=part.kind, signature=signature_header(signature),
                                  behaviour=part.behaviour.strip() or f"see {name}", tests=tests))
    # A part is tested alone, where its siblings do not exist (seen on the 1.5B: total_area's tests built Rectangle
    # objects and failed with NameError on every attempt). Such tests move to the integration, where every part
    # exists; the part keeps the rest and needs at least one test of its own.
    names = {c.name for c in contracts}
    together: list[str] = []
    for i, c in enumerate(contracts):
        others = {n for n in names - {c.name} if references(c.tests, n)}
        if not others:
            continue
        try:
            alone, using = split_tests(c.tests, others)
        except AssemblyError:
            alone = using = ""
        if count_checks(alone) == 0:
            problems.append(f"part {c.name}: its tests all use {', '.join(sorted(others))}, another part; each part "
                            "is tested alone, so give it tests with plain values or a small stand-in class")
            continue
        contracts[i] = c.model_copy(update={"tests": alone})
        together.append(using)
    if problems:
        raise PlanError("; ".join(problems))
    return contracts, "\n\n".join(together)


def test_counts(report: SandboxReport) -> tuple[int, int]:
    """(passed, failed) of a pytest run, from the report or, when it did not count, from pytest's summary line."""
    if report.tests_passed is not None or report.tests_failed is not None:
        return report.tests_passed or 0, report.tests_failed or 0
    text = report.stdout + "\n" + report.stderr

    def count(word: str) -> int:
        return sum(int(n) for n in re.findall(rf"(\d+) {word}", text))

    return count("passed"), count("failed") + count("errors?")


test_counts.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test


def failure_text(report: SandboxReport, limit: int = prompts.MAX_FAILURE) -> str:
    """The part of a failed run worth showing the model: pytest's failure sections and summary, not the dots."""
    if report.timed_out:
        return f"The test run was killed after {report.duration_s:.0f} s: an endless loop or far too slow code."
    if report.oom_killed:
        return "The test run was killed: it ran out of memory."
    text = (report.stdout + ("\n" + report.stderr if report.stderr.strip() else "")).strip()
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"^=+ (FAILURES|ERRORS) =+$", ln)), None)
    if start is not None:
        text = "\n".join(ln for ln in lines[start + 1:] if not re.match(r"^=+ short test summary", ln))
    return prompts.clip(text or f"exit code {report.exit_code} and no output", limit)


def failing_tests(report: SandboxReport) -> set[str]:
    """Top-level test names pytest reported as failed or erroring."""
    names = set(re.findall(r"^(?:FAILED|ERROR) [^\s:]+::([A-Za-z_]\w*)", report.stdout, re.M))
    names.update(re.findall(r"^_{3,} (?:ERROR at \w+ of )?([A-Za-z_]\w*)(?:\.\w+)? _{3,}$", report.stdout, re.M))
    return names


@dataclass
class _Candidate:
    """Code with the tests it ran against and how that run went."""

    code: str
    tests: str
    run: TestRun
    failing: frozenset[str] = frozenset()  # names of the tests that failed
    untested: tuple[str, ...] = ()  # what the task names that the tests never use: passing them proves nothing

    @property
    def passed_all(self) -> bool:
        r = self.run
        return r.exit_code == 0 and not r.timed_out and r.failed == 0 and r.passed > 0

    @property
    def solved(self) -> bool:
        return self.passed_all and not self.untested

    @property
    def score(self) -> tuple[bool, float, int]:
        total = self.run.passed + self.run.failed
        return self.solved, (self.run.passed / total if total else 0.0), self.run.passed


@dataclass
class _Task:
    """The bookkeeping of one ``solve``: budgets, best result so far, trace."""

    spec: TaskSpec
    emit: Emit
    trace: TraceNode
    started: float  # loop.time()
    deadline: float  # loop.time() by which the result must be ready
    calls_budget: int
    calls_left: int
    best: _Candidate | None = None
    tests: str | None = None  # the leaf's tests, made once
    last_failure: str = ""
    stop: str = ""  # why work stopped early, for the verdict
    rounds: int = 0  # direct attempts (``Solver._execute``) made
    dropped: int = 0  # test checks judged wrong and removed from the leaf's tests
    plan_tests: str = ""  # the plan's part tests that use other parts: run at integration
    # Every distinct program of a direct attempt (and an integrated module), by code_key, in the order written:
    # (code, is a draft, a label for the trace). The behaviour vote (Solver._vote) lets the drafts vote and scores
    # every program by their votes.
    programs: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    observed: dict[tuple[str, str], probe.Observed] = field(default_factory=dict)  # (tests, code_key) -> probe run
    mosaics: set[str] = field(default_factory=set)  # code_keys of the mosaics made (``Solver._mosaic``)
    ballot: tuple[str, ...] = ()  # what the last vote decided on: tests, the best's code_key, the programs
    fuzz: str | None = None  # the task's fuzz calls (rcp.fuzz), made once; '' when it has none
    missed: set[str] = field(default_factory=set)  # code_keys of programs that failed an example the task states
    logged_tests: str = ""  # the tests last written to the DEBUG log (``program``)

    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    @property
    def direct_tried(self) -> bool:
        return self.rounds > 0

    def program(self, code: str, is_draft: bool, label: str) -> None:
        """Records a program for the vote, once; its code goes to the node's DEBUG log (with the tests it was
        written against first), so a bench's ``--traces`` keeps every program a task wrote for regrading."""
        key = code_key(code)
        if key in self.programs:
            return
        self.programs[key] = (code, is_draft, label)
        if logger.isEnabledFor(logging.DEBUG):
            if self.tests is not None and self.tests != self.logged_tests:
                self.logged_tests = self.tests
                logger.debug("task %s: tests\n%s", self.spec.task_id, self.tests)
            logger.debug("task %s: program (%s, %s)\n%s", self.spec.task_id, label, "draft" if is_draft else
                         "scored, not voting", code)

    def offer(self, cand: _Candidate) -> None:
        # After a behaviour vote, only a solution replaces its choice: a later program passing more of the same
        # (possibly wrong) tests is what the vote was for. Seen on the 1.5B (inventory.py): a second direct attempt
        # ran out of time before its own vote.
        if self.ballot and not cand.solved:
            return
        if self.best is None or cand.score > self.best.score:
            self.best = cand


@dataclass
class _Outcome:
    """A part after delegation and contract enforcement (``result`` None: nothing came back at all)."""

    spec: TaskSpec
    result: TaskResult | None
    accepted: bool

    @property
    def contract(self) -> Contract:
        assert self.spec.contract is not None
        return self.spec.contract


class Solver:
    """Solves a task on this node; see the module docstring for the loop."""

    def __init__(self, llm: LLM, sandbox: Sandbox, settings: Settings, *, node: str = "local",
                 delegate: Delegate | None = None) -> None:
        self.llm = llm
        self.sandbox = sandbox
        self.settings = settings
        self.node = node
        self.delegate = delegate
        # Calls this host runs at once at the speed a lone call has (rcp.slots): by default a lone generation takes
        # every slot (widening), so 1. The parts of a split share it in a one-machine swarm (Solver._parts_short).
        slots = slot_count(settings)
        self._calls_at_once = slots / min(slots, widened_slots(settings.n_threads, settings.n_threads_max))
        # Verdicts of [rcp:review] by (root task, assert): a parent re-checking what its in-process child
        # disputed gets the same answer without asking the same model the same question again.
        self._reviews: dict[tuple[str, str], bool] = {}

    async def solve(self, spec: TaskSpec, emit: Emit) -> TaskResult:
        """Solve ``spec``, reporting progress through ``emit``. Never claims success without a passing test run."""
        if spec.depth == 0 and spec.contract is None and spec.module == "solution":
            spec = spec.model_copy(update={"module": module_name(spec.goal)})
        return await self._solve(spec, emit)

    # --- one task ----------------------------------------------------------------------------------------------

    async def _solve(self, spec: TaskSpec, emit: Emit) -> TaskResult:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Finish a little before the caller's own timeout so the result, not a timeout, reaches it.
        margin = min(5.0, 0.05 * spec.timeout_s)
        calls = min(spec.llm_calls, self.settings.max_llm_calls)
        t = _Task(spec=spec, emit=emit, started=now, deadline=now + spec.timeout_s - margin, calls_budget=calls,
                  calls_left=calls, trace=TraceNode(task_id=spec.task_id, goal=spec.goal, node=self.node,
                                                    depth=spec.depth))
        self._event(t, EventKind.ACCEPTED, f"depth {spec.depth}, module {spec.module}.py, budget {calls} LLM calls "
                                           f"and {spec.timeout_s:.0f} s")
        timeout = asyncio.timeout_at(t.deadline - min(VOTE_RESERVE_S, VOTE_RESERVE_SHARE * spec.timeout_s))
        try:
            async with timeout:
                await self._work(t)
        except BudgetExhausted as e:
            t.stop = str(e)
        except TimeoutError:
            if not timeout.expired():
                raise
            t.stop = f"wall-clock budget of {spec.timeout_s:.0f} s used up"
        if t.stop:
            await self._last_vote(t)
        return self._finish(t)

    async def _last_vote(self, t: _Task) -> None:
        """The vote (``_vote``) on the programs written since the last one, when a budget cut the work short, in the
        time kept for it (VOTE_RESERVE_S). Measured on the 1.5B (intervals.py, 600 s): the deadline cut a second
        direct round after two drafts passing 7 and 8 of 9 hidden tests, and the module voted before them (2/9)
        was returned; the vote taken again over all six programs chose the 7/9 draft."""
        try:
            async with asyncio.timeout_at(t.deadline):
                await self._vote(t)
        except TimeoutError:
            t.trace.notes.append("no time left for a last vote")

    async def _work(self, t: _Task) -> None:
        action, reason = await self._decide(t)
        t.trace.decision, t.trace.reason = action, reason
        self._event(t, EventKind.DECIDED, f"{action}: {reason}")
        if action == "direct":
            cand = await self._execute(t)
            if cand is not None and cand.solved:
                return
            blocker, again_s = self._split_blocker(t)
            if blocker:
                if t.remaining() < again_s and t.spec.contract is None and again_s < math.inf:
                    t.trace.notes.append(f"{blocker}: not split, and the {max(0.0, t.remaining()):.0f} s left are "
                                         "too few to try again")
                # Round after round while the time lasts: measured on the 1.5B (bench at 0694ff0), `lrucache` ended
                # its second round with 278 s of its 600 unused, and `shortener` with 79 s.
                while blocker and t.remaining() >= again_s:
                    t.trace.notes.append(f"{blocker}: not split; trying directly again with the time left")
                    why = "a class is not split into its methods" if one_class(t.spec.goal) else \
                        f"not split ({blocker})"
                    self._event(t, EventKind.DECIDED, f"direct again: {why}")
                    cand = await self._execute(t)
                    if cand is not None and cand.solved:
                        return
                    blocker, again_s = self._split_blocker(t)
                if blocker:
                    return
            t.trace.decision = "decompose"
            t.trace.reason = f"as needed: the direct attempt failed ({reason})"
            self._event(t, EventKind.DECIDED, "decompose: the direct attempt failed its tests")
        cand = await self._decompose(t)
        if cand is not None and cand.solved:
            return
        if cand is not None:
            # The integrated module joins the vote as one more program (scored, not voting). Its test score was
            # measured on the parts' tests, not the task's, so it is no reason to prefer it on its own.
            t.program(cand.code, False, "the integrated module")
        if not t.direct_tried:
            t.trace.notes.append("decomposition did not succeed; trying directly")
            await self._execute(t)
        elif t.remaining() >= AGAIN_SHARE * t.spec.timeout_s:
            # Measured on the 1.5B (bank.py): three plans rejected, and the task ended with 230 of its 620 s
            # unused. More drafts and retries are the best use of that time.
            t.trace.notes.append("decomposition did not succeed; trying directly again with the time left")
            self._event(t, EventKind.DECIDED, "direct again: the decomposition did not succeed")
            await self._execute(t)
        await self._vote(t)

    def _may_decompose(self, t: _Task) -> bool:
        return not self._split_blocker(t)[0]

    def _split_blocker(self, t: _Task) -> tuple[str, float]:
        """Why this task is not split now ('' when it may be), and the time left from which it is tried directly
        again instead: a whole task that is one class, or one with fewer than DIRECT_ROUNDS failed direct rounds,
        with AGAIN_SHARE of its time; a whole task whose parts would get too little time, while PART_CALLS calls
        fit (a draft cut off by the deadline costs nothing: after a vote only a solution replaces the best). A
        part, or a depth or call limit, ends the task with what it has."""
        # A single function is not split: measured on the 1.5B, a failed word_count(text) was "decomposed" into a
        # re-plan of its siblings (the root task is in its mission context), spending 13 calls and 380 s for nothing.
        if t.spec.contract is not None and t.spec.contract.kind == "function":
            return "a single function", math.inf
        # Nor is a small class part: measured on the 1.5B (shapes.py), a two-method Circle part that failed its
        # own tests spent 66 s on three plans, all rejected as "part Circle is the whole task".
        if t.spec.contract is not None and len(_methods(t.spec.contract.signature)) <= SMALL_TASK_NAMES:
            return "a small class", math.inf
        # Nor is a whole task that is one such class: measured on the 1.5B (inventory.py, 600 s), the plan made its
        # four methods four functions, none of which could pass the class's tests, and its 8 parts spent the last
        # 260 s for nothing. Its time goes to another direct attempt instead (see _work).
        if t.spec.contract is None and (whole := one_class(t.spec.goal)):
            return whole, AGAIN_SHARE * t.spec.timeout_s
        if t.spec.depth >= self.settings.max_depth:
            return f"depth {t.spec.depth} is the depth limit", math.inf
        # A plan, one LLM call per part and one for integration is the least a decomposition needs.
        if t.calls_left < 4:
            return f"{t.calls_left} LLM calls left", math.inf
        c = t.spec.contract
        named = len(_methods(c.signature)) if c is not None else len(named_in_task(t.spec.goal))
        parts = min(self.settings.max_subtasks, max(2, named))  # the plan's size is not known yet
        short = self._parts_short(t, parts, plan_first=True)
        # A whole task whose parts would get their time is still not split before DIRECT_ROUNDS failed direct
        # rounds. Measured on the 1.5B (bench at 2bea722, 600 s): with drafts, new drafts and tests written together
        # a round ended in 126-206 s, and the split that followed returned calc.py passing 4/8 hidden tests where
        # direct rounds had passed 8/8 (at 1ac5b42), and textstats.py "solved" on its parts' contract tests, 7/9,
        # with 242 s unused. After two rounds (bench at 0242fe5) the splits of textstats.py (at 248 s) and calc.py
        # (at 341 s) failed alike, their parts rejected on the plan's own wrong examples (`eval_rpn(['1', '2', '3',
        # '*', '+']) == 1.0`), while a third round had solved calc.py (at 725f8c3). No split of a whole task helped in
        # any bench run of these sessions; at the default TASK_TIMEOUT (900 s) a task still splits after three.
        if not short and t.spec.contract is None and 0 < t.rounds < DIRECT_ROUNDS:
            return (f"{t.rounds} failed direct round(s): a whole task is split after {DIRECT_ROUNDS}",
                    AGAIN_SHARE * t.spec.timeout_s)
        return short, PART_CALLS * self._call_seconds() if t.spec.contract is None else math.inf

    def _call_seconds(self) -> float:
        """What a part's call (tests or code) costs on this node now: the median of its last few chat calls, 0
        before any. Structured calls are left out: a plan (up to PLAN_TOKENS) takes several times a part's call,
        and a review or decision a fraction of it."""
        recent = [c.seconds for c in self.llm.calls if c.kind == "chat"][-RECENT_CALLS:]
        return statistics.median(recent) if recent else 0.0

    def _parts_short(self, t: _Task, parts: int, *, plan_first: bool = False) -> str:
        """Why the time left is too little for ``parts`` parts ('' when it is enough): each needs its least share
        (MIN_PART_SHARE) of the task's time, and the model time of PART_CALLS calls at the speed of the node's
        recent chat calls, the parts sharing this host's generation slots (rcp.slots) as they do in a one-machine swarm
        (on several machines this is cautious); ``plan_first``: the plan is not asked yet.

        Measured on the 1.5B (2 cores, 600 s): textstats.py's direct attempt failed with 171 s left, and its four
        parts got 132 s each; with 40-60 s per call and two generations at a time, two parts waited 107 s for a
        slot and ended with no code. Over the 22 bench runs kept from these sessions, 7 tasks were split after
        their direct attempt failed, and 20 of those splits' 40 part runs ended without one answered call."""
        call = self._call_seconds()
        left = t.remaining() - (call if plan_first else 0.0)
        per_part = left * CHILD_TIME_SHARE
        if per_part < max(MIN_CHILD_SECONDS, MIN_PART_SHARE * t.spec.timeout_s):
            return f"{max(0.0, left):.0f} s left, too little for its parts"
        model_time = per_part * min(1.0, self._calls_at_once / parts)
        if model_time < PART_CALLS * call:
            return (f"{max(0.0, left):.0f} s left: {parts} parts would get {model_time:.0f} s of model time each on "
                    f"this host, less than {PART_CALLS} calls of {call:.0f} s")
        return ""

    def _finish(self, t: _Task) -> TaskResult:
        best = t.best
        solved = best is not None and best.solved
        t.trace.solved = solved
        t.trace.seconds = round(asyncio.get_running_loop().time() - t.started, 3)
        if solved:
            assert best is not None
            verdict = f"solved: {best.run.passed} tests passed"
        elif best is not None and best.passed_all:
            # Measured on the 1.5B (intervals.py): tests of merge alone, asked for twice, then "solved" with a
            # wrong gaps. A part's tests that pass prove only that part; a split gives each function its tests.
            why = t.stop or "no attempt was tested on everything the task names"
            verdict = (f"not solved: {why}; the best code passed its {best.run.passed} tests, which never use "
                       f"{', '.join(best.untested)}")
        else:
            why = t.stop or "the tests still fail after every attempt"
            if best is None:
                verdict = f"not solved: {why}; no code was tested"
            else:
                verdict = (f"not solved: {why}; the best code passed {best.run.passed} of "
                           f"{best.run.passed + best.run.failed} tests")
        if t.stop:
            t.trace.notes.append(t.stop)
        result = TaskResult(task_id=t.spec.task_id, solved=solved, verdict=verdict[:4096], module=t.spec.module,
                            code=best.code if best else "", tests=best.tests if best else (t.tests or ""),
                            trace=t.trace)
        self._event(t, EventKind.RESULT, verdict, tests_passed=best.run.passed if best else None,
                    tests_failed=best.run.failed if best else None)
        logger.info("task %s (depth %d) %s in %.1f s with %d LLM calls", t.spec.task_id, t.spec.depth, verdict,
                    t.trace.seconds, t.trace.llm_calls)
        return result

    # --- decide ------------------------------------------------------------------------------------------------

    async def _decide(self, t: _Task) -> tuple[str, str]:
        spec = t.spec
        if spec.depth >= self.settings.max_depth:
            return "direct", f"depth {spec.depth} is the depth limit"
        if spec.contract is not None and spec.contract.kind == "function":
            # Saves an LLM call; a single function is never split (see _may_decompose).
            return "direct", "a single function: solved directly"
        if spec.contract is not None and not t.direct_tried:
            # Seen on the 1.5B: a Rectangle part "decided: decompose" with the reason that it fits one function.
            return "direct", "one class: tried directly first, split only if that fails"
        if not t.direct_tried and (small := small_task(spec.goal if spec.contract is None else "")):
            # As-needed decomposition: measured on the 1.5B, the decide call chose "decompose" for a module of four
            # functions despite the prompt, and the plan and parts then used up its 600 s.
            return "direct", f"{small}: tried directly first, split only if that fails"
        if not t.direct_tried and spec.contract is None and (several := several_classes(spec.goal)) \
                and self._may_decompose(t):
            # Classes are independent units with their own tests, solved side by side on peers; measured on the
            # 1.5B with shapes.py (two classes and a function), the direct attempt failed in 2 of 3 runs (once on a
            # test bug fixed since), spending 6 attempts. A part's tests that use another part run at integration.
            return "decompose", several
        for _ in range(DECIDE_ASKS):
            try:
                d = await self._structured(t, prompts.decide(spec, self.settings.max_subtasks), Decision,
                                           max_tokens=DECIDE_TOKENS)
                return d.action, d.reason.strip() or "no reason given"
            except ModelOutputError as e:
                t.trace.notes.append(f"decide: {e}")
        return "direct", "no valid decision from the model; trying directly first"

    # --- execute (leaf) ----------------------------------------------------------------------------------------

    async def _leaf_tests(self, t: _Task) -> str:
        """The leaf's tests: the contract's, plus generated ones when those are thin, plus a check of each error
        the task states that none of them checks. Made once per task."""
        if t.tests is not None:
            return t.tests
        tests = await self._written_tests(t)
        if tests.strip():
            tests = self._without_contradictions(t, await self._error_checks(t, tests))
            self._event(t, EventKind.TESTS, f"{count_checks(tests)} checks in {len(test_names(tests))} tests")
        t.tests = tests
        return tests

    async def _written_tests(self, t: _Task) -> str:
        """The contract's tests, plus generated ones when those are thin."""
        spec, c = t.spec, t.spec.contract
        names = [c.name] if c else []
        base = ""
        if c is not None and c.tests.strip():
            try:
                base = normalize_tests(c.tests, spec.module, names, task_methods(spec.root_task))
            except AssemblyError as e:
                t.trace.notes.append(f"contract tests unusable: {e}")
        thin = count_checks(base) < THIN_TESTS
        base = _with_examples(base, spec.root_task, spec.module, c.name if c else None)
        if not thin:
            return base
        if c is None and len(groups := test_groups(spec.goal)) > 1:
            return await self._tests_by_name(t, base, groups)
        if c is not None:
            # A part's tests are asked for by its name (prompts.tests_of). Measured on the 1.5B (shortener.py, bench
            # at 573694b): a URLShortener part whose plan's checks were all refuted was asked for tests of the part
            # twice, and both replies tested its sibling encode_base62 until cut off, so it wrote no code. Replayed
            # offline at three temperatures, the same ask ending "Test only `URLShortener`" began with encode_base62
            # tests every time and never built the class; asked by name (tests_of), all three tested the class.
            return await self._tests_by_name(t, base, [(c.name, c.kind == "class")])
        error = ""
        focus: list[str] = []  # the names earlier tests missed: the next ask is for tests of these alone
        asks = 0
        # One more ask when tests came back that miss some names: measured on the 1.5B (textstats.py), the first
        # reply had no code block, the second missed two functions, and so no ask for those two was left.
        while asks < TEST_ASKS + bool(focus):
            asks += 1
            self._event(t, EventKind.TESTS, "writing tests" + (f" again: {error}" if error else ""))
            try:
                reply = await self._chat(t, prompts.tests(spec, base, error=error, focus=focus),
                                         max_tokens=min(TESTS_TOKENS, self.llm.max_tokens),
                                         enough=asserts_written(MAX_GENERATED_CHECKS))
                gen = cap_checks(self._tests_of(t, reply)[0], MAX_GENERATED_CHECKS)
                if count_checks(gen) == 0:
                    raise ModelOutputError("the tests have no assert")
                merged = merge_tests([Piece("contract", base), Piece("generated", gen)], spec.module).code
                untested = unused_names(self._required(t), merged)
                if untested:
                    # Measured on the 1.5B: one test for a module of four functions, "solved", and the module
                    # lacked a function the task named. What was written is kept, and the next ask is for tests
                    # of the rest alone: asked for all again, the 1.5B tested the same two of romans.py's four
                    # functions twice (so did intervals.py and textstats.py), and each task was lost.
                    base, focus = merged, untested
                    raise ModelOutputError(f"the tests never use {', '.join(untested)}: test every function the "
                                           "task names")
                return merged
            except (ModelOutputError, AssemblyError) as e:
                error = str(e)
                t.trace.notes.append(f"tests: {e}")
        return base

    async def _tests_by_name(self, t: _Task, base: str, groups: list[tuple[str, bool]]) -> str:
        """``base`` plus one generated test function for each (name, is a class) of ``groups``, each its own ask
        (``prompts.tests_of``), asked again once with the error when its reply is unusable. The first asks are
        written together (``LLM.chat_many``), one at a time when the model could not answer them together."""
        spec = t.spec
        tests = base
        max_tokens, enough = min(NAME_TESTS_TOKENS, self.llm.max_tokens), asserts_written(NAME_CHECKS)
        first: list[str] = []  # the replies to the first asks, written together
        if len(together := groups[:t.calls_left]) > 1:
            self._event(t, EventKind.TESTS, f"writing tests of {', '.join(name for name, _ in together)} together")
            try:
                first = await self._chat_many(t, [(prompts.tests_of(spec, name, is_class), None)
                                                  for name, is_class in together],
                                              max_tokens=max_tokens, enough=enough)
            except ModelOutputError as e:
                t.trace.notes.append(f"tests written together: {e}")
        for i, (name, is_class) in enumerate(groups):
            error = ""
            for ask in range(TEST_ASKS):
                written = first[i] if not ask and i < len(first) else None
                if written is None:
                    self._event(t, EventKind.TESTS, f"writing tests of {name}" + (f" again: {error}" if error else ""))
                try:
                    reply = written if written is not None else \
                        await self._chat(t, prompts.tests_of(spec, name, is_class, error=error),
                                         max_tokens=max_tokens, enough=enough)
                    gen, used = self._tests_of(t, reply)
                    gen = cap_checks(gen, NAME_CHECKS)
                    if not references(gen, name):
                        alone = (f" without {', '.join(sorted(used))}: {name} is tested alone, where they do not "
                                 "exist, so use plain values or a small stand-in class") if used else ""
                        raise ModelOutputError(f"the test never uses {name}{alone}")
                    if count_checks(gen) == 0:
                        raise ModelOutputError("the test has no assert")
                    tests = merge_tests([Piece("tests", tests), Piece(name, gen)], spec.module).code
                    break
                except (ModelOutputError, AssemblyError) as e:
                    error = str(e)
                    t.trace.notes.append(f"tests of {name}: {e}")
        return tests

    @staticmethod
    def _without_contradictions(t: _Task, tests: str) -> str:
        """``tests`` without the checks that contradict an example the task states (rcp.assemble.against_examples):
        no program passes both. Measured on the 1.5B (calc.py, bench run at 91d95f5): a generated check wanted
        `tokenize("12+(3*4)")` to raise ValueError where the task gives its tokens; the module kept raised on every
        parenthesis and failed 4 of 8 hidden tests."""
        c = t.spec.contract
        wrong = against_examples(tests, task_examples(t.spec.root_task, t.spec.module, only=c.name if c else None))
        if not wrong:
            return tests
        t.trace.notes.append(f"dropped {len(wrong)} check(s) that contradict the task's examples: " +
                             "; ".join(source for _, source in wrong)[:400])
        amended = drop_asserts(tests, {line for line, _ in wrong})
        return amended if count_checks(amended) else tests

    @staticmethod
    def _tests_of(t: _Task, reply: str) -> tuple[str, set[str]]:
        """The test file in a reply, importing from the module, without the tests that use a sibling part (this
        part is tested alone: its siblings are not in the module, see validate_plan), and the siblings it used."""
        c = t.spec.contract
        gen = normalize_tests(prompts.parse_code_reply(reply, want_tests=True), t.spec.module, [c.name] if c else [],
                              task_methods(t.spec.root_task))
        if used := {n for n in sibling_names(t.spec) if references(gen, n)}:
            gen = split_tests(gen, used)[0]
        return gen, used

    async def _error_checks(self, t: _Task, tests: str) -> str:
        """A task's ``tests`` plus a ``pytest.raises`` check of each stated error they do not check yet, written
        in one LLM call and one more for the cases it left out, or for all again when the first reply is unusable
        (``tests`` as they are if both are).
        Measured on the 1.5B, 5 of the swarm's 14 failed hidden tests on 8 module tasks were stated errors its
        own tests never checked (inventory's ``remove(x, 0)``, calc's mismatched parentheses): such code was
        "solved" or retried for nothing."""
        if t.spec.contract is not None:
            # A part's tests are its parent's and its time is short (measured on the 1.5B: matrix.py's 4 parts got
            # 204 s each, and a written `identity(1.5)` check expecting ValueError cost one its result).
            return tests
        # Per case, not per (function, exception): measured on the 1.5B (inventory.py), the tests checked
        # `remove` for ValueError on too many units, never on 0, and a `remove` without that check was "solved".
        checked = raises_counts(tests)
        stated: dict[tuple[str, str], tuple[list[str], int]] = {}  # a rule for every method adds to a bullet's own
        for name, exc, line in stated_errors(t.spec.goal):
            lines, cases = stated.get((name, exc), ([], 0))
            stated[(name, exc)] = ([*lines, line], cases + error_cases(line, exc))
        missing = [(name, exc, " / ".join(lines), cases) for (name, exc), (lines, cases) in stated.items()
                   if checked[(exc, name)] < cases]
        if not missing:
            return tests
        error = ""
        for ask in range(2):
            what = ("writing checks of the stated errors again, the reply could not be used: " if error else
                    "writing checks of the stated error cases still unchecked: " if ask else
                    f"writing checks of {len(missing)} stated error(s): ")
            cases_asked = (f"{name} raises {exc}" + (f" ({cases} cases)" if cases > 1 else "")
                           for name, exc, _, cases in missing)
            self._event(t, EventKind.TESTS, what + ", ".join(cases_asked))
            try:
                written = await self._error_tests(t, missing, tests, error=error)
                tests = merge_tests([Piece("tests", tests), Piece("errors", written)], t.spec.module).code
            except (ModelOutputError, AssemblyError) as e:
                t.trace.notes.append(f"error tests: {e}")
                # An unusable first reply is asked for again, with what was wrong: measured on the 1.5B (calc.py,
                # bench at 5a5ff1f and 1f7a25d), its reply did not parse (`expected '('`), no stated error was
                # checked, and the module returned accepted mismatched parentheses (6/8 hidden tests).
                if ask or t.remaining() < self._call_seconds():
                    return tests
                error = str(e)
                continue
            # Asked again once for the cases still unchecked (``_unchecked``). Measured on the 1.5B (bank.py): asked
            # for `transfer`'s 2 ValueError cases (its bullet's `src == dst`, and the rule for every method taking an
            # `amount`), it wrote the first only, and no module's `transfer` refused an amount of 0.
            missing = self._unchecked(tests, stated)
            if not missing or t.remaining() < self._call_seconds():
                break
        return tests

    @staticmethod
    def _unchecked(tests: str, stated: dict[tuple[str, str], tuple[list[str], int]]
                   ) -> list[tuple[str, str, str, int]]:
        """(name, exception, the sentences stating the cases not checked yet, how many) for each error of ``stated``
        ((name, exception) -> (sentences, cases)) that ``tests`` check fewer times than it has cases. The checks
        there are taken to be the first sentences' cases: asked for all of them, the model writes them in order."""
        checked = raises_counts(tests)
        out = []
        for (name, exc), (lines, cases) in stated.items():
            if (n := checked[(exc, name)]) < cases:
                out.append((name, exc, " / ".join(lines[min(n, len(lines) - 1):]), cases - n))
        return out

    async def _error_tests(self, t: _Task, missing: list[tuple[str, str, str, int]], tests: str, *,
                           error: str = "") -> str:
        """One reply's ``pytest.raises`` checks of the ``missing`` cases, at most as many as asked. The ask shows how
        ``tests`` build the task's class (``setup_example``). Measured on the 1.5B (bank.py, two runs), without it
        the checks called a bank without accounts: ``withdraw(1, 100)`` expecting InsufficientFunds failed every
        draft (it raised KeyError) and ``transfer(1, 2, 0)`` passed only drafts checking the amount first."""
        wanted = {(exc, name): cases for name, exc, _, cases in missing}
        classes = _component_classes(t.spec.goal)
        example = setup_example(tests, classes[0]) if len(classes) == 1 else ""
        reply = await self._chat(t, prompts.error_tests(t.spec, missing, example, error=error),
                                 max_tokens=min(TESTS_TOKENS, self.llm.max_tokens), enough=raises_written(wanted))
        gen = cap_raises(cap_checks(self._tests_of(t, reply)[0], sum(wanted.values())), wanted)
        if not raises_checks(gen) & wanted.keys():
            raise ModelOutputError("no check of a stated error")
        return gen

    @staticmethod
    def _trusted(t: _Task) -> set[str]:
        """The asserts of the examples the task states: no review or vote ever drops them."""
        return assert_sources(task_examples(t.spec.root_task, t.spec.module))

    def _names(self, t: _Task) -> list[str]:
        return task_names(t.spec)

    def _required(self, t: _Task) -> list[str]:
        """What the module must define: the functions, methods and classes a task without contract names."""
        return named_in_task(t.spec.goal) if t.spec.contract is None else []

    async def _execute(self, t: _Task) -> _Candidate | None:
        t.rounds += 1
        spec = t.spec
        tests = await self._leaf_tests(t)
        if not tests.strip():
            t.last_failure = "no tests could be written for this task"
            t.trace.notes.append(t.last_failure)
            return None
        tried: dict[str, tuple[_Candidate, str]] = {}  # run against these tests, keyed by code_key
        cand, failure, tests = await self._drafts(t, tests, tried)
        if cand is not None and cand.passed_all:
            return cand
        previous = cand.code if cand is not None else ""
        checks = count_checks(tests)
        last_fails = {f.source: f.message for f in self._failed_asserts(t, cand)}
        repeats = 0
        first_retry = t.trace.attempts + 1
        last_retry = first_retry + self.settings.max_retries - 1
        ahead: list[tuple[str | None, str]] = []  # new drafts written together and not taken yet (see _redraft)
        for attempt in range(first_retry, last_retry + 1):
            t.trace.attempts += 1
            # Failures confined to one function of a module whose other functions pass: only that function is
            # asked for and merged in, so what passed cannot break, and the reply is a few lines, not a module.
            focus = one_failing_function(cand.code, cand.tests, cand.failing) \
                if cand is not None and cand.code == previous else None
            # A whole task's module is drafted anew instead of retried whole: measured on the 1.5B (bench traces at
            # 91d95f5..af4b611), 12 of 14 first retries of a whole module repeated the code shown, each a call of
            # 48-80 s, and the new drafts after two of them solved bank.py. A one-function fix is still asked.
            if (repeats or focus is None) and self._plain_drafts(t):
                run = await self._redraft(t, attempt, tests, tried, ahead, last_retry)
                if run is None:
                    continue
                if run.passed_all:
                    return run
                if cand is None or run.run.passed > cand.run.passed:  # the retries go on from it
                    cand, failure, previous, repeats = run, tried[code_key(run.code)][1], run.code, 0
                code = cand.code
            else:
                if focus is not None:
                    messages = prompts.fix_function(spec, previous, focus[0], focus[1], failure,
                                                    repeated=repeats > 0)
                else:
                    messages = prompts.code(spec, tests, previous=previous, failure=failure, repeated=repeats > 0)
                code, unusable = await self._write(t, attempt, messages, self._retry_temperature(repeats),
                                                   onto=previous if focus is not None else "")
                if code is None:
                    failure = unusable
                    continue
                key = code_key(code)
                if key in tried:
                    # Not run again: it would fail the same way. The model writing it twice still counts as a
                    # second vote for its behaviour below, but the next attempt is sampled hotter to get something new.
                    repeats += 1
                    cand, failure = tried[key]
                    nxt = "a new draft" if self._plain_drafts(t) else \
                        f"sampled at temperature {self._retry_temperature(repeats):.2f}"
                    self._event(t, EventKind.ATTEMPT, f"attempt {attempt}: the same code as an earlier attempt, not "
                                f"run again; the next is {nxt}", attempt=attempt)
                else:
                    repeats = 0
                    what = f"{len(code.splitlines())} lines" if focus is None else \
                        f"`{focus[0]}` rewritten in the module"
                    self._event(t, EventKind.ATTEMPT, f"attempt {attempt}: {what}", attempt=attempt)
                    previous = code
                    problem = self._signature_problem(t, code, attempt)
                    if problem:
                        failure = problem
                        continue
                    cand, failure = await self._run_tests(t, code, tests, f"attempt {attempt}", attempt=attempt)
                    t.program(code, False, f"attempt {attempt}")
                    if cand.passed_all:
                        return cand
                    tried[key] = (cand, failure)
                run = cand
            # An assert that fails the same way for two different attempts may expect the wrong value: small
            # models miscompute expected values more often than they miswrite simple code.
            fails = self._failed_asserts(t, run)
            stable = [f for f in fails if last_fails.get(f.source) == f.message]
            last_fails = {f.source: f.message for f in fails}
            limit = max(1, checks // 3) - t.dropped  # never let reviews empty a test file
            if stable and limit > 0:
                amended, n = await self._dispute(t, tests, stable, limit)
                if n:
                    t.dropped += n
                    tests = t.tests = amended
                    tried.clear()  # runs against the old tests
                    cand, failure = await self._run_tests(t, code, tests, f"attempt {attempt} without the wrong "
                                                          "checks", attempt=attempt)
                    if cand.passed_all:
                        return cand
        for code, _ in ahead:  # written together with a new draft taken, then not needed: still a vote more each
            t.trace.attempts += 1
            run = await self._new_draft(t, t.trace.attempts, code, tests, tried)
            if run is not None and run.passed_all:
                return run
        t.last_failure = failure
        await self._vote(t)
        return t.best

    async def _redraft(self, t: _Task, attempt: int, tests: str, tried: dict[str, tuple[_Candidate, str]],
                       ahead: list[tuple[str | None, str]], last: int) -> _Candidate | None:
        """A new draft (the hot plain ask, a vote more) in place of a retry of a whole task's module: the model
        rarely acts on the failure it is shown (see _execute). Its run, or the earlier run of the same code; None
        when its reply is unusable or breaks what the task names.

        Measured on the 1.5B (bench at dac64d8): 4 of 5 retries of `intervals` and `romans` repeated earlier code,
        136 s of `romans`' 600 s, while a second round's drafts of `intervals` passed 7 and 8 of 9 hidden tests
        where its first round's and its retry passed 2 or 3.

        The new drafts of attempts ``attempt``..``last`` are written together when one is first needed, as the
        first drafts are (``_written_together``), and kept in ``ahead``: they are the same ask, so a later retry
        taking this path takes the next one written; _execute runs those no retry took after its last retry."""
        messages, temperature = self._draft_asks(t, tests)[-1]
        if not ahead:
            ahead.extend(await self._written_together(t, [(messages, temperature)] * (last - attempt + 1),
                                                      first=attempt))
        code, _ = ahead.pop(0) if ahead else await self._write(t, attempt, messages, temperature)
        return await self._new_draft(t, attempt, code, tests, tried)

    async def _new_draft(self, t: _Task, attempt: int, code: str | None, tests: str,
                         tried: dict[str, tuple[_Candidate, str]]) -> _Candidate | None:
        """``_redraft``'s run of a new draft's ``code`` (None: its reply was unusable)."""
        if code is None:
            return None
        key = code_key(code)
        if key in tried:
            self._event(t, EventKind.ATTEMPT, f"attempt {attempt}: a new draft, the same code as an earlier attempt",
                        attempt=attempt)
            return tried[key][0]
        self._event(t, EventKind.ATTEMPT, f"attempt {attempt}: a new draft, {len(code.splitlines())} lines",
                    attempt=attempt)
        return (await self._run_draft(t, code, attempt, tests, tried))[0]

    async def _run_draft(self, t: _Task, code: str, n: int, tests: str,
                         tried: dict[str, tuple[_Candidate, str]]) -> tuple[_Candidate | None, str]:
        """Draft ``n`` (new code) checked against what the task names, run against the tests, kept in ``tried`` and
        logged as a voter (label ``draft n``): it and its failure text, or None and what breaks the task's names."""
        if problem := self._signature_problem(t, code, n):
            return None, problem
        cand, text = await self._run_tests(t, code, tests, f"draft {n}", attempt=n)
        tried[code_key(code)] = (cand, text)
        t.program(code, True, f"draft {n}")
        return cand, text

    async def _vote(self, t: _Task) -> None:
        """When no program passed its tests, the one whose behaviour the drafts agree with most becomes the task's
        best (ties: the earliest, so the plain draft first). Every program runs the tests as probes (rcp.probe):
        each check records what the code gives instead of comparing it with the test's expected value, which the
        model often gets wrong. Drafts are independent samples and vote; retries, steered by the same failures,
        are scored without voting, an answer of their own counting once. A crash the task never states is no vote.
        A program that failed an example the task states ranks below every one that did not (``_ranked_last``);
        next, by its standing on the errors the task states (``stated_raises``).

        Measured offline on the 1.5B (8 drafts of each of 6 composite tasks, hidden tests): choosing by this vote
        kept a right plain draft (inventory.py, 9/9) that the draft passing the most generated tests would have
        lost (8/9: a wrong test expected ``remove(x, 0)`` not to raise), and passed 38 hidden tests against 32."""
        best = t.best
        if best is None or best.solved or t.tests is None:
            return
        order = sorted(t.programs.values(), key=lambda p: not p[1])  # drafts first, each group in order written
        drafts = sum(1 for _, is_draft, _ in order if is_draft)
        ballot = (t.tests, code_key(best.code), *t.programs)
        if drafts < 2 or len(order) < 2 or ballot == t.ballot:
            return  # nothing to vote on, or the same vote as last time
        agreed = await self._agreement(t, t.tests, [code for code, _, _ in order], drafts)
        if agreed is None:
            return
        ranks, observations = agreed
        win = max(range(len(order)), key=lambda i: (code_key(order[i][0]) not in t.missed, ranks[i], -i))
        code = order[win][0]
        kept = code_key(code) == code_key(best.code)
        was = next((ranks[i] for i, (c, _, _) in enumerate(order) if code_key(c) == code_key(best.code)), None)
        note = (f"vote of {drafts} drafts over {len(order)} programs on {observations} observations: "
                f"{'kept' if kept else 'chose'} {order[win][2]}, {_standing(ranks[win])}" +
                ("" if kept or was is None else f"; the best by tests, {_standing(was)}") +
                _ranked_last(t, [c for c, _, _ in order]))
        t.trace.notes.append(note)
        self._event(t, EventKind.TESTED, note)
        if not kept:
            cand, _ = await self._run_tests(t, code, t.tests, "the voted program", offer=False)
            cand.untested = tuple(unused_names(self._required(t), t.tests))
            t.best = cand
        await self._mosaic(t, order, drafts, win, ranks[win])
        t.ballot = (t.tests, code_key(t.best.code), *t.programs)

    async def _mosaic(self, t: _Task, order: list[tuple[str, bool, str]], voters: int, win: int,
                      rank: tuple[int, int]) -> None:
        """After a vote on a task of several module-level functions: each function taken from the program whose
        behaviour the drafts agree with most on the checks and calls of that function (rcp.probe.agreement with
        ``names``; a program failing the task's examples last, ties to the vote's winner), put together with
        ``assemble`` (the winner's other code first, a clashing helper renamed). It becomes the best only if it
        passes more of the tests than the winner and ranks, scored without voting, no lower in the vote.

        Measured offline on the 1.5B (bench.programs' traces, 30 runs of function tasks at 91d95f5..d18b7b1): one
        program per run with every function right was rare, right functions spread over drafts were not. calc.py:
        draft 5 kept the spaces in `tokenize` and the vote chose it (6/8 hidden tests); with `tokenize` from draft 1
        the mosaic passed 8/8; romans.py 4/8 to 5/8; no choice got worse. Without the test condition intervals.py
        lost 2 hidden tests: its winner alone had `gaps` right, the majority a shared misreading."""
        best = t.best
        if best is None or best.solved or t.tests is None:
            return
        codes = [code for code, _, _ in order]
        try:
            positions = vote_probes(t.spec, t.tests, self._fuzz(t)).positions
        except AssemblyError:
            return
        made = mosaic(t.spec, codes, [t.observed[(t.tests, code_key(code))] for code in codes], positions, voters,
                      [code_key(code) in t.missed for code in codes], win)
        if made is None:
            return
        code, pick = made
        if code_key(code) in t.programs or code_key(code) in t.mosaics:
            return
        t.mosaics.add(code_key(code))
        label = "the mosaic (" + ", ".join(f"{name} of {order[i][2]}" for name, i in pick.items()) + ")"
        cand, _ = await self._run_tests(t, code, t.tests, label, offer=False)
        agreed = await self._agreement(t, t.tests, [*codes, code], voters)
        if agreed is None:
            return
        ranked = code_key(code) not in t.missed and agreed[0][-1] >= rank
        more = cand.run.passed > best.run.passed
        note = (f"{label}: {'chosen' if ranked and more else 'not chosen'}, {_standing(agreed[0][-1])}, "
                f"passed {cand.run.passed} tests against {best.run.passed}")
        t.trace.notes.append(note)
        self._event(t, EventKind.TESTED, note)
        if ranked and more:
            cand.untested = tuple(unused_names(self._required(t), t.tests))
            t.best = cand
            # Only a chosen mosaic joins later votes: one not chosen would win them on agreement alone, which is what
            # it is made to maximise (bench at 494e149, intervals.py: a mosaic passing no more tests than the voted
            # draft was voted the best in the next round).
            t.program(code, False, "the mosaic")

    async def _agreement(self, t: _Task, tests: str, codes: list[str],
                         voters: int) -> tuple[list[tuple[int, int]], int] | None:
        """Each program's rank in a vote, (its standing on the stated errors (``stated_raises``), its agreement with
        the first ``voters`` (rcp.probe.agreement)), on ``tests`` run as probes with the task's fuzz calls
        (``_fuzz``), and how many observations there were; None when the tests cannot be probed."""
        try:
            probes = vote_probes(t.spec, tests, self._fuzz(t))
        except AssemblyError as e:
            t.trace.notes.append(f"vote: {e}")
            return None
        keys = [(tests, code_key(code)) for code in codes]
        new = {k: code for k, code in zip(keys, codes, strict=True) if k not in t.observed}
        if new:
            timeout = max(1.0, min(self.settings.sandbox_timeout * 2, t.remaining()))
            seen = await probe.observe(self.sandbox, t.spec.module, list(new.values()), probes, timeout=timeout)
            t.observed.update(zip(new, seen, strict=True))
        observed = [t.observed[k] for k in keys]
        errors = [o.error for o in observed if o.error]
        if len(errors) == len(observed):
            t.trace.notes.append(f"vote: no program could be observed ({errors[0]})")
            return None
        scores = probe.agreement(observed, probes.positions, voters=voters, errors=stated_exceptions(t.spec.root_task))
        raised = stated_raises(t.spec.root_task, observed, probes.positions, voters)
        return list(zip(raised, scores, strict=True)), len(probes.positions)

    @staticmethod
    def _fuzz(t: _Task) -> str:
        """The task's fuzz calls (``fuzz_calls``), made once."""
        if t.fuzz is None:
            t.fuzz = fuzz_calls(t.spec)
        return t.fuzz

    def _more_drafts(self, t: _Task) -> bool:
        """Whether drafts are still written after one passed the tests: a whole task, which has fuzz calls that can
        tell passing drafts apart, with the time for another draft."""
        return t.spec.contract is None and bool(self._fuzz(t)) and t.remaining() > MORE_DRAFTS_MIN_S

    async def _drafts(self, t: _Task, tests: str,
                      tried: dict[str, tuple[_Candidate, str]]) -> tuple[_Candidate | None, str, str]:
        """The first attempt: ``DRAFTS`` programs, each run against the tests (asked as ``_draft_asks`` says: the
        ones that do not see the tests are not steered by a wrong expected value). Checks that every distinct
        working draft fails the same way (they agree on a value the test does not expect) are dropped as wrong
        tests; then the draft whose behaviour the drafts agree with most wins (``_agreement``, as in ``_vote``).
        Returns it, its failure text and the tests."""
        results: list[_Candidate] = []
        passing: list[_Candidate] = []
        failure = ""
        asks = self._draft_asks(t, tests)
        written = await self._written_together(t, asks)
        for n, (messages, temperature) in enumerate(asks, 1):
            if passing and not self._more_drafts(t) and n > len(written):  # the written ones cost only a test run
                break
            t.trace.attempts += 1
            code, unusable = written[n - 1] if n <= len(written) else \
                await self._write(t, n, messages, temperature)
            if code is None:
                failure = failure or unusable
                continue
            key = code_key(code)
            if key in tried:
                self._event(t, EventKind.ATTEMPT, f"draft {n}: the same code as an earlier draft", attempt=n)
                continue
            self._event(t, EventKind.ATTEMPT, f"draft {n}: {len(code.splitlines())} lines", attempt=n)
            cand, text = await self._run_draft(t, code, n, tests, tried)
            if cand is None:
                failure = failure or text
                continue
            results.append(cand)
            if cand.passed_all:
                if not self._more_drafts(t):
                    return cand, "", tests
                passing.append(cand)
        if passing:
            return await self._among_passing(t, tests, results, passing), "", tests
        if not results:
            return None, failure or "no draft could be run", tests
        # Again after each drop: pytest stops a test function at its first failing check, so a wrong check behind a
        # dropped one shows only in the rerun. Seen on the 1.5B (textstats.py): all 3 drafts failed
        # `average_word_length(...) == 4.0` alike once the wrong check before it was voted out. Each round drops a
        # check, within _voted_out's limit.
        while (amended := self._voted_out(t, tests, results)) is not None:
            tests = t.tests = amended
            tried.clear()
            rerun = []
            for i, cand in enumerate(results, 1):
                again, text = await self._run_tests(t, cand.code, tests, f"draft {i} without the checks the drafts "
                                                    "agree against")
                tried[code_key(cand.code)] = (again, text)
                rerun.append(again)
            results = rerun
            # All are run again and those passing voted on, as drafts passing at once are. Measured on the 1.5B
            # (lrucache.py, bench at 8d2bdbc): once a wrong check of `keys` all 3 drafts failed alike was dropped,
            # the first draft passed and was returned at once (6/9 hidden tests); the vote chose draft 2 (9/9).
            if passing := [c for c in results if c.passed_all]:
                return await self._among_passing(t, tests, results, passing), "", tests
        best = results[0]
        if len(results) > 1:
            # The best draft is the one whose behaviour the drafts agree with most (see _vote), not the one passing
            # the most tests: a one-function fix then mends the majority's program against its failures.
            agreed = await self._agreement(t, tests, [c.code for c in results], len(results))
            if agreed is not None:
                ranks, observations = agreed
                win = max(range(len(results)), key=lambda i: (code_key(results[i].code) not in t.missed, ranks[i],
                                                              -i))
                best = results[win]
                label = t.programs[code_key(best.code)][2]
                self._event(t, EventKind.ATTEMPT, f"{len(results)} drafts: {label} is the best, "
                            f"{_standing(ranks[win])} on {observations} observations; it passed {best.run.passed} "
                            "tests" + _ranked_last(t, [c.code for c in results]))
        return best, tried[code_key(best.code)][1], tests

    async def _among_passing(self, t: _Task, tests: str, drafts: list[_Candidate],
                             passing: list[_Candidate]) -> _Candidate:
        """The passing draft whose behaviour on the tests and the fuzz calls every draft agrees with most (the
        earliest on a tie). Measured offline on the 1.5B (lrucache.py, the solver's three plain drafts, all
        passing tests that never filled the cache): the plain draft, returned at once before, passed 8/9 hidden
        tests; the fuzz calls' vote chose a draft passing 9/9, with each of three seeds. On 6 other composite tasks
        adding the fuzz calls to the vote changed no choice."""
        if len(drafts) < 2:
            return passing[0]
        agreed = await self._agreement(t, tests, [c.code for c in drafts], len(drafts))
        if agreed is None:
            return passing[0]
        ranks, observations = agreed
        win = max((i for i, c in enumerate(drafts) if c.passed_all), key=lambda i: (ranks[i], -i))
        labels = [t.programs[code_key(c.code)][2] for c in passing]
        chosen = t.programs[code_key(drafts[win].code)][2]
        note = (f"{len(passing)} of {len(drafts)} drafts passed the tests ({', '.join(labels)}); vote on the tests "
                f"and fuzz calls, {observations} observations: chose {chosen}, {_standing(ranks[win])}")
        t.trace.notes.append(note)
        self._event(t, EventKind.TESTED, note)
        t.best = drafts[win]
        return drafts[win]

    def _plain_drafts(self, t: _Task) -> bool:
        """Whether the task's drafts are plain asks (a whole task, several drafts): see _draft_asks."""
        return t.spec.contract is None and self.settings.drafts > 1

    def _draft_asks(self, t: _Task, tests: str) -> list[tuple[list[ChatMessage], float | None]]:
        """The prompts and temperatures of the ``DRAFTS`` drafts. A task without contract: the plain ask at the base
        temperature, then the plain ask sampled hotter. A part: one with the tests in view, the rest from the
        contract alone, sampled hotter."""
        if self._plain_drafts(t):
            # Measured on the 1.5B: asked plainly, the model wrote a right matrix.py (10/10 hidden tests) while the
            # draft that saw the generated tests, all of square matrices, did not (9/10). The plain ask is what
            # one call to the model gives; as a draft, it is tested and voted on like the others. The other drafts
            # are plain asks too: offline, 8 drafts each of 6 composite tasks graded by hidden tests, the vote of
            # the plain draft and two hot plain ones chose programs passing 39 hidden tests; with a draft seeing
            # the tests and a hot one of the [rcp:code] prompt instead (the earlier drafts), 36; the plain draft
            # alone, 33. A draft seeing wrong tests follows them (inventory.py: remove(x, 0) not raising).
            hot = max(self.llm.temperature, PLAIN_DRAFT_TEMPERATURE)
            plain = prompts.plain(t.spec)
            return [(plain, None)] + [(plain, hot)] * (self.settings.drafts - 1)
        hot = max(self.llm.temperature, DRAFT_TEMPERATURE)
        return [(prompts.code(t.spec, tests), None)] + [(prompts.code(t.spec, ""), hot)] * (self.settings.drafts - 1)

    def _voted_out(self, t: _Task, tests: str, drafts: list[_Candidate]) -> str | None:
        """``tests`` without the asserts every draft fails with the same message, when at least two distinct
        drafts that pass some check agree so (at most half of the checks, never the task's own examples, never a
        check of an error the task states: the task's sentence outranks the drafts, as in a review).

        Measured on the 1.5B (bank.py, bench at 04a0d44): all 3 drafts' ``transfer`` let -10 through, the check
        of it raising ValueError was dropped, and the module returned as solved failed that hidden test (9/10).

        A draft passing no whole test function still votes when it passed a check before its failing one: measured
        on the 1.5B (intervals.py, this solver's tests, graded by the reference), all 3 drafts failed the wrong
        `overlaps((1, 3), (5, 7)) == True` and `gaps([(1, 3)], 1, 4) == [(1, 3)]` alike, but each also failed
        another function's check, so no draft passed a whole test function and the wrong checks stayed."""
        runs = [(c, self._failed_asserts(t, c)) for c in drafts]
        working = [(c, fails) for c, fails in runs
                   if c.run.passed > 0 or passed_a_check(tests, {f.line for f in fails})]
        if len(working) < 2:
            return None
        # A crash is no vote: drafts that raise alike agree on no value, and may share a bug (a review may judge it).
        failed = [{(f.line, f.source, f.message) for f in fails if not f.crashed} for _, fails in working]
        trusted = self._trusted(t)
        agreed = self._droppable(t, tests, [FailedAssert(*f) for f in sorted(set.intersection(*failed))
                                            if f[1] not in trusted and not states_error(t.spec.root_task, f[1])])
        limit = max(1, count_checks(tests) // 2) - t.dropped
        agreed = agreed[:max(0, limit)]
        if not agreed:
            return None
        amended = drop_asserts(tests, {f.line for f in agreed})
        if count_checks(amended) == 0:
            return None
        t.dropped += len(agreed)
        note = f"{len(working)} drafts agree against {len(agreed)} check(s), dropped: " + "; ".join(
            f"{f.source} ({f.message})" for f in agreed)
        t.trace.notes.append(note[:600])
        logger.info("task %s: %s", t.spec.task_id, note[:300])
        return amended

    async def _write(self, t: _Task, attempt: int, messages: list[ChatMessage], temperature: float | None, *,
                     onto: str = "") -> tuple[str | None, str]:
        """One code reply made into a module (merged ``onto`` a module, replacing what it redefines, when given),
        or None and what to tell the model about its unusable reply."""
        try:
            reply = await self._chat(t, messages, temperature=temperature, enough=code_written)
        except ModelOutputError as e:
            return None, self._unusable(t, attempt, e)
        return self._code_of(t, attempt, reply, onto)

    def _code_of(self, t: _Task, attempt: int, reply: str, onto: str = "") -> tuple[str | None, str]:
        """``_write``'s module of a reply, or None and what to tell the model about the reply."""
        try:
            code = self._module_of(t, reply)
            if onto:
                code = self._merge_fix(t.spec, onto, code, prefer_fix=True, contracts=())
            return code, ""
        except (ModelOutputError, AssemblyError) as e:
            return None, self._unusable(t, attempt, e)

    def _unusable(self, t: _Task, attempt: int, e: Exception) -> str:
        self._event(t, EventKind.ATTEMPT, f"attempt {attempt}: unusable reply: {e}", attempt=attempt)
        return f"Your reply could not be used: {e}. Reply with one ```python block."

    async def _written_together(self, t: _Task, asks: list[tuple[list[ChatMessage], float | None]], *,
                                first: int = 1) -> list[tuple[str | None, str]]:
        """A whole task's plain drafts written in one go (``LLM.chat_many``: on llama.cpp, one decode step feeds
        every draft; see ``rcp.batched`` for the measured speed), as ``_write`` makes each; [] when they are
        written one at a time instead: when a first draft passing its tests would end the drafts (a part's drafts,
        a task without fuzz calls: see _more_drafts), or with too little time left for all of them, which end
        together. ``first``: the attempt number of the first ask (the first drafts', or a retry's new drafts).

        Measured on the 1.5B, 2 cores, the dateutils task asked plainly: three replies (425, 938 and 833 tokens)
        in 145.7 s together against ~205 s one after another."""
        if not (self._plain_drafts(t) and self._more_drafts(t)) or len(asks) < 2 or t.remaining() < TOGETHER_MIN_S:
            return []
        asks = asks[:max(1, t.calls_left)]
        numbers = range(first, first + len(asks))
        span = f"{numbers[0]}-{numbers[-1]}"
        self._event(t, EventKind.ATTEMPT, f"drafts {span}: written together" if first == 1 else
                    f"attempts {span}: new drafts written together")
        try:
            replies = await self._chat_many(t, asks, enough=code_written)
        except ModelOutputError as e:
            return [(None, self._unusable(t, n, e)) for n in numbers]
        return [self._code_of(t, n, reply) for n, reply in zip(numbers, replies, strict=True)]

    def _module_of(self, t: _Task, reply: str, contracts: Sequence[Contract] = ()) -> str:
        """The module in a code reply, cleaned; a built-in exception's name is kept if the task or a part has it."""
        return hoist_methods(clean_module(prompts.parse_code_reply(reply), t.spec.module,
                                          [*self._names(t), *(c.name for c in contracts)]), module_functions(t.spec))

    def _signature_problem(self, t: _Task, code: str, attempt: int) -> str:
        """Why ``code`` breaks the contract's signature or lacks what the task names (the failure to show the
        model), or ''."""
        contract = t.spec.contract
        if contract is not None:
            problem = check_signature(code, contract.signature)
            failure = f"Wrong signature: {problem}. It must be exactly: {contract.signature.strip()}"
        else:
            missing = [n for n in self._required(t) if n not in all_definitions(code)]
            problem = f"{', '.join(missing)} not defined" if missing else None
            failure = f"The module does not define {', '.join(missing)}, which the task names. Write all of them."
        if not problem:
            return ""
        self._event(t, EventKind.TESTED, f"attempt {attempt}: not run, {problem}", attempt=attempt)
        return failure

    def _failed_asserts(self, t: _Task, cand: _Candidate | None) -> list[FailedAssert]:
        return failed_asserts(cand.run.output_tail, f"test_{t.spec.module}.py", cand.tests) if cand is not None else []

    def _retry_temperature(self, repeats: int) -> float | None:
        """Sampling temperature of a code attempt: the setting's, raised after the model repeated itself."""
        if repeats == 0:
            return None
        return min(MAX_RETRY_TEMPERATURE, max(self.llm.temperature, 0.0) + REPEAT_TEMPERATURE_STEP * repeats)

    def _reviewable(self, t: _Task, tests: str, fails: list[FailedAssert]) -> list[FailedAssert]:
        """``fails`` less the checks no review may drop: the task's own examples, the checks that a function raises
        an error the task states for it, and the last checks of a name (``_droppable``). Measured on the 1.5B
        (inventory.py): reviews judged `remove("item", 0)` and `remove("item", -1)` raising ValueError wrong, though
        the task says a `qty` that is not positive raises it; the module then passed as solved without them. Votes
        may still drop such a check: in calc.py three drafts rightly agreed that `to_rpn` need not raise on
        `['1', '+', '2', '*', '3', '+']` (the task states ValueError for mismatched parentheses only)."""
        trusted = self._trusted(t)
        doubted = [f for f in fails if f.source not in trusted]
        stated = [f for f in doubted if states_error(t.spec.root_task, f.source)]
        note = f"kept {len(stated)} doubted check(s) of errors the task states: " + "; ".join(
            f.source for f in stated)[:300]
        if stated and note not in t.trace.notes:  # once, though each review round asks again
            t.trace.notes.append(note)
        return self._droppable(t, tests, [f for f in doubted if f not in stated])

    def _droppable(self, t: _Task, tests: str, fails: list[FailedAssert]) -> list[FailedAssert]:
        """``fails`` less the checks of a function or method the task names that dropping them all would leave
        untested: a module must not pass as solved on tests that no longer use all it names (see _run_tests)."""
        names = self._names(t)
        amended = drop_asserts(tests, {f.line for f in fails}) if fails else tests
        used = set(names) - set(unused_names(names, tests))
        lost = [n for n in unused_names(names, amended) if n in used]
        kept = [f for f in fails if not any(re.search(rf"\b{re.escape(n)}\b", f.source) for n in lost)]
        if len(kept) < len(fails):
            t.trace.notes.append(f"kept {len(fails) - len(kept)} doubted check(s): the only ones of "
                                 f"{', '.join(lost)}")
        return kept

    async def _reviewed(self, t: _Task, tests: str, fails: list[FailedAssert]) -> list[FailedAssert]:
        """The checks of ``fails`` a review may judge, by what the task's drafts do on each (probed alone, all drafts
        in one sandbox run; rcp.probe.check_probes): none passes it, and at least two fail it with one same value
        (a value, or an error the task states; a crash is no vote). With fewer than two drafts there is no such
        evidence, and the review judges them all.

        Measured on the 1.5B, graded against the tasks' references. Before any of this, in two bench runs the 7
        wrong checks reviews dropped were passed by none of the task's 3 drafts, the 3 right ones by 2; offline,
        the review said "test" for 4 right checks, each passed by 1 draft (`is_roman('IIII') == False`,
        `merge([(1, 3), (2, 4)]) == [(1, 4)]`, calc's `tokenize('12 + (3 * 4)')`, dateutils'
        `parse_date('2023-01-01')`), and for 7 wrong ones, each passed by none. With a passing draft required, the
        next three bench runs (tasks' traces) still dropped 3 right checks of 12: calc's `tokenize("12 + 3 * 4") ==
        ["12", "+", "3", "*", "4"]` and one like it, and intervals' `merge([(1, 2), (2, 4)]) == [(1, 4)]` on which the
        kept draft raised TypeError. Of the 8 wrong ones dropped, `total_length([(1, 3), (3, 5)]) == 2` is one two
        drafts failed alike (both gave 4)."""
        found = await self._drafts_on(t, tests, {f.line for f in fails}) if fails else None
        if found is None:
            return fails
        checks, seen = found
        backed = {line for line, c in checks.items() if any(o.at(c.pos) in c.holds for o in seen)}
        errors = stated_exceptions(t.spec.root_task)
        alike = {line for line, c in checks.items() if probe.agreed_against(seen, c, errors) >= 2}
        if backed:
            t.trace.notes.append(f"kept {len(backed)} doubted check(s) a draft of {len(seen)} passes: " +
                                 "; ".join(f.source for f in fails if f.line in backed)[:300])
        apart = [f for f in fails if f.line not in backed and f.line not in alike]
        if apart:
            t.trace.notes.append(f"kept {len(apart)} doubted check(s) no two of {len(seen)} drafts fail alike: " +
                                 "; ".join(f.source for f in apart)[:300])
        return [f for f in fails if f.line not in backed and f.line in alike]

    async def _drafts_on(self, t: _Task, tests: str,
                         lines: Collection[int]) -> tuple[dict[int, probe.Check], list[probe.Observed]] | None:
        """Each check of ``tests`` at ``lines`` probed alone on every draft of the task (one sandbox run): the checks
        by line, and what each draft gave there. None when there is no such evidence: fewer than two
        drafts, no check to probe, or a probe run that failed."""
        drafts = [code for code, is_draft, _ in t.programs.values() if is_draft]
        if len(drafts) < 2:
            return None
        try:
            probes, checks = probe.check_probes(tests, lines, self._names(t))
        except AssemblyError:
            return None
        if not checks:
            return None
        timeout = max(1.0, min(self.settings.sandbox_timeout * 2, t.remaining()))
        seen = await probe.observe(self.sandbox, t.spec.module, drafts, probes, timeout=timeout)
        if all(o.error for o in seen):
            return None  # no evidence either way (the probe run failed)
        return checks, seen

    async def _without_refuted(self, t: _Task, contracts: list[Contract]) -> list[Contract]:
        """The plan's contracts less the checks this task's own drafts refute: no draft passes it, and at least two
        drafts, and half of those that ran, fail it with one same value (a value, or an error the task states). A
        part left with no check writes its own tests, and the parent holds it to those (``_enforce``). The task's
        own examples and checks of an error it states are kept.

        Measured on the 1.5B (bench runs at 2bea722 to dc19a04, 600 s): of the 30 rejections of parts of whole
        tasks split after failed direct rounds, about 20 were on a check the plan got wrong, most where the parts
        gave the right value: `average_word_length('Hello world!') == 2.0` (5.0), `sentence_count('Hello world!
        This is a test.') == 4` (2), `eval_rpn(['1', '2', '3', '*', '+']) == 1.0` (7.0), `add_roman('X', 'X') ==
        'L'`. A child cannot drop such a check when it is its name's only one, and no split of a whole task was
        integrated from accepted parts. The rest were right checks the parts failed (`is_roman('IV') == True`),
        which the drafts, passing them, keep."""
        trusted = self._trusted(t)
        errors = stated_exceptions(t.spec.root_task)
        checked = []
        for c in contracts:
            source = check_sources(c.tests)
            found = await self._drafts_on(t, c.tests, source.keys())
            if found is not None:
                checks, seen = found
                ran = sum(1 for o in seen if not o.error)
                refuted = {line for line, k in checks.items()
                           if not any(o.at(k.pos) in k.holds for o in seen)
                           and probe.agreed_against(seen, k, errors) >= max(2, ran / 2)
                           and source.get(line, "") not in trusted
                           and not states_error(t.spec.root_task, source.get(line, ""))}
                if refuted:
                    tests = drop_asserts(c.tests, refuted)
                    tests = tests if count_checks(tests) else ""
                    t.trace.notes.append(f"part {c.name}: dropped {len(refuted)} check(s) of the plan that the "
                                         f"task's {len(seen)} drafts refute: " +
                                         "; ".join(source.get(line, "") for line in sorted(refuted))[:300])
                    c = c.model_copy(update={"tests": tests})
            checked.append(c)
        return checked

    async def _dispute(self, t: _Task, tests: str, fails: list[FailedAssert], limit: int) -> tuple[str, int]:
        """``tests`` without the failing asserts a review judges wrong (at most ``limit``), and how many went. Only a
        check the drafts dispute is reviewed (``_reviewed``)."""
        lines: set[int] = set()
        reviewable = await self._reviewed(t, tests, self._reviewable(t, tests, fails))
        for f in reviewable[:limit]:
            key = (t.spec.root_task, f.source)
            if key not in self._reviews:
                try:
                    review = await self._structured(t, prompts.review(t.spec, f.source, f.message), Review)
                    self._reviews[key] = review.wrong == "test"
                    logger.info("task %s: review of `%s`: the %s is wrong (%s)", t.spec.task_id, f.source,
                                review.wrong, review.reason)
                except ModelOutputError as e:
                    t.trace.notes.append(f"review: {e}")
                    continue
            if self._reviews[key]:
                lines.add(f.line)
        if not lines:
            return tests, 0
        amended = drop_asserts(tests, lines)
        if count_checks(amended) == 0:
            return tests, 0
        t.trace.notes.append(f"dropped {len(lines)} check(s) judged wrong: " +
                             "; ".join(f.source for f in fails if f.line in lines)[:400])
        return amended, len(lines)

    async def _run_tests(self, t: _Task, code: str, tests: str, label: str, *, attempt: int | None = None,
                         offer: bool = True) -> tuple[_Candidate, str]:
        """One pytest run of ``code`` against ``tests``; records it in the trace and reports it."""
        module = t.spec.module
        timeout = max(1.0, min(self.settings.sandbox_timeout, t.remaining()))
        report = await self.sandbox.run({f"{module}.py": code, f"test_{module}.py": tests},
                                        [*PYTEST, f"test_{module}.py"], timeout=timeout)
        passed, failed = test_counts(report)
        if report.exit_code not in (0, None) and failed == 0:
            failed = 1  # a collection error or crash: no test counted, but it certainly did not pass
        run = TestRun(passed=passed, failed=failed, exit_code=report.exit_code, timed_out=report.timed_out,
                      seconds=round(report.duration_s, 3), output_tail=prompts.clip(report.stdout + report.stderr,
                                                                                    8000))
        t.trace.tests.append(run)
        cand = _Candidate(code=code, tests=tests, run=run, failing=frozenset(failing_tests(report)))
        trusted = self._trusted(t)
        if any(f.source in trusted for f in self._failed_asserts(t, cand)):
            t.missed.add(code_key(code))
        if offer:  # a result of this task: the tests must use everything it names (not so a part's contract tests)
            cand.untested = tuple(unused_names(self._required(t), tests))
            t.offer(cand)
        failure = "" if cand.passed_all else failure_text(report)
        verdict = "passed" if cand.passed_all else "failed"
        self._event(t, EventKind.TESTED, f"{label}: {verdict}, {passed} passed, {failed} failed",
                    attempt=attempt, tests_passed=passed, tests_failed=failed)
        return cand, failure

    # --- decompose ---------------------------------------------------------------------------------------------

    async def _decompose(self, t: _Task) -> _Candidate | None:
        contracts = await self._plan(t)
        if not contracts:
            return None
        if short := self._parts_short(t, len(contracts)):
            t.trace.notes.append(f"plan not run: {short}")
            return None
        contracts = await self._without_refuted(t, contracts)
        self._event(t, EventKind.PLANNED, f"{len(contracts)} parts: " +
                    "; ".join(signature_line(c.signature) for c in contracts))
        outcomes = await self._delegate_all(t, contracts)
        return await self._integrate(t, outcomes)

    async def _plan(self, t: _Task) -> list[Contract] | None:
        rejected = ""
        for _ in range(PLAN_ASKS):
            try:
                plan = await self._structured(t, prompts.plan(t.spec, self.settings.max_subtasks,
                                                              failure=t.last_failure, rejected=rejected),
                                              prompts.plan_schema(self.settings.max_subtasks),
                                              max_tokens=max(PLAN_TOKENS, self.llm.max_tokens))
                contracts, t.plan_tests = validate_plan(plan, module=t.spec.module,
                                                        max_parts=self.settings.max_subtasks, parent=t.spec.contract)
                if t.plan_tests:
                    t.trace.notes.append("part tests that use other parts run at integration: "
                                         + ", ".join(test_names(t.plan_tests)))
                return contracts
            except (ModelOutputError, PlanError) as e:
                rejected = str(e)
                t.trace.notes.append(f"plan rejected: {e}")
                logger.info("task %s: plan rejected: %s", t.spec.task_id, e)
        return None

    def _child_spec(self, t: _Task, contract: Contract, contracts: Sequence[Contract], share: int) -> TaskSpec:
        spec = t.spec
        goal = prompts.clip(spec.goal, MAX_ANCESTOR_CHARS).replace("\n", " ")
        timeout = min(self.settings.task_timeout, t.remaining() * CHILD_TIME_SHARE)
        if timeout < MIN_CHILD_SECONDS:
            raise BudgetExhausted(f"wall-clock budget of {spec.timeout_s:.0f} s used up before the parts could start")
        tests = _with_examples(contract.tests, spec.root_task, spec.module, contract.name)
        contract = contract.model_copy(update={"tests": tests[:MAX_TEXT]})
        return TaskSpec(parent_id=spec.task_id, root_task=spec.root_task, contract=contract, module=spec.module,
                        goal=f"Write {contract.kind} {contract.name}: {contract.behaviour}"[:MAX_TEXT],
                        ancestors=[*spec.ancestors, goal][-MAX_ANCESTORS:],
                        siblings=[signature_line(c.signature)[:MAX_SIBLING_CHARS] for c in contracts
                                  if c.name != contract.name],
                        depth=spec.depth + 1, timeout_s=timeout, llm_calls=share)

    async def _delegate_all(self, t: _Task, contracts: list[Contract]) -> list[_Outcome]:
        k = len(contracts)
        # Keep enough calls back to glue and fix the integration; the parts share the rest.
        reserve = min(self.settings.max_retries + 2, t.calls_left // 4)
        share = (t.calls_left - reserve) // k
        if share < 1:
            raise BudgetExhausted(f"LLM-call budget of {t.calls_budget} calls used up: {t.calls_left} left for "
                                  f"{k} parts")
        specs = [self._child_spec(t, c, contracts, share) for c in contracts]
        t.calls_left -= share * k
        limit = asyncio.Semaphore(self.settings.max_subtasks)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._child(t, s, limit)) for s in specs]
        except BaseExceptionGroup as eg:
            # Infrastructure trouble or a bug in one part: surface the error itself, not a group of one.
            raise _first(eg) from None
        return [task.result() for task in tasks]

    async def _child(self, t: _Task, spec: TaskSpec, limit: asyncio.Semaphore) -> _Outcome:
        c = spec.contract
        assert c is not None
        async with limit:
            result: TaskResult | None = None
            if self.delegate is not None:
                self._event(t, EventKind.DELEGATED, f"{c.name} sent to a peer")
                try:
                    result = await self.delegate(spec, t.emit)
                except Exception as e:  # the swarm has tried its peers already; CancelledError is not caught
                    self._event(t, EventKind.FALLBACK, f"{c.name}: the peer failed ({type(e).__name__}: "
                                                       f"{str(e)[:200]}); solving it here")
                    logger.info("task %s: delegating %s failed (%r); solving it here", t.spec.task_id, c.name, e)
                    again = self._refresh(t, spec, spec.llm_calls)
                    if again is None:
                        t.calls_left += spec.llm_calls
                        return _Outcome(spec=spec, result=None, accepted=False)
                    spec = again
            if result is None:
                result = await self._solve(spec, t.emit)
            t.calls_left += max(0, spec.llm_calls - subtree_calls(result.trace))
            t.trace.children.append(result.trace)
            problem, spec = await self._enforce(t, spec, result)
            outcome = _Outcome(spec=spec, result=result, accepted=False)
            if problem is None:
                outcome.accepted = True
                return outcome
            self._event(t, EventKind.REJECTED, f"{c.name}: {problem}")
            if _spent_on_these_tests(result, c):
                # The child reported honestly that it could not pass these very tests after all its attempts:
                # solving it again here with the same tests repeats that work (measured on the 1.5B: a wrong
                # expected value in a contract test cost 4 more attempts per re-solve, and nothing changed).
                t.trace.notes.append(f"{c.name}: not solved again here; its own attempts failed the same tests")
                return outcome
            return await self._resolve(t, outcome, f"The returned code was rejected: {problem}")

    def _refresh(self, t: _Task, spec: TaskSpec, calls: int, evidence: str = "") -> TaskSpec | None:
        """The same part for another try here: a new id, the time left, the parent's evidence in the goal.

        None when too little time is left to start it.
        """
        timeout = min(self.settings.task_timeout, t.remaining() * CHILD_TIME_SHARE)
        if timeout < MIN_CHILD_SECONDS:
            t.trace.notes.append(f"no time left to solve {spec.contract.name if spec.contract else 'a part'} here")
            return None
        update: dict = {"task_id": new_task_id(), "timeout_s": timeout, "llm_calls": max(1, calls)}
        if evidence:
            # The evidence travels in the goal so that a part solved on a peer would see it too.
            base = spec.goal.split("\n\nEvidence:")[0]
            update["goal"] = f"{base}\n\nEvidence: {prompts.clip(evidence, prompts.MAX_FAILURE)}"[:MAX_TEXT]
        return spec.model_copy(update=update)

    async def _resolve(self, t: _Task, outcome: _Outcome, evidence: str) -> _Outcome:
        """Solve a part again here with what went wrong; the new code replaces the old only if it is accepted."""
        name = outcome.contract.name
        calls = min(outcome.spec.llm_calls, t.calls_left)
        spec = self._refresh(t, outcome.spec, calls, evidence) if calls >= 1 else None
        if spec is None:
            t.trace.notes.append(f"no budget left to solve {name} again")
            return outcome
        t.calls_left -= calls
        result = await self._solve(spec, t.emit)
        t.calls_left += max(0, calls - subtree_calls(result.trace))
        t.trace.children.append(result.trace)
        problem, spec = await self._enforce(t, spec, result)
        if problem is not None:
            self._event(t, EventKind.REJECTED, f"{name} (solved again here): {problem}")
            t.trace.notes.append(f"{name} still rejected after solving it again")
            if outcome.result is None or not outcome.result.code.strip():
                outcome.result = result
            return outcome
        return _Outcome(spec=spec, result=result, accepted=True)

    async def _enforce(self, t: _Task, spec: TaskSpec, result: TaskResult) -> tuple[str | None, TaskSpec]:
        """(None, spec) if the child's code keeps its contract: the agreed signature and passing contract tests.

        Otherwise (the problem, spec). A check the child dropped as wrong is judged again here, and when this
        node agrees the contract is amended: the returned spec then carries the amended tests.
        """
        c = spec.contract
        assert c is not None
        if not result.code.strip():
            return "no code came back", spec
        problem = check_signature(result.code, c.signature)
        if problem:
            return f"signature changed: {problem}", spec
        if not count_checks(c.tests):
            # Its plan's checks were all refuted by this task's drafts (_without_refuted): the tests it wrote and
            # claims to pass are run here instead.
            if not count_checks(result.tests):
                return "its contract has no checks and it brought no tests of its own", spec
            cand, failure = await self._run_tests(t, result.code, result.tests, f"{c.name}'s own tests", offer=False)
            if cand.solved:
                return None, spec
            return f"its own tests fail ({cand.run.passed} passed, {cand.run.failed} failed):\n{failure}", spec
        label = f"contract tests of {c.name}"
        cand, failure = await self._run_tests(t, result.code, c.tests, label, offer=False)
        if cand.solved:
            return None, spec
        disputed = [f for f in self._failed_asserts(t, cand) if f.source not in result.tests]
        if disputed:
            amended, n = await self._dispute(t, c.tests, disputed, max(1, count_checks(c.tests) // 3))
            if n:
                cand, failure = await self._run_tests(t, result.code, amended, f"{label} without {n} wrong checks",
                                                      offer=False)
                if cand.solved:
                    return None, spec.model_copy(update={"contract": c.model_copy(update={"tests": amended})})
        return f"its contract tests fail ({cand.run.passed} passed, {cand.run.failed} failed):\n{failure}", spec

    # --- integrate ---------------------------------------------------------------------------------------------

    async def _integrate(self, t: _Task, outcomes: list[_Outcome]) -> _Candidate | None:
        spec = t.spec
        unaccepted = [o.contract.name for o in outcomes if not o.accepted]
        if unaccepted:
            # Integrated anyway: the fix step below may repair them, and the verdict stays honest either way.
            t.trace.notes.append(f"parts that failed their contract: {', '.join(unaccepted)}")
        self._event(t, EventKind.INTEGRATING, f"assembling {len(outcomes)} parts" +
                    (f" ({len(unaccepted)} failed their contract)" if unaccepted else ""))
        contracts = [o.contract for o in outcomes]
        signatures = [c.signature for c in contracts] + ([spec.contract.signature] if spec.contract else [])
        test_pieces = [Piece(c.name, c.tests) for c in contracts]
        # A part that solved and kept its contract brings the tests it passed alone (its generated ones too): the
        # module is delivered with them, and they must hold once the parts are assembled.
        test_pieces += [Piece(o.contract.name, o.result.tests) for o in outcomes
                        if o.accepted and o.result is not None and o.result.solved and o.result.tests.strip()]
        if t.plan_tests:
            test_pieces.append(Piece("plan", t.plan_tests))
        if spec.contract is not None and spec.contract.tests.strip():
            test_pieces.append(Piece("parent", spec.contract.tests))
        try:
            merged = merge_tests(test_pieces, spec.module)
            code = self._assemble(spec, outcomes)
        except AssemblyError as e:
            t.trace.notes.append(f"integration impossible: {e}")
            return None
        tests = merged.code
        if spec.contract is None:  # the user's own examples, whichever part they fell to
            tests = _with_examples(tests, spec.goal, spec.module, None)
            tests = self._with_error_checks(t, tests)
        test_owner = dict(merged.origin)
        if spec.contract is not None and check_signature(code, spec.contract.signature):
            code = await self._glue(t, code, contracts)
        resolved: set[str] = set()
        rounds = self.settings.max_retries + 1
        for n in range(1, rounds + 1):
            problem = next((p for p in (check_signature(code, s) for s in signatures) if p), None)
            if problem:
                failure = f"Signature problem: {problem}"
                culprits: set[str] = set()
            else:
                cand, failure = await self._run_tests(t, code, tests, f"integration {n}", attempt=n)
                if cand.solved:
                    return cand
                culprits = {test_owner.get(name, "?") for name in cand.failing} or {"?"}
            if n == rounds:
                break
            culprit = next(iter(culprits)) if len(culprits) == 1 else None
            owner = next((o for o in outcomes if o.contract.name == culprit), None)
            if owner is not None and culprit not in resolved and owner.accepted:
                # Only a part that passed its contract alone is worth solving again for the assembled module;
                # one that failed its contract was already tried on these tests (see _spent_on_these_tests).
                resolved.add(culprit)
                self._event(t, EventKind.REJECTED, f"{culprit}: its tests fail in the assembled module; "
                                                   "solving it again with the evidence")
                new = await self._resolve(t, owner, f"In the assembled module its tests failed:\n{failure}")
                if new is owner:
                    continue  # not solved any better; the next round asks the model to fix the module
                outcomes[outcomes.index(owner)] = new
                code = self._assemble(spec, outcomes)
                if spec.contract is not None and check_signature(code, spec.contract.signature):
                    code = await self._glue(t, code, contracts)
                continue
            try:
                reply = await self._chat(t, prompts.integrate(spec, code, tests, failure,
                                                              [signature_line(s) for s in signatures]))
                fix = self._module_of(t, reply, contracts)
                code = self._merge_fix(spec, code, fix, prefer_fix=True, contracts=contracts)
            except (ModelOutputError, AssemblyError) as e:
                t.trace.notes.append(f"integration fix {n}: {e}")
        t.last_failure = failure
        return None

    @staticmethod
    def _with_error_checks(t: _Task, tests: str) -> str:
        """Integration ``tests`` plus the error checks of this task's own tests from its direct attempt (as votes and
        reviews left them): they expect no computed value, so they hold for the assembled module too. Seen on the 1.5B
        (calc.py): a module integrated from 8 parts was delivered not raising on mismatched parentheses, an error
        the task states."""
        errors = raises_only(t.tests or "")
        if not errors:
            return tests
        try:
            return merge_tests([Piece("tests", tests), Piece("errors", errors)], t.spec.module).code
        except AssemblyError as e:
            t.trace.notes.append(f"error checks left out of the integration: {e}")
            return tests

    def _assemble(self, spec: TaskSpec, outcomes: list[_Outcome]) -> str:
        pieces = [Piece(o.contract.name, o.result.code) for o in outcomes if o.result and o.result.code.strip()]
        keep = {o.contract.name: o.contract.name for o in outcomes}
        asm = assemble(pieces, module=spec.module, keep=keep)
        for note in asm.notes:
            logger.debug("task %s: assembly: %s", spec.task_id, note)
        return asm.code

    def _merge_fix(self, spec: TaskSpec, current: str, fix: str, *, prefer_fix: bool,
                   contracts: Sequence[Contract]) -> str:
        """``fix`` merged into ``current``: a fix replaces what it redefines; glue may only add."""
        if prefer_fix:
            keep = dict.fromkeys(defined_names(fix), "fix")
        else:
            keep = {c.name: "current" for c in contracts}
            if spec.contract is not None:
                keep[spec.contract.name] = "fix"
        return assemble([Piece("current", current), Piece("fix", fix)], module=spec.module, keep=keep).code

    async def _glue(self, t: _Task, code: str, contracts: Sequence[Contract]) -> str:
        """Ask for the parent's own definition on top of its parts; on an unusable reply keep the code as is."""
        spec = t.spec
        try:
            reply = await self._chat(t, prompts.glue(spec, code, [signature_line(c.signature) for c in contracts]),
                                     enough=code_written)
            glue = self._module_of(t, reply, contracts)
            return self._merge_fix(spec, code, glue, prefer_fix=False, contracts=contracts)
        except (ModelOutputError, AssemblyError) as e:
            t.trace.notes.append(f"glue: {e}")
            return code

    # --- LLM calls and events ----------------------------------------------------------------------------------

    def _take(self, t: _Task) -> None:
        if t.calls_left <= 0:
            raise BudgetExhausted(f"LLM-call budget of {t.calls_budget} calls used up")
        if t.remaining() <= 0:
            raise BudgetExhausted(f"wall-clock budget of {t.spec.timeout_s:.0f} s used up")
        t.calls_left -= 1
        t.trace.llm_calls += 1

    def _account(self, t: _Task, before: object) -> None:
        # LLM._timed appends the call's stats and returns without yielding to the loop, so a new last entry is
        # ours even when other tasks share the model (none is added when the backend failed before answering).
        if self.llm.calls and self.llm.calls[-1] is not before:
            s = self.llm.calls[-1]
            t.trace.tokens += s.prompt_tokens + s.completion_tokens

    async def _chat(self, t: _Task, messages: list[ChatMessage], max_tokens: int | None = None,
                    temperature: float | None = None, enough: Enough | None = None) -> str:
        self._take(t)
        logger.debug("task %s asks:\n%s", t.spec.task_id, messages[-1].content)
        before = self.llm.calls[-1] if self.llm.calls else None
        try:
            reply = await self.llm.chat(messages, max_tokens=max_tokens, temperature=temperature, enough=enough)
        finally:
            self._account(t, before)
        logger.debug("task %s got:\n%s", t.spec.task_id, reply)
        return reply

    async def _chat_many(self, t: _Task, asks: list[tuple[list[ChatMessage], float | None]], *,
                         max_tokens: int | None = None, enough: Enough | None = None) -> list[str]:
        """``_chat`` for several asks written together (``LLM.chat_many``), each a call of the task's budget."""
        for _ in asks:
            self._take(t)
        logger.debug("task %s asks (%d together):\n%s", t.spec.task_id, len(asks),
                     "\n---\n".join(dict.fromkeys(messages[-1].content for messages, _ in asks)))
        replies = await self.llm.chat_many(asks, max_tokens=max_tokens, enough=enough)
        for reply in replies:
            if reply.stats is not None:
                t.trace.tokens += reply.stats.prompt_tokens + reply.stats.completion_tokens
            logger.debug("task %s got:\n%s", t.spec.task_id, reply.text)
        return [reply.text for reply in replies]

    async def _structured(self, t: _Task, messages: list[ChatMessage], schema: type[M],
                          max_tokens: int | None = None) -> M:
        self._take(t)
        logger.debug("task %s asks:\n%s", t.spec.task_id, messages[-1].content)
        before = self.llm.calls[-1] if self.llm.calls else None
        try:
            reply = await self.llm.structured(messages, schema, max_tokens=max_tokens)
        finally:
            self._account(t, before)
        logger.debug("task %s got:\n%s", t.spec.task_id, reply.model_dump_json(indent=1))
        return reply

    def _event(self, t: _Task, kind: EventKind, message: str = "", **fields) -> None:
        event = ProgressEvent(task_id=t.spec.task_id, parent_id=t.spec.parent_id, depth=t.spec.depth, node=self.node,
                              kind=kind, message=message[:4096],
                              elapsed_s=round(asyncio.get_running_loop().time() - t.started, 3), **fields)
        try:
            t.emit(event)
        except Exception:  # a broken progress display must not break the task
            logger.warning("emit failed for %s event of task %s", kind.value, t.spec.task_id, exc_info=True)


def _first(eg: BaseExceptionGroup) -> BaseException:
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


__all__ = ["Delegate", "Emit", "PlanError", "Solver", "module_name", "subtree_calls", "subtree_tokens",
           "validate_plan"]
