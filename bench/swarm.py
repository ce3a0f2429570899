"""A `python network.py` swarm booted for a benchmark, and what can be read from it from the outside.

``BenchSwarm.boot(settings)`` starts the launcher with exactly ``settings`` (as ``RCP_*`` variables, in a run dir of
its own so it never meets a swarm the user is running), waits for its ``swarm ready`` line and parses boot time and
memory from it. ``sample_memory`` measures every node's process tree (node, DHT child, p2pd) as PSS;
``generations`` reads the per-call lines the nodes log at DEBUG (``chat call: P+C tokens in S s``), which is where
the swarm's generated tokens over time come from. ``stop`` sends SIGTERM and times the shutdown.

Deliberately left out: submitting tasks (``rcp.client`` does that) and anything needing a model (the settings
decide which backend the nodes load).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rcp.launcher import CONTACT_FILE, memory_mib, process_tree, settings_env
from rcp.settings import PROJECT_ROOT, Settings

READY = re.compile(r"swarm ready: (\d+)/(\d+) nodes in ([\d.]+) s .* memory (\d+) MiB/node, (\d+) MiB total")
# rcp.llm logs every call at DEBUG when it ends; rcp.llm's LlamaCppLLM logs a wait for a host slot over 1 s first.
CALL_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG rcp\.llm: (chat|structured) call: "
                       r"(\d+)\+(\d+) tokens in ([\d.]+) s")
SLOT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG rcp\.llm: waited ([\d.]+) s for a generation")


@dataclass
class Generation:
    """One LLM call as a node logged it: wall-clock ``start``/``end`` (epoch seconds) and its tokens."""

    node: str
    start: float
    end: float
    prompt_tokens: int
    completion_tokens: int


def log_time(stamp: str) -> float:
    """Epoch seconds of a logging ``asctime`` (local time, milliseconds after the comma)."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_generations(text: str, node: str = "") -> list[Generation]:
    """The calls in one node's log. A logged slot wait is cut off the front of the call that follows it.

    The logged duration still includes any wait for the node's own model lock (one generation at a time per
    node), so intervals are upper bounds when one node serves several parts at once.
    """
    out: list[Generation] = []
    waited = 0.0
    for line in text.splitlines():
        if m := SLOT_LINE.match(line):
            waited = float(m[2])
        elif m := CALL_LINE.match(line):
            end = log_time(m[1])
            seconds = float(m[5])
            # %.1f in the log: a call shorter than 0.05 s reads as 0.0
            start = end - max(0.0, seconds - waited)
            out.append(Generation(node, start, end, int(m[3]), int(m[4])))
            waited = 0.0
    return out


@dataclass
class BenchSwarm:
    settings: Settings
    proc: subprocess.Popen | None = None
    ready_s: float = 0.0
    boot_s: float = 0.0  # wall time from spawning the launcher to its ready line, as seen from here
    memory_mib_per_node: float = 0.0
    memory_mib_total: float = 0.0
    lines: list[str] = field(default_factory=list)
    peak_memory_mib_total: float = 0.0
    _sampler: threading.Thread | None = None
    _stop_sampling: threading.Event = field(default_factory=threading.Event)

    @property
    def run_dir(self) -> Path:
        return self.settings.run_path

    @classmethod
    def boot(cls, settings: Settings, timeout: float = 600.0) -> BenchSwarm:
        swarm = cls(settings)
        settings.run_path.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
        env.update(settings_env(settings))
        started = time.monotonic()
        err = open(settings.run_path / "launcher.log", "ab")  # noqa: SIM115 - handed to the child
        swarm.proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "network.py")], cwd=PROJECT_ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        ready = threading.Event()

        def read() -> None:
            for line in swarm.proc.stdout:
                swarm.lines.append(line.rstrip())
                if m := READY.match(line):
                    swarm.ready_s = float(m[3])
                    swarm.memory_mib_per_node, swarm.memory_mib_total = float(m[4]), float(m[5])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(timeout)
        swarm.boot_s = time.monotonic() - started
        if not swarm.ready_s:
            swarm.stop()
            tail = (settings.run_path / "launcher.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"network.py with {settings.num_nodes} nodes was not ready within {timeout:.0f} s: "
                               + " | ".join(tail))
        swarm.peak_memory_mib_total = swarm.memory_mib_total
        return swarm

    def contact(self) -> dict:
        return json.loads((self.run_dir / CONTACT_FILE).read_text())

    def sample_memory(self) -> list[float]:
        """PSS in MiB of each node's process tree, right now."""
        try:
            nodes = self.contact()["nodes"]
        except (OSError, ValueError, KeyError):
            return []
        return [memory_mib(process_tree(int(n["pid"]))) for n in nodes]

    def start_sampling(self, every: float = 5.0) -> None:
        """Track the peak total memory in a background thread until ``stop``."""
        def loop() -> None:
            while not self._stop_sampling.wait(every):
                self.peak_memory_mib_total = max(self.peak_memory_mib_total, sum(self.sample_memory()))

        self._sampler = threading.Thread(target=loop, daemon=True)
        self._sampler.start()

    def generations(self) -> list[Generation]:
        out: list[Generation] = []
        for path in sorted((self.run_dir / "logs").glob("node-*.log")):
            out += parse_generations(path.read_text(errors="replace"), path.stem)
        return out

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM the launcher (it stops every node and sweeps their containers); the seconds it took."""
        self._stop_sampling.set()
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # only the launcher; its nodes die with it (parent-death signal)
            self.proc.wait()
        return time.monotonic() - started
