"""The launcher behind `python network.py`: start NUM_NODES node processes, supervise them, stop them all.

Start-up: node 0 starts (a new swarm, or joining INITIAL_PEERS); once it is ONLINE the others start in
parallel and join through its multiaddrs. Each node is a `python node.py` child in its own session (so one
``killpg`` reaches its DHT child and p2pd too), logging to ``<run_dir>/logs/node-N.log``, and dies with the
launcher (a parent-death signal). The launcher then joins the DHT as a client, waits until every node's
heartbeat says ONLINE, writes the contact file ``<run_dir>/swarm.json`` (atomically) for ``submit_task.py``,
and prints one ``swarm ready: N/N nodes ...`` line.

Supervision: a node that exits is reported, its process group is killed (leftover DHT child, p2pd), the contact
file is rewritten without it (clients never join through a dead node's address), and it is restarted with capped
exponential backoff, joining through the live nodes. Ctrl-C or SIGTERM sends SIGTERM to every node (they announce
OFFLINE), SIGKILLs each process group after a grace period, removes sandbox containers of dead nodes and the
contact file. A second Ctrl-C skips the grace period. A contact file left by a launcher that was killed is removed
at start, so no client tries to join the old run's nodes.

A start-up failure (model missing, Docker down, port in use, bad settings, a RUN_DIR that is not a writable
directory) stops the launch with one line: the failing node's own error line, read from its log.

Also here: helpers the entry points share (logging set-up, atomic JSON files). Deliberately left out: anything
a single node does (``rcp.node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcp.errors import InfrastructureError, RcpError
from rcp.membership import short_id, start_dht, stop_dht, wait_for_peers
from rcp.settings import FIELDS, PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

CONTACT_FILE = "swarm.json"
CONTACT_VERSION = 1
NODE_SCRIPT = PROJECT_ROOT / "node.py"
# A node imports hivemind (~4 s, torch) and loads its model (1.5B: ~2 s alone); six doing both at once on two
# cores take several times longer, so the limit is generous. It only bounds how long a hung start goes unnoticed.
READY_TIMEOUT = 180.0
DISCOVERY_TIMEOUT = 30.0  # seconds for every ready node's heartbeat to show up in the launcher's DHT view
SHUTDOWN_GRACE = 8.0  # seconds nodes get to announce OFFLINE and stop; node shutdown takes ~1-3 s
RESTART_BACKOFF = 1.0  # first restart delay; doubles per consecutive crash...
RESTART_BACKOFF_MAX = 30.0  # ...up to this cap
STRAGGLER_GRACE = 4.0  # seconds for helpers outside a node's process group (torch_shm_manager) to exit alone
SUPERVISE_POLL = 0.25  # seconds between checks that each node process is alive
STABLE_AFTER = 60.0  # a node that ran this long before dying counts as healthy: its backoff starts over


# --- helpers shared by the entry points ---------------------------------------------------------------------


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # bench.swarm and bench.programs parse it


def configure_logging(level: str = "INFO") -> None:
    """One stderr handler on the root logger; hivemind's records go through it too (no second format)."""
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr, format=LOG_FORMAT, force=True)
    from hivemind.utils.logging import use_hivemind_log_handler

    use_hivemind_log_handler("nowhere")
    if level != "DEBUG":  # p2pd's and the DHT's chatter is only useful when debugging
        logging.getLogger("hivemind").setLevel(max(logging.WARNING, getattr(logging, level)))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one. Mode 0600: the contact file
    holds the swarm key."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        os.fchmod(f.fileno(), 0o600)  # a tmp file left by a crash keeps its old mode through O_CREAT
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def settings_env(settings: Settings) -> dict[str, str]:
    """The resolved settings as RCP_* variables, so child processes run with exactly the launcher's values."""
    env = {}
    for name in FIELDS:
        value = getattr(settings, name)
        env["RCP_" + name.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


def offset_port(maddr: str, offset: int) -> str:
    """``/ip4/127.0.0.1/tcp/31337`` -> port 31337+offset; port 0 (any free port) stays 0."""
    parts = maddr.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("tcp", "udp") and parts[i + 1].isdigit() and int(parts[i + 1]) != 0:
            parts[i + 1] = str(int(parts[i + 1]) + offset)
    return "/".join(parts)


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants, from /proc (no psutil dependency)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_mib(pids: list[int]) -> float:
    """Proportional set size (shared pages split between sharers) of ``pids``, in MiB; RSS if PSS is unreadable."""
    total_kib = 0
    for pid in pids:
        for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
            try:
                line = next(ln for ln in Path(path).read_text().splitlines() if ln.startswith(key))
            except (OSError, StopIteration):
                continue
            total_kib += int(line.split()[1])
            break
    return total_kib / 1024


def _cmdline(pid: int) -> str:
    """The command line of a live process ('' if gone or a zombie)."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return ""
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def read_contact(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / CONTACT_FILE).read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the launcher -------------------------------------------------------------------------------------------


class StartupError(InfrastructureError):
    """A node could not start; the message is its own error line."""


@dataclass
class NodeProcess:
    index: int
    log_path: Path
    ready_path: Path
    proc: subprocess.Popen | None = None
    peer_id: str = ""
    maddrs: list[str] = field(default_factory=list)
    started: float = 0.0
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Launcher:
    def __init__(self, settings: Settings) -> None:
        from rcp.access import launcher_swarm_key  # imports hivemind: not at module level, helpers import this one

        settings = launcher_swarm_key(settings)  # SWARM_KEY, or a new one for this swarm; nodes get it in their env
        self.settings = settings
        self.run_dir = settings.run_path
        self.log_dir = self.run_dir / "logs"
        self.nodes = [NodeProcess(i, self.log_dir / f"node-{i}.log", self.run_dir / f".node-{i}.ready.json")
                      for i in range(settings.num_nodes)]
        self.dht = None
        self.stopping = asyncio.Event()
        self.hurry = False
        self.started = time.monotonic()
        self.started_at = time.time()
        self.ready_seconds: float | None = None

    # --- process control ---

    async def _spawn(self, node: NodeProcess, initial_peers: list[str]) -> None:
        node.ready_path.unlink(missing_ok=True)
        s = self.settings
        args = [sys.executable, str(NODE_SCRIPT), "--ready-file", str(node.ready_path),
                "--exit-with-parent", str(os.getpid()), "--initial-peers", *initial_peers,
                "--host-maddrs", *[offset_port(m, node.index) for m in s.host_maddrs],
                "--announce-maddrs", *[offset_port(m, node.index) for m in s.announce_maddrs]]
        env = {**os.environ, **settings_env(s)}
        with open(node.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {node.name} ---\n".encode())
            log.flush()
            # A session of its own: Ctrl-C in the terminal reaches only the launcher (which stops nodes in order),
            # and killpg(pid) later reaches the node's DHT child and p2pd even if the node itself is gone.
            # Plain Popen and polling, not the event loop's subprocess support: uvloop's (libuv's) SIGCHLD
            # handling is inherited by the DHT child forked later, which then never sees its own p2pd exit and
            # hangs at shutdown (measured: the launcher's DHT needed terminate() every time).
            node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=PROJECT_ROOT, start_new_session=True)
        node.started = time.monotonic()
        node.peer_id, node.maddrs = "", []
        logger.debug("%s started as pid %d", node.name, node.proc.pid)

    async def _wait_ready(self, node: NodeProcess) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if node.ready_path.exists():
                info = json.loads(node.ready_path.read_text())
                node.peer_id, node.maddrs = info["peer_id"], info["maddrs"]
                return
            if node.proc.poll() is not None:
                raise StartupError(f"{node.name} failed to start: {self._error_line(node)} (log: {node.log_path})")
            if time.monotonic() > deadline:
                raise StartupError(f"{node.name} was not ready after {READY_TIMEOUT:.0f} s; see {node.log_path}")
            await asyncio.sleep(0.1)

    def _error_line(self, node: NodeProcess) -> str:
        """The node's own one-line error (``error: ...``), else its last log line."""
        try:
            lines = [ln.strip() for ln in node.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: "):]
        return lines[-1] if lines else f"exited with code {node.proc.returncode} and no output"

    async def _start_nodes(self) -> None:
        first, rest = self.nodes[0], self.nodes[1:]
        await self._spawn(first, list(self.settings.initial_peers))
        await self._wait_ready(first)
        logger.info("%s online as %s after %.1f s; starting %d more", first.name, short_id(first.peer_id),
                    time.monotonic() - self.started, len(rest))
        for node in rest:
            await self._spawn(node, first.maddrs)
        await asyncio.gather(*(self._wait_ready(node) for node in rest))

    async def _stop_nodes(self) -> None:
        live = [n for n in self.nodes if n.alive]
        # Snapshot now: torch's shared-memory helper (torch_shm_manager, started by hivemind's MPFuture) runs in
        # a session of its own, so killpg misses it; it exits by itself ~1-2 s after its clients, and is
        # SIGKILLed below only if it does not (killing it first could leave its /dev/shm files behind).
        family = {pid: _cmdline(pid) for n in live for pid in process_tree(n.proc.pid)}
        for node in live:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + (0 if self.hurry else SHUTDOWN_GRACE)
        while any(n.alive for n in live) and time.monotonic() < deadline and not self.hurry:
            await asyncio.sleep(0.1)
        late = [n.name for n in live if n.alive]
        if late:
            logger.warning("%s did not stop within %.0f s; killing", ", ".join(late), SHUTDOWN_GRACE)
        for node in self.nodes:
            if node.proc is not None:
                kill_group(node.proc.pid)  # the node, and whatever it left: DHT child, p2pd
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(node.proc.wait, 5.0)
        deadline = time.monotonic() + (0 if self.hurry else STRAGGLER_GRACE)
        while time.monotonic() < deadline and any(_cmdline(pid) == cmd for pid, cmd in family.items()):
            await asyncio.sleep(0.1)
        for pid, cmd in family.items():
            if cmd and _cmdline(pid) == cmd:  # same pid, same command line: still ours, not a reused pid
                logger.warning("killing leftover process %d (%s)", pid, cmd[:60])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # --- the swarm's life ---

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_signal)
        loop.add_signal_handler(signal.SIGINT, self._on_signal)
        self._check_run_dir()
        try:  # before anything that would clean up in it: a file in the way must be one line, not a traceback
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StartupError(f"cannot use RUN_DIR {self.run_dir}: {e.strerror or e}; set RUN_DIR to a writable "
                               f"directory") from None
        try:
            starting = asyncio.create_task(self._boot())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                print("swarm start interrupted; stopped", file=sys.stderr)
                return 130
            starting.result()
            async with asyncio.TaskGroup() as supervisors:
                for node in self.nodes:
                    supervisors.create_task(self._supervise(node))
            return 0
        finally:
            stopped = time.monotonic()
            await self._stop_nodes()
            if self.dht is not None:
                await stop_dht(self.dht)
            await asyncio.to_thread(_sweep_containers)
            self._remove_contact()
            for node in self.nodes:
                node.ready_path.unlink(missing_ok=True)
            if self.stopping.is_set():
                print(f"swarm stopped: {len(self.nodes)} nodes shut down in {time.monotonic() - stopped:.1f} s",
                      file=sys.stderr)

    def _on_signal(self) -> None:
        if self.stopping.is_set():
            self.hurry = True  # second Ctrl-C: no grace period
            for node in self.nodes:
                if node.proc is not None:
                    kill_group(node.proc.pid)
            return
        print("stopping the swarm (Ctrl-C again to kill at once)...", file=sys.stderr)
        self.stopping.set()

    async def _boot(self) -> None:
        await self._start_nodes()
        self.dht = await start_dht(swarm_key=self.settings.swarm_key,
                                   initial_peers=[m for n in self.nodes for m in n.maddrs], client_mode=True)
        peers = await wait_for_peers(self.dht, len(self.nodes), DISCOVERY_TIMEOUT,
                                     expected=[n.peer_id for n in self.nodes])
        self.ready_seconds = time.monotonic() - self.started
        self._write_contact()
        mems = [memory_mib(process_tree(n.proc.pid)) for n in self.nodes]
        models = sorted({p.model for p in peers})
        print(f"swarm ready: {len(peers)}/{len(self.nodes)} nodes in {self.ready_seconds:.1f} s · "
              f"model {', '.join(models)} · peers {' '.join(short_id(n.peer_id) for n in self.nodes)} · "
              f"memory {sum(mems) / len(mems):.0f} MiB/node, {sum(mems):.0f} MiB total (PSS incl. DHT and p2pd)",
              flush=True)
        print(f"contact file {self.run_dir / CONTACT_FILE}; logs in {self.log_dir}/; "
              f'send a task with: python submit_task.py "..."; Ctrl-C stops the swarm', flush=True)

    async def _supervise(self, node: NodeProcess) -> None:
        backoff = RESTART_BACKOFF
        while True:
            while node.alive and not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), SUPERVISE_POLL)
            if self.stopping.is_set():
                return
            code = node.proc.returncode
            kill_group(node.proc.pid)  # its DHT child and p2pd, if anything of it is left
            self._write_contact()  # without the dead node: a client must not pick its address to join through
            if time.monotonic() - node.started > STABLE_AFTER:
                backoff = RESTART_BACKOFF
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            logger.warning("%s (pid %d, peer %s) %s; restarting it in %.0f s", node.name, node.proc.pid,
                           short_id(node.peer_id), how, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
                return
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
            node.restarts += 1
            peers = [m for n in self.nodes if n is not node and n.alive for m in n.maddrs]
            await self._spawn(node, peers or list(self.settings.initial_peers))
            try:
                await self._wait_ready(node)
            except StartupError as e:
                logger.warning("restart failed: %s", e)
                continue
            logger.info("%s back online as %s (restart %d)", node.name, short_id(node.peer_id), node.restarts)
            self._write_contact()

    # --- the contact file ---

    def _check_run_dir(self) -> None:
        contact = read_contact(self.run_dir)
        if not contact or not contact.get("launcher_pid"):
            return
        pid = int(contact["launcher_pid"])
        if pid != os.getpid() and pid_alive(pid):
            raise StartupError(f"a swarm is already running from {self.run_dir} (launcher pid {pid}); stop it first "
                               f"or set RUN_DIR to another directory")
        # Its launcher was killed: the addresses and key in it are a dead swarm's. Until ours is ready, a client
        # must find no contact file ("start one") rather than try to join the old run's nodes.
        logger.info("removing the contact file of a swarm that is gone (launcher pid %d)", pid)
        with contextlib.suppress(OSError):
            (self.run_dir / CONTACT_FILE).unlink()

    def _write_contact(self) -> None:
        nodes = [{"index": n.index, "pid": n.proc.pid, "peer_id": n.peer_id, "maddrs": n.maddrs,
                  "log": str(n.log_path), "restarts": n.restarts} for n in self.nodes if n.peer_id and n.alive]
        write_json_atomic(self.run_dir / CONTACT_FILE, {
            "version": CONTACT_VERSION, "launcher_pid": os.getpid(), "started_at": self.started_at,
            "swarm_key": self.settings.swarm_key,  # what submit_task.py proves itself with; the file is mode 0600
            "ready_seconds": self.ready_seconds, "initial_peers": [m for n in nodes for m in n["maddrs"]],
            "nodes": nodes})

    def _remove_contact(self) -> None:
        contact = read_contact(self.run_dir)
        if contact and contact.get("launcher_pid") == os.getpid():
            (self.run_dir / CONTACT_FILE).unlink(missing_ok=True)


def _sweep_containers() -> None:
    """Remove sandbox containers whose node is gone (a SIGKILLed node cannot remove its own). Never raises."""
    try:
        from rcp.sandbox import sweep_leftovers
        from rcp.sandbox_image import docker_client

        client = docker_client()
        try:
            sweep_leftovers(client)
        finally:
            client.close()
    except Exception as e:  # no Docker means no containers to leave behind
        logger.debug("sandbox sweep skipped: %r", e)


def run_swarm(settings: Settings) -> int:
    """The main of `python network.py`: 0 after a clean stop, 1 when the swarm could not start."""
    import uvloop

    try:
        return uvloop.run(Launcher(settings).run())
    except (RcpError, BaseExceptionGroup) as e:
        error: BaseException = e
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        if not isinstance(error, RcpError):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
