"""Efficiency: how close the arms come to the machine's generation limit, and where the rest of the time goes.

* ``measure_peak``: generated tokens/s of one llama-cpp process using every core (``n_threads = cpu_count``),
  greedy, on a fixed code-writing prompt, after one warm-up call. The ceiling the swarm is compared to.
* ``arm_efficiency``: from an arm's rows (each task's wall-clock window, generation intervals with their
  completion tokens, sandbox intervals): generated tokens/s while the arm worked on tasks, utilisation =
  that / peak, a time series of tokens/s over task time, and the overhead share: the part of the task
  windows in which neither a generation nor a sandbox run was under way (DHT, RPC, serialisation, scheduling,
  prompt assembly, waiting).

Overlapping intervals (parts solved at once on several nodes) are counted once: shares are of wall time.
Deliberately left out: the sandbox and RPC latency measurements themselves (``bench/sandbox_latency.py`` and
``bench/rpc_latency.py``, which ``bench.run`` calls).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

PEAK_PROMPT = ("Write a Python module with a class `Matrix` supporting addition, multiplication, transpose and "
               "determinant, with docstrings and type hints.")
SERIES_BIN_S = 10.0


async def measure_peak(model: Path, *, n_threads: int | None = None, max_tokens: int = 256, n_ctx: int = 2048,
                       repeats: int = 2) -> dict:
    """Best generated tokens/s of ``repeats`` greedy calls (after a warm-up) with all cores."""
    from bench.arms import TimedLlamaCppLLM
    from rcp.llm import ChatMessage

    threads = n_threads or os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    llm = await TimedLlamaCppLLM.create(model, n_threads=threads, n_ctx=n_ctx, max_tokens=max_tokens,
                                        temperature=0.0, seed=1)
    load_s = time.perf_counter() - started
    try:
        await llm.chat([ChatMessage(role="user", content="Say hi.")], max_tokens=8)
        runs = []
        for _ in range(repeats):
            await llm.chat([ChatMessage(role="user", content=PEAK_PROMPT)])
            g = llm.generations[-1]
            runs.append({"completion_tokens": g.completion_tokens, "prompt_tokens": g.prompt_tokens,
                         "seconds": round(g.end - g.start, 3),
                         "tokens_per_s": round(g.completion_tokens / max(1e-6, g.end - g.start), 2)})
    finally:
        await llm.close()
    best = max(runs, key=lambda r: r["tokens_per_s"])
    # The rate includes the prompt's evaluation (~40 tokens), as every generation of the arms does.
    return {"model": model.name, "n_threads": threads, "tokens_per_s": best["tokens_per_s"], "runs": runs,
            "load_s": round(load_s, 2), "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def measure_peak_sync(model: Path, **kwargs) -> dict:
    return asyncio.run(measure_peak(model, **kwargs))


def union_length(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi]."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def series(generations: list[list[float]], t0: float, t1: float, bin_s: float = SERIES_BIN_S) -> list[list[float]]:
    """[[seconds since t0, generated tokens/s in that bin], ...]; each call's tokens spread evenly over its time."""
    n = max(1, int((t1 - t0) // bin_s) + 1)
    bins = [0.0] * n
    for start, end, tokens in generations:
        span = max(end - start, 1e-3)
        for i in range(max(0, int((start - t0) // bin_s)), min(n, int((end - t0) // bin_s) + 1)):
            a, b = t0 + i * bin_s, t0 + (i + 1) * bin_s
            overlap = min(b, end) - max(a, start)
            if overlap > 0:
                bins[i] += tokens * overlap / span
    return [[round(i * bin_s, 1), round(v / bin_s, 3)] for i, v in enumerate(bins)]


def arm_efficiency(rows: list[dict], peak_tokens_per_s: float | None) -> dict | None:
    """Efficiency figures of one arm from its rows' timelines; None when no row has one."""
    rows = [r for r in rows if r.get("start") is not None and r.get("end") is not None]
    timed = [r for r in rows if r.get("generations")]
    if not timed:
        return None
    wall = sum(r["end"] - r["start"] for r in rows)
    gens = [g for r in rows for g in r.get("generations") or []]
    tokens = sum(g[2] for g in gens)
    gen_busy = sandbox_busy = either_busy = 0.0
    for r in rows:
        g = [(a, b) for a, b, _ in r.get("generations") or []]
        s = [(a, b) for a, b in r.get("sandbox") or []]
        gen_busy += union_length(g, r["start"], r["end"])
        sandbox_busy += union_length(s, r["start"], r["end"])
        either_busy += union_length(g + s, r["start"], r["end"])
    rate = tokens / wall if wall else 0.0
    # The series runs on task time: each task starts where the previous one ended, so the gaps between tasks
    # (grading, model loading, a merge of runs days apart) do not stretch it.
    clock, shifted = 0.0, []
    for r in sorted(rows, key=lambda r: r["start"]):
        shift = clock - r["start"]
        shifted += [[a + shift, b + shift, n] for a, b, n in r.get("generations") or []]
        clock += r["end"] - r["start"]
    out = {"tasks": len(rows), "wall_s": round(wall, 1), "generated_tokens": tokens, "tokens_per_s": round(rate, 3),
           "tokens_per_s_while_generating": round(tokens / gen_busy, 3) if gen_busy else None,
           "utilisation": round(rate / peak_tokens_per_s, 3) if peak_tokens_per_s else None,
           "generation_share": round(gen_busy / wall, 3) if wall else None,
           "sandbox_share": round(sandbox_busy / wall, 3) if wall else None,
           "overhead_share": round(1 - either_busy / wall, 3) if wall else None,
           "generation_calls": len(gens),
           "generation_s_summed": round(sum(b - a for a, b, _ in gens), 1),
           "sandbox_runs": sum(len(r.get("sandbox") or []) for r in rows),
           "series_bin_s": SERIES_BIN_S, "series": series(shifted, 0.0, clock)}
    return out
