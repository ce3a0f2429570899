"""Who may use the swarm: one shared secret, the swarm key, checked at every door a node opens.

Threat model. Whoever can reach a node's port can open a libp2p connection to it: libp2p encrypts every
connection and proves the remote *peer id*, but any process can make itself a fresh peer id. Without more, such a
process could read the member list, plant or overwrite membership records, and send ``solve`` requests that make
the node generate code and run it in its sandbox. So, by default:

* Nodes listen on loopback only (``HOST_MADDRS``); listening elsewhere is refused without an explicit
  ``SWARM_KEY`` (``node_swarm_key``) or warned about loudly (``launcher_swarm_key``).
* Every swarm has a key: ``SWARM_KEY`` if set, else ``network.py`` draws a random one per swarm, hands it to its
  nodes in their environment and writes it into the contact file (mode 0600) where ``submit_task.py`` reads it.
* RPC (``rcp.rpc``): every request carries a ``Proof``, an HMAC under the key over (method, caller's peer id,
  callee's peer id, time, nonce). The node checks the caller id against the one libp2p authenticated for the
  stream (``context.remote_id``), so a proof another peer captured is worthless; time and nonce stop replays.
* DHT: hivemind's DHT protocol takes an authorizer. ``SwarmKeyAuthorizer`` MACs every DHT request and reply, so
  a process without the key can neither read nor store anything, nor feed forged answers to a node.
* Membership records (``rcp.membership``): ``MembershipValidator`` lets a record into the DHT only when it is
  signed by the Ed25519 key of the libp2p identity it is filed under, so even a key holder cannot overwrite
  another peer's record. Each process makes its own identity key (``Identity``) and hands it to its p2pd.

Deliberately left out: per-user accounts and revocation (one key per swarm; rotate it by restarting the swarm
with a new key), an allow-list of peer ids (identities are made afresh at every start, so a list could never
name them), and limits on what a key holder may ask: holding the key means being allowed to run code here.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hivemind.dht.crypto import DHTRecord, RecordValidatorBase
from hivemind.proto import crypto_pb2
from hivemind.utils.auth import AuthorizerBase
from pydantic import Field

from rcp.errors import ConfigError, SwarmUnavailableError
from rcp.records import Record

logger = logging.getLogger(__name__)

KEY_PATTERN = r"^[!-~]{32,256}$"  # printable ASCII without spaces; 32 characters of randomness at the least
# Proofs and DHT requests older or newer than this are refused: a replay window, and the clock skew machines of one
# swarm may have. NTP keeps real machines within a second; a minute is hivemind's own choice for its tokens.
MAX_CLOCK_SKEW = 60.0
SIGNATURE_BYTES = 64  # Ed25519
PEER_ID = r"^[1-9A-HJ-NP-Za-km-z]{20,128}$"  # base58, as libp2p prints peer ids


def new_swarm_key() -> str:
    """A fresh random swarm key (256 bits, hex)."""
    return secrets.token_hex(32)


def _derive(key: str, purpose: bytes) -> bytes:
    """One sub-key per use, so a MAC made for the DHT can never pass as an RPC proof or the other way round."""
    return hmac.new(key.encode(), b"rcp/" + purpose, hashlib.sha256).digest()


def _tail(peer_id: object) -> str:
    return str(peer_id)[-8:]


# --- where the key comes from -------------------------------------------------------------------------------


def is_loopback(maddr: str) -> bool:
    """True for multiaddrs only this machine can reach (127.0.0.0/8, ::1, localhost, unix sockets)."""
    parts = str(maddr).strip("/").split("/")
    if len(parts) < 2:
        return False
    proto, host = parts[0], parts[1]
    if proto == "unix":
        return True
    if proto in ("dns", "dns4", "dns6"):
        return host == "localhost"
    if proto in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return False


def exposed(maddrs: Sequence[str]) -> list[str]:
    """The multiaddrs among ``maddrs`` that other machines may reach."""
    return [m for m in maddrs if not is_loopback(m)]


def contact_swarm_key(run_dir: Path) -> str:
    """The key ``network.py`` wrote into this machine's contact file, or ''."""
    from rcp.launcher import read_contact

    contact = read_contact(run_dir) or {}
    key = contact.get("swarm_key")
    return key if isinstance(key, str) else ""


