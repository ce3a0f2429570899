"""Swarm numbers on loopback: boot time, memory, DHT discovery, `info` RPC round trip, shutdown time.

For each size in ``--nodes`` it boots a swarm with `python network.py` on the scripted LLM (the node code is the
production one; only the model is canned, so the numbers are about the swarm, not about generation) in a
temporary run dir, reads its ``swarm ready`` line (seconds to ready, memory), joins as a DHT client (discovery:
join until every node's heartbeat is seen), calls ``info`` ``--calls`` times round-robin over the nodes, then
stops the swarm with SIGTERM and times that. Needs Docker and the sandbox image (nodes create their sandbox).
Prints one JSON object. Usage:

    python bench/rpc_latency.py [--nodes 3,6] [--calls 600] [--warmup 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rcp.client import Connection
from rcp.launcher import CONTACT_FILE
from rcp.membership import wait_for_peers
from rcp.settings import PROJECT_ROOT, load_settings

READY = re.compile(r"swarm ready: (\d+)/(\d+) nodes in ([\d.]+) s .* memory (\d+) MiB/node, (\d+) MiB total")
SCRIPT = PROJECT_ROOT / "tests" / "scripts" / "direct.json"


def boot(run_dir: Path, nodes: int) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env.update({"RCP_LLM_BACKEND": "scripted", "RCP_LLM_SCRIPT": str(SCRIPT), "RCP_RUN_DIR": str(run_dir)})
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "network.py"), "--num-nodes", str(nodes)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = READY.match(line)
        if m:
            return proc, {"ready_s": float(m[3]), "memory_mib_per_node": int(m[4]), "memory_mib_total": int(m[5])}
    proc.wait()
    raise SystemExit(f"network.py exited with code {proc.returncode} before it was ready; see {run_dir}/logs")


def quantile(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method), in the unit of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure_rpc(run_dir: Path, nodes: int, calls: int, warmup: int) -> dict:
    settings = load_settings({"run_dir": str(run_dir)}, environ={})
    started = time.perf_counter()
    conn = await Connection.open(settings)
    try:
        joined = time.perf_counter()
        peers = await wait_for_peers(conn.dht, nodes, 30)
        discovered = time.perf_counter()
        rtts = []
        for i in range(warmup + calls):
            peer = peers[i % len(peers)]
            t = time.perf_counter()
            await conn.rpc.info(peer.peer_id)
            if i >= warmup:
                rtts.append((time.perf_counter() - t) * 1000)
        lookups = []
        for _ in range(20):
            t = time.perf_counter()
            await wait_for_peers(conn.dht, nodes, 5)
            lookups.append((time.perf_counter() - t) * 1000)
    finally:
        await conn.close()
    return {"client_join_s": round(joined - started, 3), "discovery_s": round(discovered - started, 3),
            "membership_lookup_median_ms": round(statistics.median(lookups), 2),
            "info_calls": calls, "info_median_ms": round(statistics.median(rtts), 3),
            "info_p95_ms": round(quantile(rtts, 95), 3), "info_p99_ms": round(quantile(rtts, 99), 3),
            "info_max_ms": round(max(rtts), 3)}


def measure(nodes: int, calls: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rcp-bench-") as tmp:
        run_dir = Path(tmp)
        proc, result = boot(run_dir, nodes)
        try:
            contact = json.loads((run_dir / CONTACT_FILE).read_text())
            assert len(contact["nodes"]) == nodes
            result.update(asyncio.run(measure_rpc(run_dir, nodes, calls, warmup)))
        finally:
            started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            result["shutdown_s"] = round(time.perf_counter() - started, 3)
            result["shutdown_exit_code"] = proc.returncode
    return {"nodes": nodes, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,6", help="comma-separated swarm sizes to boot (default 3,6)")
    parser.add_argument("--calls", type=int, default=600, help="measured info calls per swarm (default 600)")
    parser.add_argument("--warmup", type=int, default=30, help="uncounted info calls first (default 30)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    if not sizes or min(sizes) < 1 or args.calls < 20 or args.warmup < 0:
        parser.error("--nodes needs sizes >= 1, --calls at least 20, --warmup >= 0")
    runs = [measure(n, args.calls, args.warmup) for n in sizes]
    print(json.dumps({"benchmark": "rpc_latency", "transport": "hivemind libp2p on 127.0.0.1", "llm": "scripted",
                      "swarms": runs}, indent=2))


if __name__ == "__main__":
    main()
