"""Grading every arm's final code with tests it never saw, in the Docker sandbox.

* Composite tasks: the code becomes ``<module>.py`` beside ``test_hidden_<module>.py`` and pytest runs them;
  the counts come from pytest's summary line. A task is solved when every hidden test passes.
* HumanEval: one program (see ``bench.humaneval``) run with python3; exit code 0 passes.

``extract_code`` is how the single-shot arm turns a reply into a module, the way a user would copy it: the
longest fenced block that defines something (a trailing usage example or test block is usually shorter), or the
whole reply when it has no fence.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from bench.humaneval import Problem
from bench.tasks import CompositeTask
from rcp.sandbox import Sandbox, parse_pytest_summary

PYTEST = ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=line"]
GRADE_TIMEOUT = 60.0  # seconds per grading run; the hidden tests themselves take well under a second
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


@dataclass
class Grade:
    solved: bool
    passed: int
    failed: int
    seconds: float
    output_tail: str = ""

    @property
    def total(self) -> int:
        return self.passed + self.failed

    def as_dict(self) -> dict:
        return asdict(self)


def extract_code(reply: str) -> str:
    blocks = [body for lang, body in FENCE.findall(reply) if lang.lower() in ("", "python", "py", "python3")]
    defining = [b for b in blocks if re.search(r"^\s*(def|class)\s", b, re.M)]
    if defining:
        return max(defining, key=len).strip() + "\n"
    if blocks:
        return max(blocks, key=len).strip() + "\n"
    return reply.strip() + "\n"


async def grade_composite(sandbox: Sandbox, task: CompositeTask, code: str) -> Grade:
    started = time.perf_counter()
    report = await sandbox.run({f"{task.module}.py": code, task.test_file: task.hidden_tests},
                               [*PYTEST, task.test_file], timeout=GRADE_TIMEOUT)
    counts = parse_pytest_summary(report.stdout)
    if counts is None:
        counts = (report.tests_passed or 0, report.tests_failed or 0)
    passed, failed = counts
    total = count_tests(task.hidden_tests)
    if passed + failed < total:  # a collection error counts one error for the file: every test failed
        failed = total - passed
    return Grade(solved=report.ok and failed == 0 and passed == total, passed=passed, failed=failed,
                 seconds=round(time.perf_counter() - started, 3), output_tail=(report.stdout + report.stderr)[-600:])


async def grade_humaneval(sandbox: Sandbox, problem: Problem, code: str) -> Grade:
    started = time.perf_counter()
    report = await sandbox.run({"check.py": problem.program(code)}, ["python3", "check.py"], timeout=GRADE_TIMEOUT)
    ok = report.ok
    return Grade(solved=ok, passed=int(ok), failed=int(not ok), seconds=round(time.perf_counter() - started, 3),
                 output_tail=(report.stdout + report.stderr)[-600:])


def count_tests(source: str) -> int:
    return len(re.findall(r"^def test_\w*\(", source, re.M))