def launcher_swarm_key(settings):
    """The settings ``network.py`` runs with: ``SWARM_KEY`` if set, else a new random key for this swarm.

    Its nodes get the key through their environment (``RCP_SWARM_KEY``), clients through the contact file.
    """
    key = settings.swarm_key
    if not key:
        key = new_swarm_key()
        settings = settings.model_copy(update={"swarm_key": key})
        open_to = exposed(settings.host_maddrs)
        if open_to:
            logger.warning("nodes listen on %s, reachable from other machines, with a swarm key made for this run "
                           "only: other machines can join only with it (it is in %s/swarm.json); set SWARM_KEY to "
                           "keep one key across restarts", ", ".join(open_to), settings.run_path)
    return settings


def node_swarm_key(settings) -> str:
    """The key a node runs with: ``SWARM_KEY``, else this machine's contact file, else (loopback only) a new one."""
    key = settings.swarm_key or contact_swarm_key(settings.run_path)
    if key:
        return key
    open_to = exposed(settings.host_maddrs)
    if open_to:
        raise ConfigError(f"HOST_MADDRS {', '.join(open_to)} can be reached from other machines, so SWARM_KEY must be "
                          f"set: every node and client of the swarm needs the same one; make one with: python -c "
                          f"'import secrets; print(secrets.token_hex(32))'")
    logger.warning("SWARM_KEY is empty and %s has no contact file: this node made up a key nobody else knows, so no "
                   "other process can use it; start swarms with network.py, or give every node the same SWARM_KEY",
                   settings.run_path)
    return new_swarm_key()


def client_swarm_key(settings) -> str:
    """The key a client uses: ``SWARM_KEY``, else the contact file ``network.py`` wrote; raises if neither."""
    key = settings.swarm_key or contact_swarm_key(settings.run_path)
    if not key:
        raise SwarmUnavailableError(f"no swarm key: set SWARM_KEY (RCP_SWARM_KEY) to the swarm's key; on the machine "
                                    f"running network.py it is in {settings.run_path}/swarm.json")
    return key


# --- identities: the libp2p key a process signs its membership record with ----------------------------------


class Identity:
    """An Ed25519 libp2p identity made by this process, so it can sign what it stores under its own peer id."""

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key or Ed25519PrivateKey.generate()
        public = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        encoded = crypto_pb2.PublicKey(key_type=crypto_pb2.Ed25519, data=public).SerializeToString()
        # Keys of up to 42 bytes are inlined in the peer id ("identity" multihash: code 0, length), so anyone can
        # read the public key back out of the id: that is what binds a record's subkey to its signer.
        self.peer_id = base58.b58encode(bytes([0, len(encoded)]) + encoded).decode()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @contextlib.contextmanager
    def key_file(self) -> Iterator[str]:
        """The private key as p2pd reads it (``-id``), in a private directory removed on exit."""
        seed = self._key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())
        public = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        data = crypto_pb2.PrivateKey(key_type=crypto_pb2.Ed25519, data=seed + public).SerializeToString()
        folder = tempfile.mkdtemp(prefix="rcp-id-")  # mode 0700
        path = os.path.join(folder, "identity.key")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def peer_public_key(peer_id: str) -> Ed25519PublicKey | None:
    """The Ed25519 key inlined in ``peer_id``; None for other kinds of ids (RSA ids hash their key)."""
    try:
        raw = base58.b58decode(peer_id)
        if len(raw) < 2 or raw[0] != 0 or raw[1] != len(raw) - 2:
            return None
        key = crypto_pb2.PublicKey.FromString(raw[2:])
        if key.key_type != crypto_pb2.Ed25519:
            return None
        return Ed25519PublicKey.from_public_bytes(key.data)
    except Exception:  # any undecodable id is simply not an Ed25519 one
        return None


