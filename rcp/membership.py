"""Swarm membership: who is in the swarm, how busy each node is, and which peer to send work to.

Membership is a heartbeat, not a list. Every node stores a ``PeerRecord`` under one DHT key
(``MEMBERS_KEY``), one subkey per peer, with an expiration ``RECORD_TTL`` seconds ahead, and re-announces it
every ``HEARTBEAT_INTERVAL`` seconds. A killed node stops re-announcing and its record expires on its own;
a clean stop announces OFFLINE once so it leaves routing at once.

``PeerChooser`` picks where a (sub)task goes: among serving peers, the least loaded (queued work first,
then free slots, then what this process itself has in flight there), ties broken at random; a peer that
failed recently is banned for a while, with capped exponential backoff for repeat offenders.

``start_dht`` joins (or starts) the DHT so that its child process and that child's p2pd never outlive the
process that started them (a parent-death signal set at fork). It also locks the DHT to the swarm
(``rcp.access``): every DHT request and reply is MACed with the swarm key, and a record under ``MEMBERS_KEY`` is
stored only if the owner of the peer id it is filed under signed it, so no one can overwrite another's record.

Deliberately left out: the RPC wire (``rcp.rpc``) and what a node does with its work (``rcp.node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum

from pydantic import Field, ValidationError

from rcp.errors import InfrastructureError, SwarmUnavailableError
from rcp.records import Record

logger = logging.getLogger(__name__)

MEMBERSHIP_VERSION = 1
MEMBERS_KEY = "rcp.swarm.v1"  # one DHT key for the whole swarm; subkey = peer id, value = PeerRecord JSON + signature
HEARTBEAT_INTERVAL = 3.0  # seconds between re-announcements; a DHT store costs ~30 ms on loopback
# Three missed heartbeats (plus a second of slack for clock skew between machines) before a record expires:
# one lost store must not drop a live node, but a killed node should leave routing within ~10 s.
RECORD_TTL = 3 * HEARTBEAT_INTERVAL + 1.0
BAN_SECONDS = 30.0  # first ban of a failing peer; doubles per consecutive failure...
BAN_MAX_SECONDS = 300.0  # ...up to this cap, so a flapping peer is retried every 5 minutes at most
PEER_ID = r"^[1-9A-HJ-NP-Za-km-z]{20,128}$"  # base58, as libp2p prints peer ids


class NodeState(StrEnum):
    JOINING = "joining"  # in the DHT, not serving yet
    ONLINE = "online"  # serving, with a free generation slot
    # serving, every slot taken: subtasks sent here queue (never refused, so parents cannot deadlock); root tasks
    # from clients are refused only past MAX_ROOT_TASKS (see ``roots``)
    BUSY = "busy"
    OFFLINE = "offline"  # announced once on a clean stop


SERVING = (NodeState.ONLINE, NodeState.BUSY)


class PeerRecord(Record):
    """One node's heartbeat as stored in the DHT. Unknown fields are ignored, so newer peers can add some."""

    version: int = MEMBERSHIP_VERSION
    peer_id: str = Field(pattern=PEER_ID)
    state: NodeState
    model: str = Field(default="", max_length=256)
    free_slots: int = Field(default=0, ge=0, le=1024)  # generations this node could start right now
    queued: int = Field(default=0, ge=0, le=100000)  # (sub)tasks waiting here for a generation slot
    active: int = Field(default=0, ge=0, le=100000)  # (sub)tasks here, including parents waiting on children
    roots: int = Field(default=0, ge=0, le=100000)  # root tasks (submitted by clients) running here
    max_roots: int = Field(default=0, ge=0, le=100000)  # MAX_ROOT_TASKS: more root tasks get a "busy" reply
    maddrs: list[str] = Field(default_factory=list, max_length=16)  # where to dial it (also usable as initial peers)
    pid: int | None = None
    started_at: float = 0.0
    software: str = Field(default="", max_length=64)

    @property
    def short(self) -> str:
        return short_id(self.peer_id)


def short_id(peer_id: object) -> str:
    """The tail of a base58 peer id: every libp2p Ed25519 id starts with the same '12D3KooW', the end differs."""
    return str(peer_id)[-8:]


