"""The client behind `python submit_task.py "TASK"`: find the swarm, send a task, show its tree, report.

``connect`` finds the swarm (INITIAL_PEERS, else the contact file ``network.py`` wrote) and joins the DHT as a
client (it stores nothing and serves nothing). ``submit`` picks the entry node (the least loaded serving one,
or the one ``--node`` names), streams the task's progress events to a callback and returns the result.
Leaving ``submit`` early (timeout, Ctrl-C, an exception) closes the stream, which cancels the task on the
entry node and, through it, every subtask it delegated.

``TaskTree`` turns events into a live ``rich`` tree of subtasks (node, decision, attempt, tests, elapsed); when
stderr is not a terminal the same events are printed as plain lines instead.

An entry node that refuses the task (busy), answers garbage, is unreachable or does not accept it within
``ACCEPT_TIMEOUT`` is skipped for another, as long as it sent no progress event: before that nothing has started.

The task text is checked before anything touches the network: empty, over ``MAX_TEXT`` characters, not UTF-8
text, or holding control characters (binary data) is a usage error.

Exit codes (``run``): 0 the final code passed its tests, 1 finished without passing code, 2 usage error,
3 no swarm reachable, or it failed or timed out mid-task.

Deliberately left out: retrying a root task on another node after it started (its subtree is already gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rcp.delegate import solve_watched
from rcp.errors import RcpError, SwarmUnavailableError
from rcp.membership import PeerChooser, PeerRecord, fetch_peers, short_id, start_dht, stop_dht
from rcp.records import MAX_TEXT, EventKind, ProgressEvent, TaskResult, TaskSpec
from rcp.rpc import PeerBusy, PeerUnavailable, RemoteError, RpcClient
from rcp.settings import Settings

logger = logging.getLogger(__name__)

EXIT_PASSED, EXIT_UNSOLVED, EXIT_USAGE, EXIT_SWARM = 0, 1, 2, 3
DISCOVERY_WAIT = 15.0  # seconds to wait for a serving node's heartbeat after joining (a fresh swarm needs ~1 s)
RESULT_GRACE = 10.0  # seconds past --timeout to wait for the result: the entry node ends the task by itself first
# Entry nodes tried that failed before starting the task (unreachable, garbage, silent); busy ones do not count.
# Each costs at most ACCEPT_TIMEOUT; three covers a dead node whose record has not expired yet plus one broken node.
ENTRY_ATTEMPTS = 3
# C0 control characters other than tab, newline and carriage return, and DEL: never in a task someone typed or
# pasted, always in binary data. (Lone surrogates, from bytes that are not UTF-8, are checked apart.)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class UsageError(RcpError):
    """The arguments cannot make a task (exit code 2)."""


# --- finding and joining the swarm --------------------------------------------------------------------------


def initial_peers(settings: Settings) -> list[str]:
    """INITIAL_PEERS if set, else every multiaddr in the contact file; raises when neither exists."""
    if settings.initial_peers:
        return list(settings.initial_peers)
    from rcp.launcher import CONTACT_FILE, pid_alive, read_contact

    path = settings.run_path / CONTACT_FILE
    contact = read_contact(settings.run_path)
    if contact is None:
        raise SwarmUnavailableError(f"no swarm found: {path} does not exist; start one with `python network.py` "
                                    f"or pass --initial-peers MULTIADDR")
    launcher = contact.get("launcher_pid")
    if isinstance(launcher, int) and not pid_alive(launcher):
        # A launcher that was SIGKILLed (or a crashed machine) leaves its contact file behind; its addresses and
        # key belong to a swarm that is gone, and joining them would only time out.
        raise SwarmUnavailableError(f"the swarm in {path} is not running (its network.py, pid {launcher}, is gone); "
                                    f"start it again with `python network.py`")
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
        from rcp.access import client_swarm_key

        peers = initial_peers(settings)
        key = client_swarm_key(settings)  # SWARM_KEY, else the contact file's
        dht = await start_dht(swarm_key=key, initial_peers=peers, client_mode=True)
        try:
            p2p = await dht.replicate_p2p()
        except BaseException:
            await stop_dht(dht)
            raise
        return cls(dht=dht, rpc=RpcClient(p2p, key))

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


def task_text(data: bytes) -> str:
    """A task read as bytes (stdin, a file) as text; ``UsageError`` if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"the task is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         f"describe what to build in plain words") from None


