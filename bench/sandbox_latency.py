"""Latency of one sandbox run of a trivial program (`print(1)`), end to end as the solver sees it.

Prints one JSON object: wall-clock median / p95 / min / max over ``--runs`` sequential runs (after
``--warmup`` runs that are not counted: the first container start pays for page cache and image layers),
plus the median time the command itself took inside the container. Usage:

    python bench/sandbox_latency.py [--runs 20] [--warmup 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from rcp.sandbox import DockerSandbox, SandboxLimits
from rcp.settings import load_settings


async def measure(runs: int, warmup: int) -> dict:
    settings = load_settings()
    sandbox = await DockerSandbox.create(settings.sandbox_image, SandboxLimits.from_settings(settings))
    walls, inner = [], []
    try:
        for i in range(warmup + runs):
            started = time.perf_counter()
            report = await sandbox.run({"main.py": "print(1)\n"})
            wall = time.perf_counter() - started
            if not report.ok or report.stdout != "1\n":
                raise SystemExit(f"run {i} failed: {report.model_dump_json()}")
            if i >= warmup:
                walls.append(wall)
                inner.append(report.duration_s)
    finally:
        await sandbox.close()
    # Inclusive quantiles: with 20 samples the 19th of 19 cut points is the 95th percentile.
    p95 = statistics.quantiles(walls, n=20, method="inclusive")[18] if len(walls) >= 2 else walls[0]
    return {"benchmark": "sandbox_latency", "program": "print(1)", "image": settings.sandbox_image, "runs": runs,
            "median_s": round(statistics.median(walls), 3), "p95_s": round(p95, 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3), "command_median_s": round(statistics.median(inner), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    print(json.dumps(asyncio.run(measure(args.runs, args.warmup))))


if __name__ == "__main__":
    main()
