"""Fakes for logic tests: sandboxes that subclass ``rcp.sandbox.Sandbox`` and record every run.

* ``FakeSandbox(rule)``: no process is started; ``rule(files)`` decides. It returns None for "all tests pass" or
  a failure text (shown to the solver like pytest output). Pass/fail counts are derived from the test functions
  in the files, so a report is only ever what the test's rule says about the files it was given.
* ``LocalPytestSandbox()``: really runs the command (pytest) in a temporary directory with this interpreter.
  Not isolated: only for tests whose code comes from our own scripts, to prove they pass under real pytest
  without Docker (and to get pytest's real output, which the solver parses).

Rules: ``executes_tests`` really runs the test functions in-process (fast, honest); ``fails_when(pattern, msg)``
fails runs whose module matches a regex. ``events_of`` lists one task's event kinds.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rcp.sandbox import Sandbox, SandboxReport

Rule = Callable[[Mapping[str, str]], str | None]


@dataclass
class Run:
    files: dict[str, str]
    cmd: list[str]
    report: SandboxReport

    @property
    def code(self) -> str:
        """The module under test (the one .py file that is not a test file)."""
        return next(v for k, v in self.files.items() if not k.startswith("test_"))

    @property
    def tests(self) -> str:
        return next((v for k, v in self.files.items() if k.startswith("test_")), "")


def _test_functions(files: Mapping[str, str]) -> list[str]:
    names = []
    for path, text in files.items():
        if path.startswith("test_"):
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            names += [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    return names


@dataclass
class FakeSandbox(Sandbox):
    """Decides each run with ``rule``; ``delay`` imitates a slow container; ``error`` makes ``run`` raise."""

    rule: Rule = lambda files: None  # noqa: E731  # default: everything passes
    delay: float = 0.0
    error: Exception | None = None
    runs: list[Run] = field(default_factory=list)

    async def run(self, files, cmd=None, *, timeout=None, collect=()) -> SandboxReport:
        if self.error is not None:
            raise self.error
        if self.delay:
            await asyncio.sleep(self.delay)
        files = dict(files)
        tests = _test_functions(files)
        failure = self.rule(files)
        if failure is None and tests:
            report = SandboxReport(exit_code=0, stdout=f"{'.' * len(tests)}\n{len(tests)} passed in 0.01s\n",
                                   tests_passed=len(tests), tests_failed=0, duration_s=self.delay)
        else:
            failure = failure or "no tests ran"
            # Which tests failed: those the failure text names, else the first one.
            failed = [n for n in tests if re.search(rf"\b{re.escape(n)}\b", failure)] or tests[:1]
            test_file = next((k for k in files if k.startswith("test_")), "test_x.py")
            summary = "".join(f"FAILED {test_file}::{n} - AssertionError\n" for n in failed)
            stdout = (f"F\n=================================== FAILURES ===================================\n"
                      f"{failure}\n=========================== short test summary info ============================\n"
                      f"{summary}{len(failed)} failed, {len(tests) - len(failed)} passed in 0.01s\n")
            report = SandboxReport(exit_code=1, stdout=stdout, tests_passed=len(tests) - len(failed),
                                   tests_failed=len(failed), duration_s=self.delay)
        self.runs.append(Run(files, list(cmd or []), report))
        return report


@dataclass
class LocalPytestSandbox(Sandbox):
    """Runs the real command with this interpreter in a fresh temporary directory (``python3`` -> sys.executable)."""

    runs: list[Run] = field(default_factory=list)

    async def run(self, files, cmd=None, *, timeout=None, collect=()) -> SandboxReport:
        cmd = list(cmd or ["python3", *[k for k in files if k.endswith(".py")][:1]])
        if cmd and cmd[0] in ("python", "python3"):
            cmd[0] = sys.executable
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in files.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_text(text)
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=tmp, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), timeout or 60)
                timed_out = False
            except TimeoutError:
                proc.kill()
                out, err = await proc.communicate()
                timed_out = True
            collected = {n: (Path(tmp) / n).read_text() for n in collect if (Path(tmp) / n).is_file()}
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        counts = {w: sum(int(n) for n in re.findall(rf"(\d+) {w}", stdout)) for w in ("passed", "failed", "error")}
        report = SandboxReport(exit_code=None if timed_out else proc.returncode, stdout=stdout, stderr=stderr,
                               timed_out=timed_out, duration_s=time.perf_counter() - started,
                               tests_passed=counts["passed"], tests_failed=counts["failed"] + counts["error"],
                               files=collected)
        self.runs.append(Run(dict(files), cmd, report))
        return report


def executes_tests(files: Mapping[str, str]) -> str | None:
    """A rule that really runs the tests, in this process: the module is imported under its own name, every
    ``test_*`` function (and method of a ``Test*`` class) is called. Fast (no interpreter start), honest, and
    only for code from our own scripts."""
    module_file = next(k for k in files if not k.startswith("test_") and k.endswith(".py"))
    test_file = next(k for k in files if k.startswith("test_"))
    name = module_file[:-3]
    saved = sys.modules.get(name)
    failures = []
    try:
        mod = types.ModuleType(name)
        try:
            exec(compile(files[module_file], module_file, "exec"), mod.__dict__)  # noqa: S102
            sys.modules[name] = mod
            ns: dict = {"__name__": test_file[:-3]}
            exec(compile(files[test_file], test_file, "exec"), ns)  # noqa: S102
        except Exception:
            return f"ERROR collecting {test_file}\n{traceback.format_exc(limit=1)}"
        tests = [(n, f) for n, f in ns.items() if n.startswith("test") and callable(f)]
        tests += [(f"{n}", getattr(c(), m)) for n, c in ns.items() if n.startswith("Test") and isinstance(c, type)
                  for m in dir(c) if m.startswith("test")]
        for test_name, fn in tests:
            try:
                fn()
            except Exception as e:
                failures.append(f"{test_name}: {type(e).__name__}: {e}")
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
    return "\n".join(failures) or None


def fails_when(pattern: str, message: str) -> Rule:
    """A rule: the run fails with ``message`` when ``pattern`` (a regex) occurs in the module under test."""
    def rule(files: Mapping[str, str]) -> str | None:
        code = next(v for k, v in files.items() if not k.startswith("test_"))
        return message if re.search(pattern, code) else None
    return rule


def events_of(events: Sequence, task_id: str) -> list[str]:
    """The kinds of the events of one task, in order."""
    return [e.kind.value for e in events if e.task_id == task_id]