def root_spec(task: str, settings: Settings, timeout: float) -> TaskSpec:
    task = task.strip()
    if not task:
        raise UsageError('the task is empty; describe what to build, e.g. submit_task.py "Write is_prime(n)"')
    # Arguments that are not UTF-8 arrive as lone surrogates (Python's surrogateescape), which cannot be sent.
    bad = next((i for i, ch in enumerate(task) if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        raise UsageError(f"the task is not UTF-8 text (undecodable byte at character {bad}); describe what to "
                         f"build in plain words")
    if m := _CONTROL.search(task):
        raise UsageError(f"the task holds a control character ({m.group()!r} at character {m.start()}), so it "
                         f"looks like binary data; describe what to build in plain words")
    if len(task) > MAX_TEXT:
        raise UsageError(f"the task is {len(task)} characters; the limit is {MAX_TEXT}")
    try:
        return TaskSpec(goal=task, root_task=task, timeout_s=timeout, llm_calls=settings.max_llm_calls)
    except ValidationError as e:  # e.g. a --timeout beyond the protocol's week: one line, not a traceback
        err = e.errors()[0]
        what = {"timeout_s": f"--timeout {timeout:g}"}.get(str(err["loc"][0]) if err["loc"] else "", "the task")
        raise UsageError(f"{what}: {err['msg']}") from None


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
    busy: list[str] = []
    broken: list[str] = []  # "node: reason" of entry nodes that failed before the task started
    while True:
        left = [p for p in peers if p.peer_id not in tried]
        if tried and (node or not left or len(broken) >= ENTRY_ATTEMPTS):  # no other node to try: say why
            raise _not_taken(busy, broken, node)
        entry = pick_entry(left, node, chooser)
        tried.append(entry.peer_id)
        if on_entry is not None:
            on_entry(entry)
        try:
            result = await solve_watched(conn.rpc, entry.peer_id, spec, record)
            return Submission(result=result, entry=entry.peer_id, seconds=time.monotonic() - started,
                              events=events)
        except PeerBusy:  # refused before it started anything: safe to try every other node
            busy.append(entry.short)
            logger.warning("entry node %s is busy (MAX_ROOT_TASKS root tasks running); trying another", entry.short)
        except (PeerUnavailable, RemoteError) as e:
            # Re-sending is safe only if the node never started: a started task has a subtree we cannot adopt.
            if events:
                if isinstance(e, PeerUnavailable):
                    raise SwarmUnavailableError(f"the swarm failed mid-task: {e}") from e
                raise SwarmUnavailableError(f"the entry node failed the task: {e}") from e
            broken.append(f"{entry.short}: {e}")
            logger.warning("entry node %s did not take the task (%s); trying another", entry.short, e)


def _not_taken(busy: list[str], broken: list[str], node: str | None) -> SwarmUnavailableError:
    """The one-line reason no entry node took the task."""
    if not broken:  # every node (or the one asked for) refused: say so
        where = f"node {busy[0]} is" if node else f"all {len(busy)} nodes ({', '.join(busy)}) are"
        return SwarmUnavailableError(f"{where} busy with their maximum of root tasks (MAX_ROOT_TASKS); "
                                     f"try again later")
    also = f"; {len(busy)} more busy (MAX_ROOT_TASKS)" if busy else ""
    return SwarmUnavailableError(f"no entry node took the task: {'; '.join(broken)}{also}"[:3000])


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
