"""One swarm node: a DHT peer that serves ``solve`` and ``info`` with a local model, sandbox and solver.

``await Node.create(settings)`` loads the LLM (``create_llm``) and the Docker sandbox first, so a missing model
or a dead Docker fails before anything touches the network; then it joins the DHT (or starts one), announces
JOINING, registers the RPC handlers, announces ONLINE and starts its background jobs (heartbeat, DHT watch)
under one ``asyncio.TaskGroup``. ``await node.shutdown()`` announces OFFLINE, cancels the work in progress and
releases everything; it never raises.

Subtasks are never refused: every ``solve`` from a peer runs at once as its own task, and generations queue on
the model (one at a time). A parent waiting for delegated children holds no slot, so recursive delegation cannot
deadlock. Root tasks (from clients) are admitted up to ``MAX_ROOT_TASKS`` at once; one more gets a ``busy`` reply
and the client tries another node. The heartbeat reports the load: a node with a running generation is BUSY,
with the solves beyond it as ``queued``, and its root tasks as ``roots`` of ``max_roots``.

Only holders of the swarm key get in (``rcp.access``): the DHT and the RPC handlers check it on every message.

``run`` is the node process's main: one uvloop event loop, SIGTERM/SIGINT stop it cleanly, and an optional
ready file tells the launcher the node is ONLINE.

Deliberately left out: argument parsing and logging set-up (``node.py``), spawning many nodes (``rcp.launcher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from rcp import __version__
from rcp.access import node_swarm_key
from rcp.delegate import SwarmDelegate
from rcp.errors import InfrastructureError, RcpError
from rcp.launcher import write_json_atomic
from rcp.llm import LLM
from rcp.membership import (
    HEARTBEAT_INTERVAL,
    NodeState,
    PeerChooser,
    PeerRecord,
    announce,
    short_id,
    start_dht,
    stop_dht,
)
from rcp.records import ProgressEvent, TaskResult, TaskSpec
from rcp.rpc import NAMESPACE, InfoReply, NodeBusy, RpcClient, ShuttingDown, SwarmServicer
from rcp.sandbox import Sandbox
from rcp.settings import Settings

logger = logging.getLogger(__name__)

# Generations one node runs at once: a llama model generates one reply at a time (see rcp.llm), so a second
# solve on the same node waits for the first one's LLM call. Used only to report load, never to refuse work.
SLOTS = 1
POKE_GAP = 0.5  # seconds: a load change re-announces early, but bursts of changes coalesce into one store
DHT_WATCH_INTERVAL = 2.0  # seconds between checks that the DHT child process is still alive
OFFLINE_TIMEOUT = 2.0  # seconds to spend announcing OFFLINE at shutdown; the record expires anyway
CANCEL_TIMEOUT = 3.0  # seconds for cancelled solves to unwind (close child streams, kill sandbox runs)


class _Done:
    """Marks the end of a solve's event queue."""