async def announce(dht, record: PeerRecord, ttl: float = RECORD_TTL) -> bool:
    """Store ``record`` under the swarm key, expiring ``ttl`` seconds from now. False if no DHT peer took it."""
    from hivemind.utils import get_dht_time

    future = dht.store(MEMBERS_KEY, record.model_dump_json(), expiration_time=get_dht_time() + ttl,
                       subkey=record.peer_id, return_future=True)
    return bool(await future)


async def fetch_peers(dht, *, include_offline: bool = False) -> list[PeerRecord]:
    """Every unexpired, well-formed peer record in the swarm. Malformed records are skipped (and logged)."""
    found = await dht.get(MEMBERS_KEY, latest=True, return_future=True)
    if found is None or not isinstance(found.value, dict):
        return []
    peers = []
    for subkey, item in found.value.items():
        try:
            record = PeerRecord.model_validate_json(item.value)
        except (ValidationError, TypeError, ValueError) as e:
            logger.debug("skipping malformed swarm record under %r: %s", subkey, e)
            continue
        # The subkey is what a node claims for itself; a record filed under someone else's id is ignored.
        if record.peer_id != subkey or record.version != MEMBERSHIP_VERSION:
            continue
        if include_offline or record.state != NodeState.OFFLINE:
            peers.append(record)
    return sorted(peers, key=lambda r: r.peer_id)


async def wait_for_peers(dht, count: int, timeout: float, *, states: Sequence[NodeState] = SERVING,
                         expected: Iterable[str] | None = None, poll: float = 0.25) -> list[PeerRecord]:
    """Poll the DHT until ``count`` peers (or every id in ``expected``) are in ``states``; raise on timeout."""
    want = set(expected) if expected is not None else None
    deadline = time.monotonic() + timeout
    peers: list[PeerRecord] = []
    while True:
        peers = [p for p in await fetch_peers(dht) if p.state in states]
        if want is not None:
            if want <= {p.peer_id for p in peers}:
                return [p for p in peers if p.peer_id in want]
        elif len(peers) >= count:
            return peers
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{p.short}={p.state.value}" for p in peers) or "none"
            raise SwarmUnavailableError(f"only {len(peers)} of {count} nodes became ready within {timeout:.0f} s "
                                        f"(seen: {seen}); see the node logs")
        await asyncio.sleep(poll)


class PeerChooser:
    """Least-loaded peer choice with random tie-break and a temporary ban on peers that failed.

    Load comes from the peers' heartbeats (up to ``HEARTBEAT_INTERVAL`` old) plus what this process itself has
    sent to each peer and not yet got back, so two subtasks sent in the same second go to different peers.
    """

    def __init__(self, *, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._banned_until: dict[str, float] = {}
        self._strikes: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

    def ban(self, peer_id: str) -> float:
        """Avoid ``peer_id`` for a while; returns the ban's length in seconds."""
        strikes = self._strikes.get(peer_id, 0) + 1
        self._strikes[peer_id] = strikes
        seconds = min(BAN_SECONDS * 2 ** (strikes - 1), BAN_MAX_SECONDS)
        self._banned_until[peer_id] = self._clock() + seconds
        return seconds

    def succeeded(self, peer_id: str) -> None:
        self._strikes.pop(peer_id, None)
        self._banned_until.pop(peer_id, None)

    def is_banned(self, peer_id: str) -> bool:
        until = self._banned_until.get(peer_id)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[peer_id]
            return False
        return True

    def sent(self, peer_id: str) -> None:
        self._in_flight[peer_id] = self._in_flight.get(peer_id, 0) + 1

    def returned(self, peer_id: str) -> None:
        left = self._in_flight.get(peer_id, 0) - 1
        if left > 0:
            self._in_flight[peer_id] = left
        else:
            self._in_flight.pop(peer_id, None)

    def load(self, peer: PeerRecord) -> tuple[int, int]:
        """Smaller is better: work waiting there (including ours in flight), then fewer free slots."""
        mine = self._in_flight.get(peer.peer_id, 0)
        waiting = peer.queued + max(0, mine - peer.free_slots)
        return waiting, -max(0, peer.free_slots - mine)

    def choose(self, peers: Iterable[PeerRecord], *, exclude: Iterable[str] = ()) -> PeerRecord | None:
        """The least loaded serving peer that is neither excluded nor banned, or None."""
        skip = set(exclude)
        candidates = [p for p in peers if p.state in SERVING and p.peer_id not in skip
                      and not self.is_banned(p.peer_id)]
        if not candidates:
            return None
        best = min(self.load(p) for p in candidates)
        return self._rng.choice([p for p in candidates if self.load(p) == best])


# --- joining the DHT without leaving processes behind -------------------------------------------------------

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_fork_hook_installed = False


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when the thread that forked it dies. No-op off Linux."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        logger.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def _after_fork_in_child() -> None:
    set_parent_death_signal(signal.SIGKILL)
    # The parent's event loop may have put its own handlers on these signals (loop.add_signal_handler); a
    # forked child inherits them without the loop that serves them, so SIGTERM would be swallowed (the DHT
    # child then ignores terminate() and multiprocessing's exit hook waits for it forever) and child-exit
    # notifications would go to a loop that does not run here.
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_DFL)


