"""Every program a swarm task wrote, graded with the hidden tests: ``python -m bench.programs TRACES``.

A bench run with ``--traces TRACES`` keeps each task's result (``TRACES/composite-<task>-swarm.json``) and the
nodes' DEBUG logs (``TRACES/node-logs/``), where the solver logs each program it writes for the vote, once
(``task <id>: program (<label>, draft)``; a retry or an integrated module is "scored, not voting"). This grades
each of them the way the bench graded the module the task returned, so another choice among a task's programs
(another vote rule) can be judged without running the model again. One line per program: the task, its label,
the hidden tests it passes, and ``<- returned`` on the module the task returned.
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
from rcp.assemble import code_key
from rcp.sandbox import Sandbox

# A log record starts with logging's asctime; a program's code follows its header line up to the next record.
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.M)
PROGRAM = re.compile(r"DEBUG rcp\.solver: task (\w+): program \(([^,]+), (draft|scored, not voting)\)\n")


@dataclass
class Program:
    task_id: str
    label: str
    is_draft: bool
    code: str


def logged_programs(log: str) -> list[Program]:
    """The programs a node's log holds, in the order written."""
    starts = [m.start() for m in RECORD.finditer(log)] + [len(log)]
    found = []
    for a, b in zip(starts, starts[1:], strict=False):
        record = log[a:b]
        m = PROGRAM.search(record)
        if m:
            code = record[m.end():].removesuffix("\n")  # the log's own line end
            found.append(Program(m[1], m[2], m[3] == "draft", code))
    return found


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
    programs = [p for path in logs for p in logged_programs(path.read_text(errors="replace"))]
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
    finally:
        await sandbox.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.programs", description=__doc__.split("\n\n")[0])
    p.add_argument("traces", type=Path, help="the --traces folder of a bench run with the swarm arm")
    return asyncio.run(_main(p.parse_args(argv).traces))


if __name__ == "__main__":
    sys.exit(main())
