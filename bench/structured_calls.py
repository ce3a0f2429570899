"""How often a model's structured replies fit their schema on the first try, for the calls the solver makes.

Twenty prompts of three kinds, each answered once with grammar-constrained decoding (``LLM.structured``):

* ``decide``: the solver's real ``[rcp:decide]`` prompt (``rcp.prompts.decide``) -> ``rcp.prompts.Decision``;
* ``plan``: the real ``[rcp:plan]`` prompt with at most 4 parts -> ``rcp.prompts.Plan``;
* ``code``: a contract -> ``CodeAndTests`` (code and pytest tests as JSON strings). The solver itself asks for
  code as a fenced reply (see ``rcp.prompts``); this kind measures whether JSON code replies would be viable.

A reply counts as valid when it parses and validates (a ``ModelOutputError`` is a failure, e.g. cut off at
``--max-tokens``). Extra checks that the schema cannot express are reported beside it: plans with 2..4 parts,
and code and tests that parse as Python. Prints one JSON object; logs go to stderr.

    python bench/structured_calls.py --model models/qwen2.5-coder-0.5b-instruct.gguf
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from rcp.errors import ModelOutputError
from rcp.llm import ChatMessage, LlamaCppLLM
from rcp.prompts import Decision, Plan, decide, plan
from rcp.records import TaskSpec
from rcp.settings import load_settings

logger = logging.getLogger("bench.structured_calls")

MAX_PARTS = 4

# Tasks to decide on: one-function tasks (the right answer is "direct") and multi-part ones ("decompose").
DECIDE_TASKS = [
    "Write a function `is_palindrome(s: str) -> bool` that ignores case and non-letters.",
    "Write `fizzbuzz(n: int) -> list[str]` returning the FizzBuzz sequence from 1 to n.",
    "Write a function that returns the n-th Fibonacci number using iteration.",
    "Write a module for a library system: a Book class, a Member class with borrowing limits, a function to "
    "search books by title or author, and a function that computes late fees.",
    "Write a tool that parses an Apache access log, counts requests per status code, finds the ten busiest IP "
    "addresses and renders a plain-text report.",
    "Write a tiny calculator: a tokenizer for + - * / and parentheses, a recursive-descent parser, and an "
    "evaluator for the parsed expression.",
    "Write `flatten(nested: list) -> list` that flattens arbitrarily nested lists.",
]

# Tasks to split into 2..4 parts.
PLAN_TASKS = [
    "A command-line tool that reads a CSV file, computes the mean and median of each numeric column and "
    "prints an aligned table.",
    "A text-statistics module: word counts, the most common words excluding stop words, and average sentence "
    "length.",
    "An inventory module: add items with quantities, remove items with validation, and a report of items below "
    "a reorder threshold.",
    "A matrix helper module: transpose, multiply two matrices, and compute the determinant of a square matrix.",
    "A URL shortener core: encode an integer id to base62, decode it back, and an in-memory store mapping codes "
    "to URLs.",
    "A date utilities module: parse ISO dates, count business days between two dates, and add n business days "
    "to a date.",
    "A simple bank: accounts with deposits and withdrawals that refuse overdrafts, transfers between accounts, "
    "and a monthly statement as text.",
]

# Contracts to implement with tests.
CODE_CONTRACTS = [
    ("is_prime", "def is_prime(n: int) -> bool:", "True when n is a prime number; False for n < 2."),
    ("word_freq", "def word_freq(text: str) -> dict[str, int]:",
     "Counts lower-cased words (letters only) in text."),
    ("rle_encode", "def rle_encode(s: str) -> str:", "Run-length encodes s, e.g. 'aaab' -> 'a3b1'."),
    ("merge_intervals", "def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:",
     "Merges overlapping closed intervals and returns them sorted by start."),
    ("roman_to_int", "def roman_to_int(s: str) -> int:", "Converts a Roman numeral such as 'MCMXCIV' to an int."),
    ("chunk", "def chunk(items: list, size: int) -> list[list]:",
     "Splits items into consecutive lists of at most size elements; size < 1 raises ValueError."),
]


class CodeAndTests(BaseModel):
    """A contract's implementation and its tests, both as Python source."""

    code: str = Field(max_length=4000, description="the complete function, standard library only")
    tests: str = Field(max_length=4000, description="pytest test functions with plain asserts")