def _install_fork_hook() -> None:
    """Every process forked from here (hivemind's DHT is a ForkProcess) dies with us.

    Why: hivemind's DHT child keeps running when its parent is SIGKILLed, and keeps its p2pd alive. The signal
    is armed in the child right after fork. p2pd itself needs nothing: it exits within ~2 s once its Python
    client (the DHT child) is gone (measured). The signal fires when the *forking thread* exits, so the DHT
    must be forked from the main thread (``start_dht`` does: only the wait runs in a worker thread).
    """
    global _fork_hook_installed
    if not _fork_hook_installed:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


async def start_dht(*, swarm_key: str, initial_peers: Sequence[str] = (),
                    host_maddrs: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",), announce_maddrs: Sequence[str] = (),
                    client_mode: bool = False, timeout: float = 60.0):
    """Start a hivemind DHT child process (a server, or a client that stores nothing) and wait until it is up.

    The DHT talks only to peers that hold ``swarm_key``, and its p2pd runs under a fresh Ed25519 identity this
    process made, so that its membership record can be signed (see ``rcp.access``).
    """
    import hivemind

    from rcp.access import Identity, MembershipValidator, SwarmKeyAuthorizer

    if not swarm_key:
        raise ValueError("start_dht needs the swarm key")
    _install_fork_hook()
    identity = Identity()
    kwargs = dict(initial_peers=list(initial_peers) or None, host_maddrs=list(host_maddrs), client_mode=client_mode,
                  authorizer=SwarmKeyAuthorizer(swarm_key),
                  record_validators=[MembershipValidator(MEMBERS_KEY, identity)],
                  # The key file exists before p2pd starts, which would make hivemind spend a second p2pd on
                  # checking that nobody else uses this identity: a fresh random key is unused.
                  check_if_identity_free=False,
                  # No UPnP: a node never opens ports in the user's router by itself; HOST_MADDRS says where to listen.
                  nat_port_map=False)
    if announce_maddrs:
        kwargs["announce_maddrs"] = list(announce_maddrs)
    dht = None
    with identity.key_file() as key_path:  # p2pd reads it at start; removed once the DHT is up (or failed)
        try:
            dht = hivemind.DHT(start=True, await_ready=False, identity_path=key_path, **kwargs)
            # The fork happened above on this (main) thread; only the blocking wait moves to a worker thread.
            await asyncio.to_thread(dht.wait_until_ready, timeout)
        except BaseException as e:
            if dht is not None:  # cancelled or failed after the fork: the child must not outlive this call
                await stop_dht(dht)
            if not isinstance(e, Exception):
                raise
            where = ", ".join(initial_peers) if initial_peers else ", ".join(host_maddrs)
            what = "join the swarm at" if initial_peers else "start a DHT on"
            hint = ("is the swarm running (python network.py), are these addresses current, and is SWARM_KEY the "
                    "swarm's key? (its nodes answer only holders of the key)" if initial_peers
                    else "is each HOST_MADDRS entry a multiaddr such as /ip4/127.0.0.1/tcp/0, and is its port free?")
            detail = (str(e).splitlines() or [""])[0]
            raise InfrastructureError(f"cannot {what} {where}: {type(e).__name__}: {detail}; {hint}") from e
    return dht


async def stop_dht(dht) -> None:
    """Shut the DHT child down (it waits up to 3 s, then terminates it). Never raises."""
    try:
        await asyncio.to_thread(dht.shutdown)
    except Exception as e:  # shutdown is best effort: the parent-death signal still reaps the child
        logger.debug("DHT shutdown: %r", e)
