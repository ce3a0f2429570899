"""RPC between swarm processes over hivemind's libp2p: ``info`` (unary) and ``solve`` (a stream).

Transport: the DHT's own p2p daemon, reached through ``dht.replicate_p2p()``; ``SwarmServicer`` is a hivemind
``ServicerBase`` whose typed ``rpc_*`` methods become handlers, and its derived stub is used by callers.
Every message is a ``google.protobuf.BytesValue`` holding the JSON of one versioned pydantic record below;
nothing is ever pickled.

* ``info``: ``InfoRequest`` in, ``InfoReply`` (the node's live ``PeerRecord`` and counters) out.
* ``solve``: ``SolveRequest`` (a ``TaskSpec``) in, a stream of ``SolveMessage`` out: progress events, ending
  with exactly one result or error, after which the caller hangs up (the node never closes first: see
  ``LINGER_TIMEOUT``). Closing the stream early (the caller gave up, timed out or died) cancels
  the solve on the serving node, which closes the streams of its own children, and so on down the tree.

Every request carries a ``Proof`` (``rcp.access``) that its caller holds the swarm key, made for this caller
(as libp2p authenticated it), this node and this method; without a valid one the reply is ``unauthorized``.
A node already running ``MAX_ROOT_TASKS`` root tasks answers another root task ``busy`` (subtasks from peers are
never refused, so delegation cannot deadlock); callers see ``PeerBusy`` and try elsewhere.

Input that is oversized, not JSON of the right record (a reply sent as a request, an info request sent to
``solve``...), or of an unknown protocol version gets an ``ErrorReply`` and the node keeps serving. Bytes that
are not even a protobuf are refused by hivemind's framing (a unary call gets an error, a stream is closed) before
they reach us. The request is parsed (bounded by its size) before its proof is checked, so that a malformed
request gets a precise answer; nothing is done with it before the check.

Deliberately left out: choosing peers (``rcp.membership``), what solving means (``rcp.solver``), retries
(``rcp.delegate``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator as AsyncIteratorABC
from collections.abc import Callable
from contextlib import aclosing
from typing import Annotated, AsyncIterator, Literal, Protocol  # noqa: UP035 - hivemind reads typing.AsyncIterator

from google.protobuf.wrappers_pb2 import BytesValue
from hivemind.p2p import P2PContext, PeerID, ServicerBase
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from rcp.access import Proof, ProofChecker, make_proof
from rcp.errors import RcpError
from rcp.membership import PeerRecord, short_id
from rcp.records import PROTOCOL_VERSION, ProgressEvent, Record, TaskResult, TaskSpec

logger = logging.getLogger(__name__)

RPC_VERSION = 1
NAMESPACE = "rcp"  # handler names become "rcp::SwarmServicer.rpc_solve", apart from hivemind's own
# A TaskSpec is bounded by its field limits at a few MB in theory; real ones are < 100 kB. 2 MiB matches the
# largest unary payload hivemind's p2pd bindings accept, so both handlers refuse at the same size.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
INFO_TIMEOUT = 5.0  # seconds; an info round trip is ~1 ms on loopback, a peer this slow is as good as gone
LINGER_TIMEOUT = 30.0  # seconds a node keeps a solve stream open after its last message, for the caller to hang up


class RemoteError(RcpError):
    """The peer answered with an ``ErrorReply`` (it is alive; the request or its work failed)."""

    def __init__(self, code: str, message: str, peer: str = "") -> None:
        super().__init__(f"peer {short_id(peer)} answered {code}: {message}" if peer else f"{code}: {message}")
        self.code = code


class PeerUnavailable(RcpError):
    """The peer could not be reached, or its stream broke before it sent a result (it died or hung up)."""


class ShuttingDown(RcpError):
    """The node is stopping and takes no new work."""


class NodeBusy(RcpError):
    """The node already runs its maximum of root tasks (``MAX_ROOT_TASKS``); the client should try another node."""


class PeerBusy(RemoteError):
    """The peer answered ``busy``: it runs its maximum of root tasks. It is alive; send the task elsewhere."""


# --- wire records -------------------------------------------------------------------------------------------


class InfoRequest(Record):
    type: Literal["info"] = "info"
    version: int = RPC_VERSION
    auth: Proof | None = None  # optional here so that a request without one gets "unauthorized", not "malformed"


class SolveRequest(Record):
    type: Literal["solve"] = "solve"
    version: int = RPC_VERSION
    auth: Proof | None = None
    spec: TaskSpec


class ErrorReply(Record):
    type: Literal["error"] = "error"
    version: int = RPC_VERSION
    code: Literal["malformed", "too_large", "unsupported_version", "unauthorized", "busy", "failed", "shutting_down"]
    message: str = Field(default="", max_length=4096)


class InfoReply(Record):
    type: Literal["info"] = "info"
    version: int = RPC_VERSION
    node: PeerRecord
    uptime_s: float = 0.0
    solves_started: int = 0
    solves_finished: int = 0
    solves_cancelled: int = 0


class SolveMessage(Record):
    """One item of a solve stream: exactly one of ``event`` / ``result`` is set (``type`` says which)."""

    type: Literal["event", "result"]
    version: int = RPC_VERSION
    event: ProgressEvent | None = None
    result: TaskResult | None = None


_info_reply = TypeAdapter(Annotated[InfoReply | ErrorReply, Field(discriminator="type")])
_solve_item = TypeAdapter(Annotated[SolveMessage | ErrorReply, Field(discriminator="type")])


def encode(record: BaseModel) -> BytesValue:
    return BytesValue(value=record.model_dump_json().encode())


def parse_request(data: bytes, model: type[Record]) -> Record | ErrorReply:
    """The request record, or the ``ErrorReply`` that tells the caller what was wrong with it."""
    if len(data) > MAX_REQUEST_BYTES:
        return ErrorReply(code="too_large", message=f"request is {len(data)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        # The version is read before the full validation, so a future peer gets "unsupported version" and not a
        # confusing field error about a record it built correctly for its own protocol.
        head = _VersionOnly.model_validate_json(data)
    except ValidationError as e:
        return ErrorReply(code="malformed", message=f"not a JSON request record: {_first_error(e)}")
    if head.version != RPC_VERSION:
        return ErrorReply(code="unsupported_version",
                          message=f"RPC version {head.version} is not supported; this node speaks {RPC_VERSION}")
    try:
        request = model.model_validate_json(data)
    except ValidationError as e:
        return ErrorReply(code="malformed", message=f"bad {model.__name__}: {_first_error(e)}")
    spec = getattr(request, "spec", None)
    if spec is not None and spec.version != PROTOCOL_VERSION:
        return ErrorReply(code="unsupported_version", message=f"TaskSpec version {spec.version} is not supported; "
                                                              f"this node speaks {PROTOCOL_VERSION}")
    return request


class _VersionOnly(BaseModel):
    version: int


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{where}: {err['msg']}"[:500]


# --- serving ------------------------------------------------------------------------------------------------


class SwarmHandler(Protocol):
    """What a node supplies to the servicer."""

    def info(self) -> InfoReply: ...

    def solve(self, spec: TaskSpec, remote: str) -> AsyncIteratorABC[ProgressEvent | TaskResult]:
        """Progress events, then the final result; raising ends the stream with an ``ErrorReply``."""


class SwarmServicer(ServicerBase):
    """The typed RPC handlers; ``get_stub`` (from ``ServicerBase``) derives the caller side."""

    def __init__(self, handler: SwarmHandler, *, swarm_key: str, peer_id: str) -> None:
        self.handler = handler
        self.guard = ProofChecker(swarm_key, peer_id)

    def _admit(self, data: bytes, model: type[Record], method: str, context: P2PContext) -> Record | ErrorReply:
        parsed = parse_request(data, model)
        if not isinstance(parsed, ErrorReply):
            refusal = self.guard.check(parsed.auth, method, str(context.remote_id))
            if refusal is not None:
                parsed = ErrorReply(code="unauthorized", message=refusal)
        if isinstance(parsed, ErrorReply):
            logger.warning("refused %s %s request from %s: %s", "an" if method == "info" else "a", method,
                           short_id(context.remote_id), parsed.message)
        return parsed

    async def rpc_info(self, request: BytesValue, context: P2PContext) -> BytesValue:
        parsed = self._admit(request.value, InfoRequest, "info", context)
        if isinstance(parsed, ErrorReply):
            return encode(parsed)
        return encode(self.handler.info())

    async def rpc_solve(self, request: BytesValue, context: P2PContext) -> AsyncIterator[BytesValue]:
        async with aclosing(self._solve(request, context)) as messages:
            async for message in messages:
                yield message
        # The caller hangs up once it has read the last message; hanging up first can lose that message. Under load
        # p2pd sometimes drops a reply written just before its stream closes: the caller then sees an empty stream
        # (measured: about 1 immediate "busy" reply in 8,000 on a loaded machine; none in 54,000 with this wait).
        # hivemind cancels this handler when the caller closes, so the wait costs nothing but a sleeping coroutine.
        await asyncio.sleep(LINGER_TIMEOUT)

    async def _solve(self, request: BytesValue, context: P2PContext) -> AsyncIterator[BytesValue]:
        parsed = self._admit(request.value, SolveRequest, "solve", context)
        if isinstance(parsed, ErrorReply):
            yield encode(parsed)
            return
        try:
            async with aclosing(self.handler.solve(parsed.spec, str(context.remote_id))) as items:
                async for item in items:
                    if isinstance(item, TaskResult):
                        yield encode(SolveMessage(type="result", result=item))
                    else:
                        yield encode(SolveMessage(type="event", event=item))
        except NodeBusy as e:
            logger.info("refused root task %s from %s: %s", parsed.spec.task_id, short_id(context.remote_id), e)
            yield encode(ErrorReply(code="busy", message=str(e)[:4096]))
        except Exception as e:  # the caller gets one line; hivemind would otherwise log a traceback and hang up
            logger.warning("solve %s failed: %s: %s", parsed.spec.task_id, type(e).__name__, e)
            logger.debug("solve failure", exc_info=True)
            code = "shutting_down" if isinstance(e, ShuttingDown) else "failed"
            yield encode(ErrorReply(code=code, message=f"{type(e).__name__}: {e}"[:4096]))


# --- calling ------------------------------------------------------------------------------------------------


class RpcClient:
    """Calls ``info`` and ``solve`` on other peers through one process's p2p handle, proving the swarm key."""

    def __init__(self, p2p, swarm_key: str) -> None:
        self.p2p = p2p
        self.swarm_key = swarm_key
        self.peer_id = str(p2p.peer_id)

    def proof(self, method: str, peer: str) -> Proof:
        return make_proof(self.swarm_key, method, self.peer_id, peer)

    def _stub(self, peer: str):
        return SwarmServicer.get_stub(self.p2p, PeerID.from_base58(peer), namespace=NAMESPACE)

    async def info(self, peer: str, timeout: float = INFO_TIMEOUT) -> InfoReply:
        try:
            reply = await self._stub(peer).rpc_info(encode(InfoRequest(auth=self.proof("info", peer))),
                                                    timeout=timeout)
        except TimeoutError as e:
            raise PeerUnavailable(f"peer {short_id(peer)} did not answer info within {timeout:.0f} s") from e
        except Exception as e:
            raise PeerUnavailable(f"peer {short_id(peer)} unreachable: {type(e).__name__}: {e}") from e
        return _decode(_info_reply, reply, peer)

    async def solve(self, peer: str, spec: TaskSpec, on_event: Callable[[ProgressEvent], object]) -> TaskResult:
        """Run ``spec`` on ``peer``, passing its progress events to ``on_event``; return its result.

        Raises ``PeerUnavailable`` if the stream cannot be opened or ends without a result, ``PeerBusy`` if the peer
        runs its maximum of root tasks, and ``RemoteError`` if the peer reports another failure. Cancelling this
        coroutine closes the stream, which cancels the remote work.
        """
        try:
            stream = await self._stub(peer).rpc_solve(encode(SolveRequest(auth=self.proof("solve", peer), spec=spec)))
        except Exception as e:
            raise PeerUnavailable(f"peer {short_id(peer)} unreachable: {type(e).__name__}: {e}") from e
        try:
            async with aclosing(stream) as messages:
                async for raw in messages:
                    message = _decode(_solve_item, raw, peer)
                    if message.type == "event":
                        on_event(message.event)
                    else:
                        return message.result
        except RemoteError:
            raise
        except Exception as e:  # a broken stream surfaces as P2PHandlerError, ConnectionError, IncompleteRead...
            raise PeerUnavailable(f"stream from peer {short_id(peer)} broke: {type(e).__name__}: {e}") from e
        raise PeerUnavailable(f"peer {short_id(peer)} hung up before sending a result (did it die?)")


def _decode(adapter: TypeAdapter, raw: BytesValue, peer: str):
    try:
        message = adapter.validate_json(raw.value)
    except ValidationError as e:
        raise RemoteError("malformed", f"unreadable reply: {_first_error(e)}", peer) from e
    if isinstance(message, ErrorReply):
        raise (PeerBusy if message.code == "busy" else RemoteError)(message.code, message.message, peer)
    return message
