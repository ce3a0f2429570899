"""Every program a swarm task wrote, graded with the hidden tests: ``python -m bench.programs TRACES``.

A bench run with ``--traces TRACES`` keeps each task's result (``TRACES/composite-<task>-swarm.json``) and the
nodes' DEBUG logs (``TRACES/node-logs/``), where the solver logs each program it writes for the vote, once
(``task <id>: program (<label>, draft)``; a retry or an integrated module is "scored, not voting"). This grades
each of them the way the bench graded the module the task returned, so another choice among a task's programs
(another vote rule) can be judged without running the model again. One line per program: the task, its label,
the hidden tests it passes, and ``<- returned`` on the module the task returned.

Then the vote is taken again, as ``rcp.solver`` takes it now, over the root task's programs with the last tests
it logged (``<- re-voted``, and each program's score): so a change to the vote rule is measured on the programs of
an earlier run. It differs from the run's own last vote where the tests changed after the last program was
written, and where the run ranked programs failing the task's examples by its runs of its own tests (here: a run
of those examples alone). A task of several functions also gets the mosaic ``rcp.solver.mosaic`` makes of them,
graded and marked ``<- re-voted`` where the solver would make it the best (it passes more of the tests than the
vote's choice, fails no example and ranks no lower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import tasks as composite
from bench.grading import Grade, grade_composite
from rcp import probe
from rcp.assemble import AssemblyError, code_key, task_examples
from rcp.records import TaskSpec
from rcp.sandbox import Sandbox
from rcp.solver import PYTEST, fuzz_calls, mosaic, stated_exceptions, stated_raises, test_counts, vote_probes

# A log record starts with logging's asctime; a program's code follows its header line up to the next record.
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.M)
PROGRAM = re.compile(r"DEBUG rcp\.solver: task (\w+): program \(([^,]+), (draft|scored, not voting)\)\n")
TESTS = re.compile(r"DEBUG rcp\.solver: task (\w+): tests\n")
PROBE_TIMEOUT = 120.0


@dataclass
class Program:
    task_id: str
    label: str
    is_draft: bool
    code: str


def _records(log: str, header: re.Pattern[str]) -> list[tuple[re.Match[str], str]]:
    """Each log record with ``header``, and the text after the header (up to the next record)."""
    starts = [m.start() for m in RECORD.finditer(log)] + [len(log)]
    found = []
    for a, b in zip(starts, starts[1:], strict=False):
        record = log[a:b]
        if m := header.search(record):
            found.append((m, record[m.end():].removesuffix("\n")))  # the log's own line end
    return found


def logged_programs(log: str) -> list[Program]:
    """The programs a node's log holds, in the order written."""
    return [Program(m[1], m[2], m[3] == "draft", code) for m, code in _records(log, PROGRAM)]


def logged_tests(log: str) -> dict[str, str]:
    """The last tests each task logged."""
    return {m[1]: tests for m, tests in _records(log, TESTS)}


@dataclass
class Revote:
    programs: list[Program]  # the root task's programs, drafts first, each group in order written
    scores: list[int]
    missed: list[bool]  # failed an example the task states: ranked last
    raised: list[int]  # standing on the stated errors (rcp.solver.stated_raises): ranked next
    chosen: int
    mosaic: Mosaic | None = None


@dataclass
class Mosaic:
    code: str
    picks: dict[str, int]  # function -> index in Revote.programs
    missed: bool  # failed an example the task states
    lower: bool  # ranks below the vote's choice
    raised: int
    score: int
    passed: int  # of the tests, against the vote's choice's
    chosen_passed: int

    @property
    def chosen(self) -> bool:
        """Whether ``Solver._mosaic`` would make it the best."""
        return not self.missed and not self.lower and self.passed > self.chosen_passed


async def revote(sandbox: Sandbox, spec: TaskSpec, tests: str, programs: list[Program]) -> Revote | None:
    """The vote ``rcp.solver`` takes over ``programs`` of the task ``spec`` with ``tests`` (None when fewer than
    two drafts, or the tests cannot be probed): the drafts vote, every program is scored (rcp.probe.agreement), a
    program failing the task's examples ranks last, then programs rank by their standing on the stated errors
    (rcp.solver.stated_raises), and ties go to the earliest."""
    unique = list({code_key(p.code): p for p in reversed(programs)}.values())[::-1]  # the first of each code
    order = sorted(unique, key=lambda p: not p.is_draft)
    drafts = sum(p.is_draft for p in order)
    if drafts < 2:
        return None
    try:
        probes = vote_probes(spec, tests, fuzz_calls(spec))
    except AssemblyError:
        return None
    observed = await probe.observe(sandbox, spec.module, [p.code for p in order], probes, timeout=PROBE_TIMEOUT)
    scores = probe.agreement(observed, probes.positions, voters=drafts, errors=stated_exceptions(spec.root_task))
    examples = task_examples(spec.root_task, spec.module)
    missed = [bool(examples) and not await _passes(sandbox, spec.module, p.code, examples) for p in order]
    raised = stated_raises(spec.root_task, observed, probes.positions, drafts)
    chosen = max(range(len(order)), key=lambda i: (not missed[i], raised[i], scores[i], -i))
    vote = Revote(order, scores, missed, raised, chosen)
    codes = [p.code for p in order]
    if made := mosaic(spec, codes, observed, probes.positions, drafts, missed, chosen):
        code, picks = made
        [seen] = await probe.observe(sandbox, spec.module, [code], probes, timeout=PROBE_TIMEOUT)
        both = [*observed, seen]
        score = probe.agreement(both, probes.positions, voters=drafts, errors=stated_exceptions(spec.root_task))[-1]
        standing = stated_raises(spec.root_task, both, probes.positions, drafts)[-1]
        missed_too = bool(examples) and not await _passes(sandbox, spec.module, code, examples)
        vote.mosaic = Mosaic(code, picks, missed_too, (standing, score) < (raised[chosen], scores[chosen]),
                             standing, score, await _passed(sandbox, spec.module, code, tests),
                             await _passed(sandbox, spec.module, codes[chosen], tests))
    return vote


