"""The client behind `python submit_task.py "TASK"`: find the swarm, send a task, show its tree, report.

``connect`` finds the swarm (INITIAL_PEERS, else the contact file ``network.py`` wrote) and joins the DHT as a
client (it stores nothing and serves nothing). ``submit`` picks the entry node (the least loaded serving one,
or the one ``--node`` names), streams the task's progress events to a callback and returns the result.
Leaving ``submit`` early (timeout, Ctrl-C, an exception) closes the stream, which cancels the task on the
entry node and, through it, every subtask it delegated.

``TaskTree`` turns events into a live ``rich`` tree of subtasks (node, decision, attempt, tests, elapsed); when
stderr is not a terminal the same events are printed as plain lines instead.

Exit codes (``run``): 0 the final code passed its tests, 1 finished without passing code, 2 usage error,
3 no swarm reachable, or it failed or timed out mid-task.

Deliberately left out: retrying a root task on another node after it started (its subtree is already gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rcp.errors import RcpError, SwarmUnavailableError
from rcp.membership import PeerChooser, PeerRecord, fetch_peers, short_id, start_dht, stop_dht
from rcp.records import MAX_TEXT, EventKind, ProgressEvent, TaskResult, TaskSpec
from rcp.rpc import PeerUnavailable, RemoteError, RpcClient
from rcp.settings import Settings

logger = logging.getLogger(__name__)

EXIT_PASSED, EXIT_UNSOLVED, EXIT_USAGE, EXIT_SWARM = 0, 1, 2, 3
DISCOVERY_WAIT = 15.0  # seconds to wait for a serving node's heartbeat after joining (a fresh swarm needs ~1 s)
RESULT_GRACE = 10.0  # seconds past --timeout to wait for the result: the entry node ends the task by itself first
ENTRY_ATTEMPTS = 2  # entry nodes tried when the stream cannot even be opened


class UsageError(RcpError):
    """The arguments cannot make a task (exit code 2)."""


# --- finding and joining the swarm --------------------------------------------------------------------------


def initial_peers(settings: Settings) -> list[str]:
    """INITIAL_PEERS if set, else every multiaddr in the contact file; raises when neither exists."""
    if settings.initial_peers:
        return list(settings.initial_peers)
    from rcp.launcher import CONTACT_FILE, read_contact

    path = settings.run_path / CONTACT_FILE
    contact = read_contact(settings.run_path)
    if contact is None:
        raise SwarmUnavailableError(f"no swarm found: {path} does not exist; start one with `python network.py` "
                                    f"or pass --initial-peers MULTIADDR")
    peers = [str(m) for m in contact.get("initial_peers") or []]
    if not peers:
        raise SwarmUnavailableError(f"the contact file {path} lists no nodes; restart `python network.py`")
    return peers


@dataclass
class Connection:
    dht: object
    rpc: RpcClient

    @classmethod
    async def open(cls, settings: Settings) -> Connection:
        peers = initial_peers(settings)
        dht = await start_dht(initial_peers=peers, client_mode=True)
        try:
            p2p = await dht.replicate_p2p()
        except BaseException:
            await stop_dht(dht)
            raise
        return cls(dht=dht, rpc=RpcClient(p2p))

    async def serving_peers(self, wait: float = DISCOVERY_WAIT) -> list[PeerRecord]:
        deadline = time.monotonic() + wait
        while True:
            peers = await fetch_peers(self.dht)
            if peers or time.monotonic() >= deadline:
                return peers
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.rpc.p2p.shutdown()
        await stop_dht(self.dht)


def pick_entry(peers: list[PeerRecord], wanted: str | None, chooser: PeerChooser) -> PeerRecord:
    """The node ``wanted`` names (full peer id, or its start or end), else the least loaded serving node."""
    if wanted:
        matches = [p for p in peers if p.peer_id == wanted or p.peer_id.endswith(wanted)
                   or p.peer_id.startswith(wanted)]
        if len(matches) != 1:
            known = ", ".join(p.short for p in peers) or "none"
            what = "matches no" if not matches else "matches more than one"
            raise SwarmUnavailableError(f"--node {wanted} {what} serving node; serving nodes: {known}")
        return matches[0]
    peer = chooser.choose(peers)
    if peer is None:
        raise SwarmUnavailableError("no node of the swarm is serving; check `python network.py` and its logs")
    return peer


# --- sending a task -----------------------------------------------------------------------------------------


@dataclass
class Submission:
    result: TaskResult
    entry: str  # peer id of the entry node
    seconds: float
    events: list[ProgressEvent] = field(default_factory=list)


def root_spec(task: str, settings: Settings, timeout: float) -> TaskSpec:
    task = task.strip()
    if not task:
        raise UsageError('the task is empty; describe what to build, e.g. submit_task.py "Write is_prime(n)"')
    if len(task) > MAX_TEXT:
        raise UsageError(f"the task is {len(task)} characters; the limit is {MAX_TEXT}")
    return TaskSpec(goal=task, root_task=task, timeout_s=timeout, llm_calls=settings.max_llm_calls)


async def submit(conn: Connection, spec: TaskSpec, *, node: str | None = None,
                 on_event: Callable[[ProgressEvent], None] | None = None,
                 on_entry: Callable[[PeerRecord], None] | None = None) -> Submission:
    """Send ``spec`` to an entry node and wait for its result; cancelling this cancels the task swarm-wide."""
    started = time.monotonic()
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    peers = await conn.serving_peers()
    chooser = PeerChooser()
    tried: list[str] = []
    while True:
        entry = pick_entry([p for p in peers if p.peer_id not in tried], node, chooser)
        tried.append(entry.peer_id)
        if on_entry is not None:
            on_entry(entry)
        try:
            result = await conn.rpc.solve(entry.peer_id, spec, record)
            return Submission(result=result, entry=entry.peer_id, seconds=time.monotonic() - started,
                              events=events)
        except PeerUnavailable as e:
            # Re-sending is safe only if the node never started: a started task has a subtree we cannot adopt.
            if events or node or len(tried) >= ENTRY_ATTEMPTS:
                raise SwarmUnavailableError(f"the swarm failed mid-task: {e}") from e
            logger.warning("entry node %s unreachable (%s); trying another", entry.short, e)
        except RemoteError as e:
            raise SwarmUnavailableError(f"the entry node failed the task: {e}") from e


# --- showing progress ---------------------------------------------------------------------------------------


@dataclass
class _Row:
    task_id: str
    parent_id: str | None
    depth: int
    node: str = ""
    label: str = ""
    decision: str = ""
    attempt: int | None = None
    passed: int | None = None
    failed: int | None = None
    elapsed: float = 0.0
    status: str = ""
    done: bool = False
    solved: bool = False


class TaskTree:
    """The task tree as events describe it; ``render`` gives a ``rich`` renderable, ``line`` a plain line."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.started = time.monotonic()

    def update(self, ev: ProgressEvent) -> None:
        row = self.rows.get(ev.task_id)
        if row is None:
            row = self.rows[ev.task_id] = _Row(ev.task_id, ev.parent_id, ev.depth)
        if ev.node and ev.kind != EventKind.DELEGATED:
            row.node = ev.node
        row.elapsed = max(row.elapsed, ev.elapsed_s)
        if ev.attempt is not None:
            row.attempt = ev.attempt
        if ev.tests_passed is not None or ev.tests_failed is not None:
            row.passed, row.failed = ev.tests_passed, ev.tests_failed
        if ev.kind == EventKind.DELEGATED and " sent to node " in ev.message:
            row.label = ev.message.split(" sent to node ")[0]  # the part's name, from the delegating parent
        if ev.kind == EventKind.DECIDED:
            row.decision = ev.message.split(":", 1)[0]
        if ev.kind == EventKind.RESULT:
            row.done, row.solved = True, ev.message.startswith("solved")
        row.status = f"{ev.kind.value}: {ev.message}"[:100]

    def render(self):
        from rich.text import Text
        from rich.tree import Tree

        roots = [r for r in self.rows.values() if r.parent_id not in self.rows]
        top = Tree(Text(f"task · {time.monotonic() - self.started:.0f} s", style="bold"))

        def add(parent, row: _Row) -> None:
            branch = parent.add(self._text(row))
            for child in self.rows.values():
                if child.parent_id == row.task_id:
                    add(branch, child)

        for row in roots:
            add(top, row)
        return top

    def _text(self, row: _Row):
        from rich.text import Text

        style = "green" if row.solved else ("red" if row.done else "")
        text = Text(f"{row.label or row.task_id} ", style="bold " + style)
        text.append(f"@{row.node or '?'} ", style="cyan")
        for part in (row.decision, f"attempt {row.attempt}" if row.attempt else "", self._tests(row),
                     f"{row.elapsed:.1f} s"):
            if part:
                text.append(part + "  ")
        text.append(row.status, style="dim" if not row.done else style)
        return text

    @staticmethod
    def _tests(row: _Row) -> str:
        if row.passed is None and row.failed is None:
            return ""
        return f"tests {row.passed or 0} passed, {row.failed or 0} failed"

    def line(self, ev: ProgressEvent) -> str:
        extra = f" (attempt {ev.attempt})" if ev.attempt else ""
        if ev.tests_passed is not None or ev.tests_failed is not None:
            extra += f" [tests {ev.tests_passed or 0} passed, {ev.tests_failed or 0} failed]"
        return (f"{time.monotonic() - self.started:7.1f}s {'  ' * ev.depth}{ev.task_id} @{ev.node} "
                f"{ev.kind.value}{extra}: {ev.message}")