class Node:
    """Use ``await Node.create(...)``; see the module docstring."""

    def __init__(self, settings: Settings, *, llm: LLM, sandbox: Sandbox, dht, p2p, swarm_key: str) -> None:
        self.settings = settings
        self.swarm_key = swarm_key
        self.llm = llm
        self.sandbox = sandbox
        self.dht = dht
        self.p2p = p2p
        self.peer_id = str(p2p.peer_id)
        self.name = short_id(self.peer_id)
        self.maddrs: list[str] = []
        self.state = NodeState.JOINING
        self.started_at = time.time()
        self.rpc = RpcClient(p2p, swarm_key)
        self.chooser = PeerChooser()
        self.active = 0  # solves running here
        self.roots = 0  # of which root tasks (admitted up to settings.max_root_tasks)
        self.waiting = 0  # delegated subtasks this node's solves are waiting for
        self.solves_started = self.solves_finished = self.solves_cancelled = 0
        self._solves: set[asyncio.Task] = set()
        self._poked = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._closed = False
        self.delegate = SwarmDelegate(rpc=self.rpc, dht=dht, chooser=self.chooser, self_id=self.peer_id,
                                      task_timeout=settings.task_timeout, on_waiting=self._waiting_changed)
        from rcp.solver import Solver  # imported late: the solver pulls in prompts and parsing only nodes need

        self.solver = Solver(llm, sandbox, settings, node=self.name, delegate=self.delegate)

    @classmethod
    async def create(cls, settings: Settings, *, llm: LLM | None = None, sandbox: Sandbox | None = None) -> Node:
        """Load the model and sandbox, join the swarm and start serving. Raises ``RcpError`` subclasses."""
        owned: list = []
        key = node_swarm_key(settings)  # a node that would listen beyond loopback without a key stops here, first
        try:
            if llm is None:
                from rcp.llm import create_llm

                llm = await create_llm(settings)
                owned.append(llm)
            if sandbox is None:
                from rcp.sandbox import DockerSandbox, SandboxLimits

                sandbox = await DockerSandbox.create(settings.sandbox_image, SandboxLimits.from_settings(settings))
                owned.append(sandbox)
            dht = await start_dht(swarm_key=key, initial_peers=settings.initial_peers,
                                  host_maddrs=settings.host_maddrs, announce_maddrs=settings.announce_maddrs)
            owned.append(dht)
            p2p = await dht.replicate_p2p()
            node = cls(settings, llm=llm, sandbox=sandbox, dht=dht, p2p=p2p, swarm_key=key)
        except BaseException:
            for thing in reversed(owned):
                await _close(thing)
            raise
        try:
            await node._start()
        except BaseException:
            await node.shutdown()
            raise
        return node

    async def _start(self) -> None:
        self.maddrs = [str(m) for m in await self.p2p.get_visible_maddrs()]
        await announce(self.dht, self.record())
        await SwarmServicer(self, swarm_key=self.swarm_key, peer_id=self.peer_id).add_p2p_handlers(
            self.p2p, namespace=NAMESPACE)
        self.state = NodeState.ONLINE
        if not await announce(self.dht, self.record()):
            logger.warning("no DHT peer stored this node's first heartbeat; retrying every %.0f s", HEARTBEAT_INTERVAL)
        self._runner = asyncio.create_task(self._background(), name=f"node-{self.name}")
        logger.info("node %s online: model %s, listening on %s", self.name, self.llm.name, ", ".join(self.maddrs))

    # --- load and heartbeat ---

    def record(self) -> PeerRecord:
        working = max(0, self.active - self.waiting)
        free = max(0, SLOTS - working)
        state = self.state
        if state == NodeState.ONLINE and free == 0:
            state = NodeState.BUSY
        return PeerRecord(peer_id=self.peer_id, state=state, model=self.llm.name, free_slots=free,
                          queued=max(0, working - SLOTS), active=self.active, roots=self.roots,
                          max_roots=self.settings.max_root_tasks, maddrs=self.maddrs[:16],
                          pid=os.getpid(), started_at=self.started_at, software=f"rcp {__version__}")

    def info(self) -> InfoReply:
        return InfoReply(node=self.record(), uptime_s=time.time() - self.started_at,
                         solves_started=self.solves_started, solves_finished=self.solves_finished,
                         solves_cancelled=self.solves_cancelled)

    def _waiting_changed(self, delta: int) -> None:
        self.waiting += delta
        self._poked.set()

    async def _background(self) -> None:
        async with asyncio.TaskGroup() as jobs:
            jobs.create_task(self._heartbeat(), name="heartbeat")
            jobs.create_task(self._watch_dht(), name="dht-watch")

    async def _heartbeat(self) -> None:
        while True:
            started = time.monotonic()
            try:
                stored = await asyncio.wait_for(announce(self.dht, self.record()), HEARTBEAT_INTERVAL)
                if not stored:
                    logger.warning("heartbeat not stored by any DHT peer; retrying in %.0f s", HEARTBEAT_INTERVAL)
            except Exception as e:  # one lost heartbeat is survivable: the record lives for three intervals
                logger.warning("heartbeat failed: %s: %s", type(e).__name__, e)
            took = time.monotonic() - started
            if took > HEARTBEAT_INTERVAL:
                logger.warning("heartbeat took %.1f s, longer than its %.0f s interval", took, HEARTBEAT_INTERVAL)
            self._poked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), max(0.0, HEARTBEAT_INTERVAL - took))
                await asyncio.sleep(POKE_GAP)

    async def _watch_dht(self) -> None:
        # Without its DHT process a node can neither be found nor reach peers; exiting lets the launcher restart it.
        while self.dht.is_alive():
            await asyncio.sleep(DHT_WATCH_INTERVAL)
        raise InfrastructureError(f"the DHT process of node {self.name} died (exit code {self.dht.exitcode}); "
                                  f"stopping so the launcher can restart the node")

    async def wait(self) -> None:
        """Return when the background jobs end; raises what crashed them (as an ``ExceptionGroup``)."""
        if self._runner is not None:
            await self._runner

    # --- serving ---

    async def solve(self, spec: TaskSpec, remote: str) -> AsyncIterator[ProgressEvent | TaskResult]:
        """Run ``spec`` here: its progress events, then its result. Closing the iterator cancels the work."""
        if self._closed or self.state not in (NodeState.ONLINE, NodeState.BUSY):
            raise ShuttingDown(f"node {self.name} is shutting down; send the task to another node")
        # A root task has no parent; a peer's subtask always has one. Counted and checked with no await in between,
        # so two submissions arriving together cannot both take the last place.
        root = spec.parent_id is None
        if root and self.roots >= self.settings.max_root_tasks:
            raise NodeBusy(f"node {self.name} is busy: it runs {self.roots} root tasks, its limit (MAX_ROOT_TASKS); "
                           f"send the task to another node or try again later")
        events: asyncio.Queue[ProgressEvent | type[_Done]] = asyncio.Queue()

        async def run() -> TaskResult:
            try:
                return await self.solver.solve(spec, events.put_nowait)
            finally:
                events.put_nowait(_Done)

        task = asyncio.create_task(run(), name=f"solve-{spec.task_id}")
        self._solves.add(task)
        self.active += 1
        self.roots += root
        self.solves_started += 1
        self._poked.set()
        logger.info("solving %s (depth %d) for %s: %s", spec.task_id, spec.depth, short_id(remote),
                    spec.goal.splitlines()[0][:100])
        started = time.monotonic()
        try:
            while (item := await events.get()) is not _Done:
                yield item
            result = task.result()  # the solver's exception, if any, goes to the caller as an error reply
            self.solves_finished += 1
            logger.info("finished %s in %.1f s: %s", spec.task_id, time.monotonic() - started, result.verdict)
            yield result
        finally:
            if not task.done():
                # The caller closed the stream: it gave up, timed out or died. Cancelling the solve closes the
                # streams of its delegated children in turn, so the whole subtree stops.
                self.solves_cancelled += 1
                logger.info("cancelling %s after %.1f s: the caller went away", spec.task_id,
                            time.monotonic() - started)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, CANCEL_TIMEOUT)
            self._solves.discard(task)
            self.active -= 1
            self.roots -= root
            self._poked.set()

    # --- stopping ---

    async def shutdown(self) -> None:
        """Announce OFFLINE, stop the work in progress, release the DHT, sandbox and model. Never raises."""
        if self._closed:
            return
        self._closed = True
        if self.state in (NodeState.ONLINE, NodeState.BUSY):
            self.state = NodeState.OFFLINE
            try:
                await asyncio.wait_for(announce(self.dht, self.record()), OFFLINE_TIMEOUT)
            except Exception as e:  # the record expires within RECORD_TTL anyway
                logger.debug("OFFLINE announcement failed: %r", e)
        self.state = NodeState.OFFLINE
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
        for task in list(self._solves):
            task.cancel()
        if self._solves:
            await asyncio.wait(list(self._solves), timeout=CANCEL_TIMEOUT)
        for thing in (self.p2p, self.dht, self.sandbox, self.llm):
            await _close(thing)
        logger.info("node %s stopped after %d solves (%d cancelled)", self.name, self.solves_finished,
                    self.solves_cancelled)