async def _passed(sandbox: Sandbox, module: str, code: str, tests: str) -> int:
    report = await sandbox.run({f"{module}.py": code, f"test_{module}.py": tests}, [*PYTEST, f"test_{module}.py"],
                               timeout=PROBE_TIMEOUT)
    return test_counts(report)[0]


async def _passes(sandbox: Sandbox, module: str, code: str, tests: str) -> bool:
    report = await sandbox.run({f"{module}.py": code, f"test_{module}.py": tests}, [*PYTEST, f"test_{module}.py"],
                               timeout=PROBE_TIMEOUT)
    passed, failed = test_counts(report)
    return report.exit_code == 0 and passed > 0 and failed == 0


def _task_ids(trace: dict) -> set[str]:
    return {trace["task_id"]} | {i for child in trace.get("children", []) for i in _task_ids(child)}


async def grade_programs(sandbox: Sandbox, task: composite.CompositeTask, result: dict,
                         programs: list[Program]) -> list[tuple[Program, Grade, bool]]:
    """Each of ``programs`` written by the task ``result`` (or its parts), graded; True on the one returned."""
    ids = _task_ids(result["trace"])
    returned = code_key(result["code"])
    out = []
    for p in programs:
        if p.task_id in ids:
            out.append((p, await grade_composite(sandbox, task, p.code), code_key(p.code) == returned))
    return out


async def _main(folder: Path) -> int:
    from rcp.sandbox import DockerSandbox, SandboxLimits
    from rcp.settings import load_settings

    logs = sorted((folder / "node-logs").glob("node-*.log"))
    if not logs:
        print(f"no node logs in {folder / 'node-logs'}: run the bench with --traces {folder} (swarm arm)",
              file=sys.stderr)
        return 2
    texts = [path.read_text(errors="replace") for path in logs]
    programs = [p for text in texts for p in logged_programs(text)]
    tests = {task: t for text in texts for task, t in logged_tests(text).items()}
    settings = load_settings()
    sandbox = await DockerSandbox.create(settings.sandbox_image, SandboxLimits.from_settings(settings))
    try:
        for path in sorted(folder.glob("composite-*-swarm.json")):
            kept = json.loads(path.read_text())
            name = path.stem.removeprefix("composite-").removesuffix("-swarm")
            task = composite.load(name)
            graded = await grade_programs(sandbox, task, kept["result"], programs)
            g = kept["grade"]
            print(f"{name}: returned module {g['passed']}/{g['passed'] + g['failed']}, {len(graded)} programs logged")
            for p, grade, is_returned in graded:
                print(f"  {p.label:<22} {'draft' if p.is_draft else 'retry':<6} {grade.passed}/{grade.total}"
                      f"{'  <- returned' if is_returned else ''}")
            root = kept["result"]["task_id"]
            spec = TaskSpec(task_id=root, goal=task.text, root_task=task.text, module=task.module)
            vote = await revote(sandbox, spec, tests[root], [p for p in programs if p.task_id == root]) \
                if root in tests else None
            if vote is None:
                print("  re-vote: none (fewer than two drafts of the whole task, or no tests to probe with)")
                continue
            grades = {code_key(p.code): g for p, g, _ in graded}
            print(f"  re-vote of {sum(p.is_draft for p in vote.programs)} drafts over {len(vote.programs)} programs:")
            for i, p in enumerate(vote.programs):
                g = grades[code_key(p.code)]
                print(f"  {p.label:<22} {'draft' if p.is_draft else 'retry':<6} {g.passed}/{g.total}  "
                      f"score {vote.scores[i]}{', misses an example' if vote.missed[i] else ''}"
                      f"{f', stated-error score {vote.raised[i]}' if vote.raised[i] else ''}"
                      f"{'  <- re-voted' if i == vote.chosen and not (vote.mosaic and vote.mosaic.chosen) else ''}")
            if m := vote.mosaic:
                g = await grade_composite(sandbox, task, m.code)
                picks = ", ".join(f"{name} of {vote.programs[i].label}" for name, i in m.picks.items())
                print(f"  mosaic ({picks}) {g.passed}/{g.total}  score {m.score}"
                      f"{', misses an example' if m.missed else ''}{', ranks lower' if m.lower else ''}"
                      f"{f', stated-error score {m.raised}' if m.raised else ''}, passed {m.passed} tests against "
                      f"{m.chosen_passed}{'  <- re-voted' if m.chosen else ''}")
    finally:
        await sandbox.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.programs", description=__doc__.split("\n\n")[0])
    p.add_argument("traces", type=Path, help="the --traces folder of a bench run with the swarm arm")
    return asyncio.run(_main(p.parse_args(argv).traces))


if __name__ == "__main__":
    sys.exit(main())
