"""Scale: swarms of 1..N nodes on the scripted fake LLM, so what is measured is the protocol, not generation.

For each size: boot `network.py` (the production node code with canned replies from
``tests/scripts/delegate.json``), read boot time and memory from its ready line, submit the two-part task of that
script ``--scale-tasks`` times (the root decomposes and delegates ``add`` and ``mul`` to peers), and measure:

* delegation latency: from a parent's "sent to node X" event to the child's ACCEPTED event on X (both stamped
  with this host's clock), i.e. peer choice + RPC stream open + the child's start;
* task round trip: submit to result for the whole task (2 parts, 5 sandbox runs, 4 scripted LLM calls);
* the ``info`` RPC round trip and DHT discovery (``bench/rpc_latency.py``'s ``measure_rpc``);
* memory per node and total (PSS of each node's process tree) after the tasks, and shutdown time.

With one node there is no peer: the parts fall back to local solving and no delegation latency exists.
``growth`` fits each figure linearly against the node count (slope per added node) and gives the ratio between
the largest and the smallest swarm.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from bench import rpc_latency
from bench.swarm import BenchSwarm
from rcp.client import Connection, root_spec, submit
from rcp.records import EventKind
from rcp.settings import PROJECT_ROOT, Settings

logger = logging.getLogger("bench.scale")

SCRIPT = PROJECT_ROOT / "tests" / "scripts" / "delegate.json"
TASK = "Write a Python module arith.py with functions add(a, b) and mul(a, b)"


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def _tasks(settings: Settings, count: int) -> dict:
    conn = await Connection.open(settings)
    delegations, rounds, solved = [], [], 0
    try:
        for _ in range(count):
            sub = await submit(conn, root_spec(TASK, settings, 120))
            solved += sub.result.solved
            rounds.append(sub.seconds)
            sent = {e.task_id: e.at for e in sub.events
                    if e.kind == EventKind.DELEGATED and " sent to node " in e.message}
            for e in sub.events:
                if e.kind == EventKind.ACCEPTED and e.task_id in sent:
                    delegations.append((e.at - sent.pop(e.task_id)) * 1000)
    finally:
        await conn.close()
    out = {"tasks": count, "solved": solved, "task_median_s": round(statistics.median(rounds), 3),
           "delegations": len(delegations)}
    if delegations:
        out.update(delegation_median_ms=round(statistics.median(delegations), 2),
                   delegation_p95_ms=round(quantile(delegations, 0.95), 2))
    return out


def measure(base: Settings, nodes: int, tasks: int, info_calls: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rcp-bench-scale-") as tmp:
        settings = base.model_copy(update={
            "run_dir": tmp, "num_nodes": nodes, "llm_backend": "scripted", "llm_script": str(SCRIPT),
            "log_level": "INFO", "initial_peers": []})
        started = time.monotonic()
        swarm = BenchSwarm.boot(settings)
        row = {"nodes": nodes, "ready_s": swarm.ready_s, "boot_wall_s": round(time.monotonic() - started, 2),
               "memory_mib_per_node_ready": swarm.memory_mib_per_node,
               "memory_mib_total_ready": swarm.memory_mib_total}
        try:
            row.update(asyncio.run(_tasks(settings, tasks)))
            row.update(asyncio.run(rpc_latency.measure_rpc(Path(tmp), nodes, info_calls, 10)))
            mems = swarm.sample_memory()
            if mems:
                row.update(memory_mib_per_node=round(sum(mems) / len(mems), 1), memory_mib_total=round(sum(mems), 1))
        finally:
            row["shutdown_s"] = round(swarm.stop(), 2)
    logger.info("scale %d nodes: %s", nodes, row)
    return row


def growth(runs: list[dict]) -> dict:
    """Per figure: least-squares slope per node and largest/smallest ratio."""
    runs = sorted(runs, key=lambda r: r["nodes"])
    out = {}
    for key in ("ready_s", "memory_mib_total", "memory_mib_per_node", "delegation_median_ms", "task_median_s",
                "info_median_ms", "shutdown_s"):
        pts = [(r["nodes"], r[key]) for r in runs if r.get(key) is not None]
        if len(pts) < 2:
            continue
        mx = statistics.mean(x for x, _ in pts)
        my = statistics.mean(y for _, y in pts)
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
        first, last = pts[0], pts[-1]
        out[key] = {"per_node": round(slope, 3), "from": first, "to": last,
                    "ratio": round(last[1] / first[1], 2) if first[1] else None}
    return out


def run(base: Settings, sizes: list[int], tasks: int = 3, info_calls: int = 100) -> dict:
    runs = []
    for n in sizes:
        try:
            runs.append(measure(base, n, tasks, info_calls))
        except Exception as e:  # one size that cannot boot (memory) must not lose the others
            logger.warning("scale run with %d nodes failed: %s", n, e)
            runs.append({"nodes": n, "error": f"{type(e).__name__}: {e}"[:500]})
    return {"llm": "scripted", "script": SCRIPT.name, "task": TASK, "runs": runs, "growth": growth(
        [r for r in runs if "error" not in r])}
