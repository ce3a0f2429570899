"""Helpers for the swarm tests: boot `network.py` as a real process, look at its processes, clean up after it.

``Swarm.start`` runs `python network.py` with the scripted LLM (same node code as production, canned replies)
in a temporary run dir and waits for its ``swarm ready`` line. Every process seen under it (nodes, their DHT
children, p2pd) is remembered in ``SEEN`` so the session fixture can kill whatever a failing test left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rcp.launcher import CONTACT_FILE, process_tree
from rcp.settings import PROJECT_ROOT, load_settings

SCRIPTS = PROJECT_ROOT / "tests" / "scripts"
DELEGATE_TASK = "Write a Python module arith.py with functions add(a, b) and mul(a, b)"
SEEN: dict[int, str] = {}  # pid -> command line of every process a swarm test started, for the final sweep


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def remember(root: int) -> list[int]:
    pids = process_tree(root)
    for pid in pids:
        SEEN.setdefault(pid, cmdline(pid))
    return pids


def kill_leftovers() -> list[str]:
    """SIGKILL every remembered process that still runs the same command line (a reused pid is left alone)."""
    killed = []
    for pid, cmd in list(SEEN.items()):
        if cmd and alive(pid) and cmdline(pid) == cmd:
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid} ({cmd[:80]})")
    SEEN.clear()
    return killed


def slow_script(tmp: Path, delay: float) -> Path:
    """delegate.json with every part's code reply taking ``delay`` seconds, so a part can be caught mid-work."""
    script = json.loads((SCRIPTS / "delegate.json").read_text())
    for rule in script["rules"]:
        if "Your part: def" in rule["match"] and "rcp:code" in rule["match"]:
            rule["delay"] = delay
    path = tmp / "slow-delegate.json"
    path.write_text(json.dumps(script))
    return path


def scripted_env(run_dir: Path, script: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env.update({"RCP_LLM_BACKEND": "scripted", "RCP_LLM_SCRIPT": str(script), "RCP_RUN_DIR": str(run_dir),
                "RCP_LOG_LEVEL": "INFO", **extra})
    return env


class Swarm:
    """A `python network.py` process and what it reported."""

    def __init__(self, run_dir: Path, env: dict[str, str], num_nodes: int) -> None:
        self.run_dir = run_dir
        self.env = env
        self.num_nodes = num_nodes
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.ready_line = ""
        self.settings = load_settings({"run_dir": str(run_dir)}, environ={})

    def start(self, timeout: float = 90.0) -> Swarm:
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "network.py"),
                                      "--num-nodes", str(self.num_nodes)], cwd=PROJECT_ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        SEEN[self.proc.pid] = cmdline(self.proc.pid)
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("swarm ready:"):
                    self.ready_line = line.strip()
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(timeout)
        self.boot_seconds = time.monotonic() - started
        if not self.ready_line:
            self.stop()
            raise AssertionError(f"network.py was not ready within {timeout:.0f} s:\n" + "\n".join(self.lines[-30:]))
        self.pids()
        return self

    def contact(self) -> dict:
        return json.loads((self.run_dir / CONTACT_FILE).read_text())

    def pids(self) -> list[int]:
        """The launcher and every process under it, right now (also remembered for the final sweep)."""
        return remember(self.proc.pid) if self.proc is not None else []

    def node_pid(self, short: str) -> int:
        return next(n["pid"] for n in self.contact()["nodes"] if n["peer_id"].endswith(short))

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM the launcher and wait for it; returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        family = self.pids()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"network.py did not stop within {timeout:.0f} s of SIGTERM") from None
        seconds = time.monotonic() - started
        wait_gone(family)
        return seconds


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until ``pids`` are gone; returns those still running. The launcher's own torch_shm_manager (hivemind's
    shared-memory helper, in a session of its own) exits by itself ~1-2 s after the launcher."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# --- processes found by an environment tag (tests/test_faults.py) ----------------------------------------------
# A variable every process of one test run inherits (launcher, nodes, their DHT children, p2pd, torch_shm_manager,
# helper processes), so leftovers are found even after their parent died and they were re-parented to init.
# Not RCP_*: the settings loader refuses unknown RCP_ variables.
TAG_ENV = "RCPTEST_TAG"


def tagged(tag: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment has ``TAG_ENV=tag``."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(pid):
            found[pid] = cmdline(pid)
    return found


def wait_untagged(tag: str, timeout: float) -> dict[int, str]:
    """Wait until no process carries ``tag``; returns those still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


async def solve_replies(stream) -> list[dict]:
    """The messages of a raw ``rpc_solve`` stream up to its last one (an error or a result), then hang up.

    The node never closes a solve stream first (``rcp.rpc.LINGER_TIMEOUT``): the caller does, as this does.
    """
    replies = []
    async with contextlib.aclosing(stream):
        async for message in stream:
            replies.append(json.loads(message.value))
            if replies[-1]["type"] in ("error", "result"):
                break
    return replies