def code_prompt(name: str, signature: str, behaviour: str) -> list[ChatMessage]:
    system = ("[bench:code] You are an expert Python programmer. Write the function and 3 pytest test functions "
              f"with plain asserts that start with `from solution import {name}`. Reply in JSON with the fields "
              "`code` and `tests`, each a string of Python source.")
    user = f"Your part: {signature}\nBehaviour: {behaviour}\nModule: solution.py"
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def cases() -> list[tuple[str, list[ChatMessage], type[BaseModel]]]:
    out: list[tuple[str, list[ChatMessage], type[BaseModel]]] = []
    for task in DECIDE_TASKS:
        out.append(("decide", decide(TaskSpec(goal=task, root_task=task), MAX_PARTS), Decision))
    for task in PLAN_TASKS:
        out.append(("plan", plan(TaskSpec(goal=task, root_task=task), MAX_PARTS), Plan))
    for name, signature, behaviour in CODE_CONTRACTS:
        out.append(("code", code_prompt(name, signature, behaviour), CodeAndTests))
    return out


async def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    llm = await LlamaCppLLM.create(args.model, n_threads=args.n_threads, n_ctx=args.n_ctx,
                                   max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    rows = []
    try:
        for i, (kind, messages, schema) in enumerate(cases()[:args.limit]):
            started = time.perf_counter()
            row: dict = {"kind": kind, "valid": False, "extra_ok": False, "error": ""}
            try:
                reply = await llm.structured(messages, schema)
            except ModelOutputError as e:
                # The end of the raw reply shows how it failed (a loop, an unclosed string, prose).
                row["error"] = f"{str(e)[:160]} | reply ends: {e.raw[-160:]!r}"
            else:
                row["valid"] = True
                if isinstance(reply, Plan):
                    row["extra_ok"] = 2 <= len(reply.parts) <= MAX_PARTS
                elif isinstance(reply, CodeAndTests):
                    row["extra_ok"] = _parses(reply.code) and _parses(reply.tests) and "def test" in reply.tests
                else:
                    row["extra_ok"] = True
            stats = llm.calls[-1]
            row.update(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                       seconds=round(time.perf_counter() - started, 2))
            rows.append(row)
            logger.info("%2d %-6s valid=%s extra=%s %d+%d tokens in %.1f s %s", i + 1, kind, row["valid"],
                        row["extra_ok"], row["prompt_tokens"], row["completion_tokens"], row["seconds"],
                        row["error"])
    finally:
        await llm.close()

    def summary(subset: list[dict]) -> dict:
        seconds = sum(r["seconds"] for r in subset)
        completion = sum(r["completion_tokens"] for r in subset)
        return {"calls": len(subset), "valid": sum(r["valid"] for r in subset),
                "rate": round(sum(r["valid"] for r in subset) / len(subset), 3),
                "extra_ok": sum(r["extra_ok"] for r in subset),
                "mean_prompt_tokens": round(statistics.mean(r["prompt_tokens"] for r in subset), 1),
                "mean_completion_tokens": round(completion / len(subset), 1),
                "mean_seconds": round(seconds / len(subset), 2),
                "tokens_per_s": round(completion / seconds, 2) if seconds else 0.0}

    kinds = sorted({r["kind"] for r in rows}, key=["decide", "plan", "code"].index)
    # Tokens/s depend on what else runs on the machine's cores; the load average says how shared they were.
    return {"model": Path(args.model).name, "n_threads": args.n_threads, "temperature": args.temperature,
            "max_tokens": args.max_tokens, "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **summary(rows),
            "by_kind": {k: summary([r for r in rows if r["kind"] == k]) for k in kinds},
            "failures": [f'{r["kind"]}: {r["error"]}' for r in rows if not r["valid"]]}


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=settings.model_file, help="GGUF file (default: MODEL_PATH)")
    parser.add_argument("--n-threads", type=int, default=settings.n_threads)
    parser.add_argument("--n-ctx", type=int, default=settings.n_ctx)
    parser.add_argument("--max-tokens", type=int, default=settings.max_tokens)
    parser.add_argument("--temperature", type=float, default=settings.temperature)
    parser.add_argument("--seed", type=int, default=1, help="sampling seed, so reruns ask the same questions alike")
    parser.add_argument("--limit", type=int, default=None, help="run only the first N prompts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    print(json.dumps(asyncio.run(run(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