# --- the command --------------------------------------------------------------------------------------------


def write_outputs(out: Path, task: str, sub: Submission) -> None:
    """The result's files, the tests they passed and ``trace.json`` (the task tree and every event)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sub.result.files.items():
        if text:
            (out / name).write_text(text)
    trace = {"task": task, "task_id": sub.result.task_id, "solved": sub.result.solved,
             "verdict": sub.result.verdict, "entry_node": sub.entry, "seconds": round(sub.seconds, 3),
             "trace": sub.result.trace.model_dump(mode="json"),
             "events": [e.model_dump(mode="json") for e in sub.events]}
    (out / "trace.json").write_text(json.dumps(trace, indent=2) + "\n")


async def run(settings: Settings, task: str, *, node: str | None = None, timeout: float | None = None,
              out: Path | None = None, as_json: bool = False) -> int:
    """The whole of `submit_task.py`: returns the exit code, prints the outcome."""
    from rich.console import Console

    timeout = timeout or settings.submit_timeout
    spec = root_spec(task, settings, timeout)  # usage errors before touching the network
    err = Console(stderr=True)
    tree = TaskTree()
    live_view = err.is_terminal and not as_json

    def on_event(ev: ProgressEvent) -> None:
        tree.update(ev)
        if live_view:
            live.update(tree.render())
        else:
            print(tree.line(ev), file=sys.stderr, flush=True)

    def on_entry(peer: PeerRecord) -> None:
        print(f"sending task {spec.task_id} to node {peer.short} ({peer.state.value}, {peer.active} active)",
              file=sys.stderr, flush=True)

    conn = await Connection.open(settings)
    try:
        from rich.live import Live

        with Live(tree.render(), console=err, refresh_per_second=4, transient=False,
                  auto_refresh=True) if live_view else contextlib.nullcontext() as live:
            try:
                async with asyncio.timeout(timeout + RESULT_GRACE):
                    sub = await submit(conn, spec, node=node, on_event=on_event, on_entry=on_entry)
            except TimeoutError:
                raise SwarmUnavailableError(f"no result within --timeout {timeout:.0f} s; the task was cancelled "
                                            f"on the swarm") from None
    finally:
        await conn.close()
    result = sub.result
    if out is not None:
        write_outputs(out, task, sub)
    code = EXIT_PASSED if result.solved else EXIT_UNSOLVED
    if as_json:
        print(json.dumps({"task_id": result.task_id, "solved": result.solved, "verdict": result.verdict,
                          "exit_code": code, "entry_node": sub.entry, "seconds": round(sub.seconds, 3),
                          "module": result.module, "files": result.files,
                          "trace": result.trace.model_dump(mode="json")}, indent=2))
        return code
    out_console = Console()
    if result.code.strip():
        from rich.syntax import Syntax

        out_console.rule(f"{result.module}.py")
        if out_console.is_terminal:
            out_console.print(Syntax(result.code, "python"))
        else:
            print(result.code.rstrip())
    where = f"; files in {out}" if out is not None else ""
    mark = "PASSED" if result.solved else "NOT PASSED"
    print(f"{mark}: {result.verdict} ({sub.seconds:.1f} s, entry node {short_id(sub.entry)}{where})", flush=True)
    return code
