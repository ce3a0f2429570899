"""The solver's delegate: send a subtask to another node of the swarm and stream its progress back.

``SwarmDelegate`` is the ``Delegate`` callable ``rcp.solver.Solver`` takes. For each subtask it picks the
least loaded serving peer other than this node (``PeerChooser``), calls its ``solve`` RPC with a
``TASK_TIMEOUT`` deadline and forwards the child's progress events to the parent's ``emit``. When the peer
dies, answers with an error or garbage, does not accept the subtask within ``ACCEPT_TIMEOUT`` (a live node sends
its ``accepted`` event at once) or hangs past the deadline, the peer is banned for a while and the subtask goes
to another peer, up to ``DELEGATE_ATTEMPTS`` peers. When no peer works it raises, and the solver solves the
part locally.

No deadlock by construction: a node never refuses or caps incoming subtasks (they queue for its generation
slot; only root tasks from clients meet MAX_ROOT_TASKS), and a parent waiting here holds no slot, so children
always find somewhere to run.

``solve_watched`` (the accept deadline around ``RpcClient.solve``) is shared with the client's choice of entry node.

Deliberately left out: solving itself, and retrying on this node (the solver's local fallback does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from rcp.errors import SwarmUnavailableError
from rcp.membership import PeerChooser, PeerRecord, fetch_peers, short_id
from rcp.records import EventKind, ProgressEvent, TaskResult, TaskSpec
from rcp.rpc import PeerUnavailable, RemoteError, RpcClient

logger = logging.getLogger(__name__)

# Two peers, then local: a third remote try rarely helps when two have failed (the swarm is likely sick),
# and each try may cost up to TASK_TIMEOUT, so the local fallback must not come too late.
DELEGATE_ATTEMPTS = 2
PEERS_TIMEOUT = 5.0  # seconds to read the swarm's records before using the last list seen
# A live node sends its `accepted` event as the first thing its solver does, right after the stream opens (an RPC
# round trip is ~1 ms on loopback, p95 19 ms while the model generates). A peer silent for this long is hung or
# not a real node: without this bound a hung peer would hold a part for the whole TASK_TIMEOUT (15 min default).
ACCEPT_TIMEOUT = 10.0


async def solve_watched(rpc: RpcClient, peer: str, spec: TaskSpec, on_event: Callable[[ProgressEvent], object],
                        accept_timeout: float = ACCEPT_TIMEOUT) -> TaskResult:
    """``rpc.solve``, but a peer that sends nothing at all within ``accept_timeout`` raises ``PeerUnavailable``.

    Closing the call (the raise, or cancelling this coroutine) closes the stream, which cancels the work there.
    """
    accepted = asyncio.Event()

    def forward(event: ProgressEvent) -> None:
        accepted.set()
        on_event(event)

    call = asyncio.ensure_future(rpc.solve(peer, spec, forward))
    first = asyncio.ensure_future(accepted.wait())
    try:
        await asyncio.wait({call, first}, timeout=accept_timeout, return_when=asyncio.FIRST_COMPLETED)
        if not call.done() and not accepted.is_set():
            raise PeerUnavailable(f"peer {short_id(peer)} did not accept the task within {accept_timeout:.0f} s "
                                  f"(hung, or not a working node)")
        return await call
    finally:
        first.cancel()
        if not call.done():
            call.cancel()
            with contextlib.suppress(BaseException):
                await call


class SwarmDelegate:
    def __init__(self, *, rpc: RpcClient, dht, chooser: PeerChooser, self_id: str, task_timeout: float,
                 on_waiting: Callable[[int], None] | None = None, attempts: int = DELEGATE_ATTEMPTS) -> None:
        self.rpc = rpc
        self.dht = dht
        self.chooser = chooser
        self.self_id = self_id
        self.name = short_id(self_id)
        self.task_timeout = task_timeout
        self.attempts = attempts
        self._on_waiting = on_waiting or (lambda delta: None)
        self._last_peers: list[PeerRecord] = []

    async def peers(self) -> list[PeerRecord]:
        """Serving peers from the DHT; on a slow or failing DHT read, the last list seen."""
        try:
            self._last_peers = await asyncio.wait_for(fetch_peers(self.dht), PEERS_TIMEOUT)
        except Exception as e:  # stale routing beats no routing: the RPC itself will tell if a peer is gone
            logger.warning("reading the swarm's records failed (%s: %s); using the last %d peers seen",
                           type(e).__name__, e, len(self._last_peers))
        return self._last_peers

    async def __call__(self, spec: TaskSpec, emit: Callable[[ProgressEvent], None]) -> TaskResult:
        tried: set[str] = {self.self_id}
        failures: list[str] = []
        timeout = min(self.task_timeout, spec.timeout_s)
        for _ in range(self.attempts):
            peer = self.chooser.choose(await self.peers(), exclude=tried)
            if peer is None:
                break
            tried.add(peer.peer_id)
            part = spec.contract.name if spec.contract is not None else "task"
            emit(self._event(spec, EventKind.DELEGATED, f"{part} sent to node {peer.short}"))
            started = time.monotonic()
            self.chooser.sent(peer.peer_id)
            self._on_waiting(+1)
            try:
                async with asyncio.timeout(timeout):
                    result = await solve_watched(self.rpc, peer.peer_id, spec, emit, min(ACCEPT_TIMEOUT, timeout))
            except TimeoutError:
                reason = f"no result within TASK_TIMEOUT = {timeout:.0f} s"
            except (PeerUnavailable, RemoteError) as e:
                reason = str(e)
            else:
                self.chooser.succeeded(peer.peer_id)
                return result
            finally:
                self.chooser.returned(peer.peer_id)
                self._on_waiting(-1)
            ban = self.chooser.ban(peer.peer_id)
            failures.append(f"{peer.short}: {reason}")
            logger.warning("subtask %s on node %s failed after %.1f s: %s; node avoided for %.0f s",
                           spec.task_id, peer.short, time.monotonic() - started, reason, ban)
            emit(self._event(spec, EventKind.FALLBACK, f"node {peer.short} failed: {reason}"[:4000]))
        if not failures:
            raise SwarmUnavailableError(f"no other node is available for subtask {spec.task_id}")
        raise SwarmUnavailableError(f"subtask {spec.task_id} failed on {len(failures)} node(s): "
                                    + "; ".join(failures)[:3000])

    def _event(self, spec: TaskSpec, kind: EventKind, message: str) -> ProgressEvent:
        return ProgressEvent(task_id=spec.task_id, parent_id=spec.parent_id, depth=spec.depth, node=self.name,
                             kind=kind, message=message)