# --- RPC proofs -----------------------------------------------------------------------------------------------


class Proof(Record):
    """Sent with every RPC request: its caller holds the swarm key, and it goes from this caller to that node."""

    peer: str = Field(pattern=PEER_ID)  # the caller, as libp2p must authenticate it
    to: str = Field(pattern=PEER_ID)  # the node the request is for
    at: float  # unix time the proof was made
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")


def _proof_mac(key: bytes, method: str, peer: str, to: str, at: float, nonce: str) -> str:
    message = "\n".join(["rcp-rpc-proof-v1", method, peer, to, repr(float(at)), nonce]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def make_proof(swarm_key: str, method: str, caller: str, callee: str, *, at: float | None = None) -> Proof:
    at = time.time() if at is None else at
    nonce = secrets.token_hex(16)
    mac = _proof_mac(_derive(swarm_key, b"rpc"), method, caller, callee, at, nonce)
    return Proof(peer=caller, to=callee, at=at, nonce=nonce, mac=mac)


class ProofChecker:
    """The serving side: is a request's proof valid for this node, this method and the authenticated caller?"""

    def __init__(self, swarm_key: str, self_id: str, *, clock=time.time) -> None:
        self._key = _derive(swarm_key, b"rpc")
        self.self_id = self_id
        self._clock = clock
        self._seen: dict[str, float] = {}  # nonce -> when it may be forgotten (it is then too old to pass anyway)

    def check(self, proof: Proof | None, method: str, remote_id: str) -> str | None:
        """None if the request may go on, else a one-line reason for the caller."""
        if proof is None:
            return "this swarm needs a proof of its swarm key with every request; set SWARM_KEY to the swarm's key"
        expected = _proof_mac(self._key, method, proof.peer, proof.to, proof.at, proof.nonce)
        if not hmac.compare_digest(expected, proof.mac):
            return "the proof does not match this swarm's key; is SWARM_KEY the swarm's key?"
        # Checked after the MAC, so what is said here only reaches holders of the key.
        if proof.peer != remote_id:
            return (f"the proof was made for peer {_tail(proof.peer)} but came from peer {_tail(remote_id)}; "
                    f"a proof cannot be replayed by another peer")
        if proof.to != self.self_id:
            return f"the proof was made for node {_tail(proof.to)}, not for this node {_tail(self.self_id)}"
        now = self._clock()
        if abs(now - proof.at) > MAX_CLOCK_SKEW:
            return (f"the proof is {now - proof.at:+.0f} s off this node's clock (limit {MAX_CLOCK_SKEW:.0f} s): "
                    f"a replay, or clocks that need synchronising")
        self._forget_old(now)
        if proof.nonce in self._seen:
            return "this proof was already used; a request cannot be replayed"
        self._seen[proof.nonce] = now + 2 * MAX_CLOCK_SKEW
        return None

    def _forget_old(self, now: float) -> None:
        if len(self._seen) > 1024:
            self._seen = {n: t for n, t in self._seen.items() if t > now}


# --- the DHT --------------------------------------------------------------------------------------------------


class SwarmKeyAuthorizer(AuthorizerBase):
    """hivemind DHT authorizer: every DHT request and reply carries an HMAC under the swarm key.

    A request without a valid MAC, out of the time window or with a nonce seen before gets no answer (hivemind
    drops it), and a reply without a valid MAC for our request's nonce is ignored. The request's own fields
    (``auth.time``, ``auth.nonce``) are covered by the MAC; the signature field is empty while computing it.
    """

    def __init__(self, swarm_key: str, *, clock=time.time) -> None:
        self._key = _derive(swarm_key, b"dht")
        self._clock = clock
        self._seen: dict[bytes, float] = {}

    def _mac(self, message) -> bytes:
        return hmac.new(self._key, message.SerializeToString(deterministic=True), hashlib.sha256).digest()

    async def sign_request(self, request, service_public_key) -> None:
        auth = request.auth
        auth.time = self._clock()
        auth.nonce = secrets.token_bytes(16)
        auth.signature = b""
        auth.signature = self._mac(request)

    async def validate_request(self, request) -> bool:
        auth = request.auth
        signature, auth.signature = auth.signature, b""
        try:
            if not hmac.compare_digest(signature, self._mac(request)):
                logger.debug("refused a DHT request without a valid swarm-key MAC")
                return False
            now = self._clock()
            if abs(now - auth.time) > MAX_CLOCK_SKEW or len(auth.nonce) != 16 or auth.nonce in self._seen:
                logger.debug("refused a stale or replayed DHT request")
                return False
            if len(self._seen) > 4096:
                self._seen = {n: t for n, t in self._seen.items() if t > now}
            self._seen[auth.nonce] = now + 2 * MAX_CLOCK_SKEW
            return True
        finally:
            auth.signature = signature

    async def sign_response(self, response, request) -> None:
        auth = response.auth
        auth.nonce = request.auth.nonce
        auth.signature = b""
        auth.signature = self._mac(response)

    async def validate_response(self, response, request) -> bool:
        auth = response.auth
        signature, auth.signature = auth.signature, b""
        try:
            return auth.nonce == request.auth.nonce and hmac.compare_digest(signature, self._mac(response))
        finally:
            auth.signature = signature


class MembershipValidator(RecordValidatorBase):
    """hivemind record validator: only the owner of peer id P may store the membership record filed under P.

    A record under the membership key is the value followed by an Ed25519 signature over (key, subkey, value,
    expiration) by the key inlined in the subkey's peer id; the expiration is signed so a copy cannot be stored
    again to live longer. Records under any other key are refused: rcp stores nothing else, and an open key would
    let any holder of the swarm key fill the nodes' memory.
    """

    def __init__(self, members_key: str, identity: Identity | None = None) -> None:
        from hivemind.dht.routing import DHTID
        from hivemind.utils import MSGPackSerializer

        self._serializer = MSGPackSerializer
        self._key_id = DHTID.generate(source=members_key).to_bytes()
        self._identity = identity
        self._own_subkey = MSGPackSerializer.dumps(identity.peer_id) if identity is not None else None

    def _signed_part(self, record: DHTRecord, value: bytes) -> bytes:
        return self._serializer.dumps([b"rcp-member-v1", record.key, record.subkey, value, record.expiration_time])

    def sign_value(self, record: DHTRecord) -> bytes:
        if self._identity is None or record.key != self._key_id or record.subkey != self._own_subkey:
            return record.value  # not ours to sign: validation refuses it
        return record.value + self._identity.sign(self._signed_part(record, record.value))

    def validate(self, record: DHTRecord) -> bool:
        if record.key != self._key_id or len(record.value) <= SIGNATURE_BYTES:
            return False
        try:
            subkey = self._serializer.loads(record.subkey)
        except Exception:
            return False
        public_key = peer_public_key(subkey) if isinstance(subkey, str) else None
        if public_key is None:
            return False
        value, signature = record.value[:-SIGNATURE_BYTES], record.value[-SIGNATURE_BYTES:]
        try:
            public_key.verify(signature, self._signed_part(record, value))
        except InvalidSignature:
            return False
        return True

    def strip_value(self, record: DHTRecord) -> bytes:
        return record.value[:-SIGNATURE_BYTES] if len(record.value) > SIGNATURE_BYTES else record.value

    @property
    def priority(self) -> int:
        return 10  # validated (and stripped) before anything that would read the value
