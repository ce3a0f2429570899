"""The composite task suite: modules of several functions, or a class with several methods.

Each task is a directory ``bench/tasks/<module>/`` holding three files:

* ``task.md``: the task exactly as a user would type it; it names the module (``<module>.py``) and gives exact
  names, signatures, return types and edge behaviour, so one correct solution is unambiguous;
* ``test_hidden.py``: pytest tests (10-20 checks, edge cases included) that no arm ever sees; they grade the
  final code of every arm in the sandbox;
* ``reference.py``: a solution the hidden tests pass (``tests/test_bench.py`` checks that, and that an empty
  module fails them).

``ORDER`` is the order ``--tasks N`` takes them in: mixed kinds first, so a quick run of 2-3 tasks sees both
a class and a module of functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
ORDER = ["inventory", "textstats", "calc", "bank", "intervals", "romans", "lrucache", "matrix", "shortener",
         "dateutils"]


@dataclass(frozen=True)
class CompositeTask:
    name: str  # also the module the task asks for
    text: str
    hidden_tests: str
    reference: str

    @property
    def module(self) -> str:
        return self.name

    @property
    def test_file(self) -> str:
        return f"test_hidden_{self.name}.py"


def load(name: str) -> CompositeTask:
    d = TASKS_DIR / name
    if not (d / "task.md").is_file():
        raise KeyError(f"no composite task {name!r}; known: {', '.join(all_names())}")
    return CompositeTask(name=name, text=(d / "task.md").read_text().strip(),
                         hidden_tests=(d / "test_hidden.py").read_text(), reference=(d / "reference.py").read_text())


def all_names() -> list[str]:
    found = sorted(p.parent.name for p in TASKS_DIR.glob("*/task.md"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def select(limit: int | None = None, names: list[str] | None = None) -> list[CompositeTask]:
    """The tasks ``names`` lists (in that order), else the first ``limit`` of ``all_names()`` (all if None)."""
    chosen = names if names else all_names()[:limit]
    return [load(n) for n in chosen]