async def _close(thing) -> None:
    """Release one resource; cleanup must never mask the error that led here."""
    try:
        if hasattr(thing, "replicate_p2p"):  # a hivemind DHT: a child process, not an async object
            await stop_dht(thing)
        elif hasattr(thing, "shutdown"):
            await thing.shutdown()
        else:
            await thing.close()
    except Exception as e:
        logger.warning("closing %s: %s: %s", type(thing).__name__, type(e).__name__, e)


# --- the node process ---------------------------------------------------------------------------------------


def run(settings: Settings, *, ready_file: str | None = None) -> int:
    """The main of one node process: create the node, serve until SIGTERM/SIGINT or a crash, shut down."""
    import uvloop

    return uvloop.run(_serve_node(settings, ready_file))


async def _serve_node(settings: Settings, ready_file: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    creating = asyncio.create_task(Node.create(settings))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({creating, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not creating.done():  # stopped while starting: cancel the start, which releases what it took so far
        creating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await creating
        return 0
    node = creating.result()  # raises the start-up error (one line for the user)
    if ready_file:
        write_json_atomic(Path(ready_file), {"peer_id": node.peer_id, "maddrs": node.maddrs, "pid": os.getpid()})
    running = asyncio.create_task(node.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    await node.shutdown()
    if running.done() and not running.cancelled() and running.exception() is not None:
        error = running.exception()
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error if isinstance(error, RcpError) else InfrastructureError(f"node crashed: {error!r}")
    return 0
