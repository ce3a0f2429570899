"""Who may use the swarm, bad RPC input on the wire, and admission control for root tasks.

Unit tests (no processes) check the pieces of ``rcp.access``: RPC proofs, the DHT authorizer, the membership
record validator, the loopback policy and the SWARM_KEY setting. Tests marked ``swarm`` boot one real 2-node
swarm (`python network.py`, scripted LLM, MAX_ROOT_TASKS = 1) and attack it from this process with real
hivemind peers: an outsider with no key or a wrong one, one replaying another peer's proof, and a key holder
trying to overwrite a node's membership record. Every attack must fail with a clear error while the nodes keep
serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import time
from functools import partial

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from swarm_helpers import (
    DELEGATE_TASK,
    SCRIPTS,
    Swarm,
    alive,
    kill_leftovers,
    scripted_env,
    slow_script,
    solve_replies,
)

from rcp.access import (
    MAX_CLOCK_SKEW,
    Identity,
    MembershipValidator,
    ProofChecker,
    SwarmKeyAuthorizer,
    exposed,
    is_loopback,
    launcher_swarm_key,
    make_proof,
    node_swarm_key,
)
from rcp.errors import ConfigError, InfrastructureError, SwarmUnavailableError
from rcp.membership import MEMBERS_KEY, NodeState, PeerRecord, fetch_peers
from rcp.rpc import NAMESPACE, ErrorReply, SolveMessage, SwarmServicer
from rcp.settings import PROJECT_ROOT, load_settings

KEY = "k" * 40
OTHER_KEY = "o" * 40
PART_DELAY = 3.0  # seconds per scripted part: a root task stays running long enough to be in the way


# --- RPC proofs -------------------------------------------------------------------------------------------------


def test_rpc_proof_is_bound_to_the_key_the_caller_the_node_the_method_and_the_time():
    caller, node, other = Identity().peer_id, Identity().peer_id, Identity().peer_id
    now = [1000.0]
    checker = ProofChecker(KEY, node, clock=lambda: now[0])
    good = make_proof(KEY, "solve", caller, node, at=now[0])
    assert checker.check(good, "solve", caller) is None
    assert "already used" in checker.check(good, "solve", caller), "the same proof twice is a replay"
    refusals = {
        "no proof": (None, "solve", caller),
        "wrong key": (make_proof(OTHER_KEY, "solve", caller, node, at=now[0]), "solve", caller),
        "another method": (make_proof(KEY, "info", caller, node, at=now[0]), "solve", caller),
        "another peer": (make_proof(KEY, "solve", caller, node, at=now[0]), "solve", other),
        "another node": (make_proof(KEY, "solve", caller, other, at=now[0]), "solve", caller),
        "too old": (make_proof(KEY, "solve", caller, node, at=now[0] - MAX_CLOCK_SKEW - 1), "solve", caller),
    }
    messages = {what: checker.check(*args) for what, args in refusals.items()}
    assert all(messages.values()), messages
    assert "needs a proof of its swarm key" in messages["no proof"]
    assert "does not match this swarm's key" in messages["wrong key"]
    assert "does not match" in messages["another method"], "a proof for info must not open a solve"
    assert "cannot be replayed by another peer" in messages["another peer"]
    assert "not for this node" in messages["another node"]
    assert "off this node's clock" in messages["too old"]
    forged = good.model_copy(update={"peer": other})  # claim the proof for oneself: the MAC no longer matches
    assert "does not match" in checker.check(forged, "solve", other)


# --- the DHT ----------------------------------------------------------------------------------------------------


async def test_dht_authorizer_refuses_other_keys_tampering_and_replays():
    from hivemind.proto import dht_pb2

    ours, theirs = SwarmKeyAuthorizer(KEY), SwarmKeyAuthorizer(OTHER_KEY)
    request = dht_pb2.FindRequest(keys=[b"x" * 20])
    await ours.sign_request(request, None)
    server = SwarmKeyAuthorizer(KEY)
    copy = dht_pb2.FindRequest.FromString(request.SerializeToString())
    assert await server.validate_request(request)
    assert not await server.validate_request(copy), "a replayed request must be refused"
    assert not await theirs.validate_request(dht_pb2.FindRequest.FromString(request.SerializeToString()))
    unsigned = dht_pb2.FindRequest(keys=[b"x" * 20])
    assert not await server.validate_request(unsigned), "a plain hivemind peer sends no MAC"
    fresh = dht_pb2.FindRequest(keys=[b"x" * 20])
    await ours.sign_request(fresh, None)
    fresh.keys.append(b"y" * 20)
    assert not await server.validate_request(fresh), "a changed request must be refused"

    response = dht_pb2.FindResponse()
    await server.sign_response(response, request)
    assert await ours.validate_response(response, request)
    forged = dht_pb2.FindResponse()
    await theirs.sign_response(forged, request)
    assert not await ours.validate_response(forged, request), "answers from outsiders must be ignored"


def test_membership_validator_lets_only_the_owner_store_its_record():
    from hivemind.dht.crypto import DHTRecord
    from hivemind.dht.routing import DHTID
    from hivemind.utils import MSGPackSerializer as msgpack

    owner, intruder = Identity(), Identity()
    key = DHTID.generate(source=MEMBERS_KEY).to_bytes()
    value = msgpack.dumps(PeerRecord(peer_id=owner.peer_id, state=NodeState.ONLINE).model_dump_json())
    record = DHTRecord(key, msgpack.dumps(owner.peer_id), value, 1e9)
    mine, theirs = MembershipValidator(MEMBERS_KEY, owner), MembershipValidator(MEMBERS_KEY, intruder)
    signed = DHTRecord(record.key, record.subkey, mine.sign_value(record), record.expiration_time)
    reader = MembershipValidator(MEMBERS_KEY)
    assert reader.validate(signed) and reader.strip_value(signed) == value

    assert theirs.sign_value(record) == value, "nobody signs a record filed under another peer's id"
    assert not reader.validate(record), "an unsigned record is refused"
    forged_sig = intruder.sign(b"anything")
    assert not reader.validate(DHTRecord(key, record.subkey, value + forged_sig, 1e9))
    longer = DHTRecord(key, signed.subkey, signed.value, 2e9)
    assert not reader.validate(longer), "the expiration is signed: a copy cannot be made to live longer"
    tampered = DHTRecord(key, signed.subkey, signed.value[:5] + b"X" + signed.value[6:], 1e9)
    assert not reader.validate(tampered)
    other_key = DHTRecord(DHTID.generate(source="spam").to_bytes(), record.subkey, signed.value, 1e9)
    assert not reader.validate(other_key), "rcp stores nothing under other keys"
    rsa_id = DHTRecord(key, msgpack.dumps("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), signed.value, 1e9)
    assert not reader.validate(rsa_id), "ids that do not carry their public key cannot be checked, so are refused"


# --- where nodes listen, and the setting ------------------------------------------------------------------------


def test_loopback_is_the_default_and_anything_else_needs_an_explicit_key(tmp_path, caplog):
    assert all(is_loopback(m) for m in ["/ip4/127.0.0.1/tcp/0", "/ip4/127.8.9.1/tcp/5", "/ip6/::1/tcp/0",
                                        "/dns/localhost/tcp/1", "/unix/tmp/x.sock"])
    assert exposed(["/ip4/127.0.0.1/tcp/0", "/ip4/0.0.0.0/tcp/1", "/ip6/::/tcp/1", "/ip4/192.168.1.5/tcp/1",
                    "/dns4/example.org/tcp/1"]) == ["/ip4/0.0.0.0/tcp/1", "/ip6/::/tcp/1", "/ip4/192.168.1.5/tcp/1",
                                                    "/dns4/example.org/tcp/1"]
    base = load_settings({"run_dir": str(tmp_path / "run")}, environ={})
    assert base.host_maddrs == ["/ip4/127.0.0.1/tcp/0"] and base.swarm_key == ""
    public = base.model_copy(update={"host_maddrs": ["/ip4/0.0.0.0/tcp/31337"]})
    with pytest.raises(ConfigError, match=r"HOST_MADDRS /ip4/0.0.0.0/tcp/31337 can be reached .* SWARM_KEY must be"):
        node_swarm_key(public)
    assert node_swarm_key(public.model_copy(update={"swarm_key": KEY})) == KEY
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "swarm.json").write_text(json.dumps({"swarm_key": OTHER_KEY}))
    assert node_swarm_key(base) == OTHER_KEY, "a node on the launcher's machine finds the key in the contact file"
    with caplog.at_level(logging.WARNING, logger="rcp.access"):
        launched = launcher_swarm_key(public)
    assert len(launched.swarm_key) == 64 and launched.swarm_key != launcher_swarm_key(base).swarm_key
    assert "reachable from other machines" in caplog.text and launched.swarm_key not in caplog.text
    assert KEY not in repr(public.model_copy(update={"swarm_key": KEY})), "the key stays out of reprs and logs"


def test_a_bad_swarm_key_is_one_line_that_does_not_echo_it(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings({"run_dir": str(tmp_path)}, environ={"RCP_SWARM_KEY": "hunter2"})
    assert str(e.value).startswith("bad setting SWARM_KEY = <7 characters, not shown> (from RCP_SWARM_KEY): "
                                   "must be empty, or 32 to 256 printable ASCII characters")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ConfigError, match="MAX_ROOT_TASKS = '0'"):
        load_settings({"run_dir": str(tmp_path)}, environ={"RCP_MAX_ROOT_TASKS": "0"})


def test_node_refuses_to_listen_beyond_loopback_without_a_key(tmp_path):
    env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json")
    proc = subprocess.run([sys.executable, "node.py", "--host-maddrs", "/ip4/0.0.0.0/tcp/0"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "SWARM_KEY must be set" in errors[0] and "0.0.0.0" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


# --- a real swarm under attack -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def no_swarm_process_left():
    yield
    leftovers = kill_leftovers()
    assert not leftovers, f"swarm processes left running after the tests: {leftovers}"


@pytest.fixture(scope="module")
def swarm(tmp_path_factory, sandbox_image):
    tmp = tmp_path_factory.mktemp("access")
    env = scripted_env(tmp / "run", slow_script(tmp, PART_DELAY), RCP_MAX_ROOT_TASKS="1")
    s = Swarm(tmp / "run", env, num_nodes=2).start()
    yield s
    s.stop()


async def connect(swarm):
    from rcp.client import Connection

    return await Connection.open(swarm.settings)


async def outsider_p2p(swarm):
    """A plain hivemind libp2p peer that dials the swarm's nodes: what anyone who can reach the port can do."""
    from hivemind.p2p import P2P

    return await P2P.create(initial_peers=swarm.contact()["initial_peers"])


def raw_request(kind: str, proof=None, **fields) -> BytesValue:
    body = {"type": kind, "version": 1, **fields}
    if proof is not None:
        body["auth"] = proof.model_dump(mode="json")
    return BytesValue(value=json.dumps(body).encode())


def spec_json(goal: str = "Write is_prime(n)") -> dict:
    return {"goal": goal, "root_task": goal}


@pytest.mark.swarm
async def test_contact_file_holds_the_key_and_only_its_owner_can_read_it(swarm):
    path = swarm.run_dir / "swarm.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = swarm.contact()["swarm_key"]
    assert len(key) == 64, "network.py makes a 256-bit key per swarm"
    for node in swarm.contact()["nodes"]:
        assert key not in open(node["log"]).read(), "the key must never reach a log"
    assert not any(key in line for line in swarm.lines)


@pytest.mark.swarm
async def test_outsider_without_the_key_is_refused_and_the_node_keeps_serving(swarm):
    from hivemind.p2p import PeerID

    target = swarm.contact()["nodes"][0]
    node = target["peer_id"]
    conn = await connect(swarm)
    p2p = await outsider_p2p(swarm)
    try:
        me = str(p2p.peer_id)
        stub = SwarmServicer.get_stub(p2p, PeerID.from_base58(node), namespace=NAMESPACE)

        async def info(proof=None) -> ErrorReply:
            return ErrorReply.model_validate_json((await stub.rpc_info(raw_request("info", proof), timeout=10)).value)

        async def solve(proof=None) -> ErrorReply:
            replies = await solve_replies(await stub.rpc_solve(raw_request("solve", proof, spec=spec_json())))
            assert len(replies) == 1, replies
            return ErrorReply.model_validate(replies[0])

        no_key = await info()
        assert no_key.code == "unauthorized" and "needs a proof of its swarm key" in no_key.message
        assert (await solve()).code == "unauthorized"
        wrong = await solve(make_proof(OTHER_KEY, "solve", me, node))
        assert wrong.code == "unauthorized" and "is SWARM_KEY the swarm's key?" in wrong.message
        # A proof the real client made (as if captured): valid MAC, but for another libp2p identity.
        captured = conn.rpc.proof("solve", node)
        replayed = await solve(captured)
        assert replayed.code == "unauthorized" and "cannot be replayed by another peer" in replayed.message
        # Claiming the captured proof as one's own breaks its MAC.
        assert (await solve(captured.model_copy(update={"peer": me}))).code == "unauthorized"

        # Nothing ran, and the node still serves its swarm.
        status = await conn.rpc.info(node)
        assert status.node.state == NodeState.ONLINE and status.solves_started == 0 and alive(target["pid"])
    finally:
        await p2p.shutdown()
        await conn.close()


@pytest.mark.swarm
async def test_outsider_cannot_join_the_dht_with_a_wrong_key(swarm):
    from rcp.membership import start_dht

    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="is SWARM_KEY the swarm's key"):
        await start_dht(swarm_key=OTHER_KEY, initial_peers=swarm.contact()["initial_peers"], client_mode=True)
    print(f"\nMEASURE a wrong key is refused at DHT join in {time.monotonic() - started:.1f} s")


async def _raw_dht_calls(peer: str, key_id: bytes, subkey: str, value: bytes, expiration: float, dht, node):
    """Runs inside an outsider's hivemind DHT process: talk to ``peer`` directly, bypassing routing."""
    from hivemind.dht.routing import DHTID
    from hivemind.p2p import PeerID

    target = PeerID.from_base58(peer)
    found = await node.protocol.call_find(target, [DHTID.from_bytes(key_id)])
    stored = await node.protocol.call_store(target, [DHTID.from_bytes(key_id)], [value], [expiration], [subkey])
    return found, stored


@pytest.mark.swarm
async def test_nobody_can_read_or_overwrite_a_nodes_membership_record(swarm):
    import hivemind
    from hivemind.dht.routing import DHTID
    from hivemind.utils import MSGPackSerializer, get_dht_time

    from rcp.membership import start_dht, stop_dht

    victim = swarm.contact()["nodes"][0]
    forged = PeerRecord(peer_id=victim["peer_id"], state=NodeState.OFFLINE, pid=1, model="forged")
    conn = await connect(swarm)
    try:
        # 1. A plain hivemind DHT peer without the key, speaking the DHT protocol straight to the node.
        outsider = hivemind.DHT(initial_peers=swarm.contact()["initial_peers"], start=True, client_mode=True,
                                ensure_bootstrap_success=False)
        try:
            value = MSGPackSerializer.dumps(forged.model_dump_json()) + os.urandom(64)
            found, stored = outsider.run_coroutine(partial(
                _raw_dht_calls, victim["peer_id"], DHTID.generate(source=MEMBERS_KEY).to_bytes(), victim["peer_id"],
                value, get_dht_time() + 60))
        finally:
            outsider.shutdown()
        assert found is None, "the node must not answer a DHT lookup without the key (the member list is private)"
        assert stored is None, "the node must not store for a peer without the key"

        # 2. A key holder (a member of the swarm) trying to file a record under the victim's peer id.
        contact = swarm.contact()
        insider = await start_dht(swarm_key=contact["swarm_key"], initial_peers=contact["initial_peers"],
                                  client_mode=True)
        try:
            expiration = get_dht_time() + 60
            assert not await insider.store(MEMBERS_KEY, forged.model_dump_json(), expiration,
                                           subkey=victim["peer_id"], return_future=True)
            assert not await insider.store("rcp.spam", "x" * 1000, expiration, return_future=True)
            # Under its own id it may store a record, but one that claims to be the victim is ignored by readers.
            own = str(insider.peer_id)
            assert await insider.store(MEMBERS_KEY, forged.model_dump_json(), expiration, subkey=own,
                                       return_future=True)
        finally:
            await stop_dht(insider)

        peers = {p.peer_id: p for p in await fetch_peers(conn.dht, include_offline=True)}
        record = peers[victim["peer_id"]]
        assert record.state == NodeState.ONLINE and record.pid == victim["pid"] and record.model == "scripted"
        assert all(p.model != "forged" for p in peers.values())
    finally:
        await conn.close()


# --- bad RPC input on the wire (adds to tests/test_swarm.py's malformed-input test) -----------------------------


@pytest.mark.swarm
async def test_wrong_and_out_of_order_messages_get_a_clear_error_and_the_node_keeps_serving(swarm):
    from hivemind.p2p import P2P, PeerID

    target = swarm.contact()["nodes"][1]
    node = target["peer_id"]
    conn = await connect(swarm)
    try:
        rpc = conn.rpc
        stub = SwarmServicer.get_stub(rpc.p2p, PeerID.from_base58(node), namespace=NAMESPACE)

        async def solve_reply(payload: BytesValue) -> dict:
            replies = await solve_replies(await stub.rpc_solve(payload))
            assert len(replies) == 1, replies
            return replies[0]

        # A reply sent as a request, and a request sent to the wrong method: refused before any proof is looked at.
        result = SolveMessage(type="event", event=None).model_dump(mode="json")
        reply = await solve_reply(BytesValue(value=json.dumps(result).encode()))
        assert reply["code"] == "malformed" and "type" in reply["message"], reply
        reply = await solve_reply(raw_request("info", rpc.proof("solve", node)))
        assert reply["code"] == "malformed", reply
        info = json.loads((await stub.rpc_info(raw_request("solve", rpc.proof("info", node), spec=spec_json()),
                                               timeout=10)).value)
        assert info["code"] == "malformed", info
        # A valid proof on a request that breaks the TaskSpec's own limits.
        huge_depth = {**spec_json(), "depth": 99}
        reply = await solve_reply(raw_request("solve", rpc.proof("solve", node), spec=huge_depth))
        assert reply["code"] == "malformed" and "depth" in reply["message"], reply

        # Out of order on one stream: two requests, or the end of the stream before any request. hivemind's framing
        # answers with an error of its own; nothing reaches the solver. The second request alone makes it answer and
        # close the stream (asingle raises on a second item), so no end of stream follows it: writing one raced that
        # close (ConnectionResetError in CI, stop 16).
        name = f"{NAMESPACE}::SwarmServicer.rpc_solve"
        for frames in ([raw_request("info"), raw_request("info")], [P2P.END_OF_STREAM]):
            _, reader, writer = await rpc.p2p.call_binary_stream_handler(PeerID.from_base58(node), name)
            for frame in frames:
                await P2P.send_protobuf(frame, writer)
            _, err = await asyncio.wait_for(P2P.receive_protobuf(BytesValue, reader), 10)
            assert err is not None and "exactly one item" in err.message, err
            writer.close()
        status = await rpc.info(node)
        assert status.node.state == NodeState.ONLINE and status.solves_started == 0 and alive(target["pid"])
    finally:
        await conn.close()


# --- admission control ------------------------------------------------------------------------------------------


@pytest.mark.swarm
async def test_a_node_at_its_root_task_limit_answers_busy_and_the_client_goes_elsewhere(swarm):
    from rcp.client import root_spec, submit
    from rcp.rpc import PeerBusy

    conn = await connect(swarm)
    try:
        a, b = sorted(await conn.serving_peers(), key=lambda p: p.peer_id)[:2]
        running = {a.peer_id: asyncio.Event(), b.peer_id: asyncio.Event()}

        def started(entry: str):
            return lambda ev: ev.depth == 0 and ev.kind.value == "accepted" and running[entry].set()

        # One root task on each node: both at MAX_ROOT_TASKS = 1. Their parts still run on the other node.
        roots = [asyncio.create_task(submit(conn, root_spec(DELEGATE_TASK, swarm.settings, 60), node=p.peer_id,
                                            on_event=started(p.peer_id))) for p in (a, b)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in running.values())), 20)

        with pytest.raises(PeerBusy) as busy:
            await conn.rpc.solve(a.peer_id, root_spec("Write f()", swarm.settings, 60), lambda ev: None)
        assert busy.value.code == "busy" and "MAX_ROOT_TASKS" in str(busy.value)
        info = await conn.rpc.info(a.peer_id)
        assert (info.node.roots, info.node.max_roots) == (1, 1)
        with pytest.raises(SwarmUnavailableError, match=r"all 2 nodes .* are busy .*MAX_ROOT_TASKS.*try again later"):
            await submit(conn, root_spec("Write f()", swarm.settings, 60))
        with pytest.raises(SwarmUnavailableError, match=rf"node {a.short} is busy"):
            await submit(conn, root_spec("Write f()", swarm.settings, 60), node=a.peer_id)

        subs = await asyncio.wait_for(asyncio.gather(*roots), 60)
        assert all(s.result.solved for s in subs), "subtasks are admitted even when both nodes are at the root limit"

        # Only a is busy now; make the client try it first: it must go on to b by itself.
        blocker = asyncio.create_task(submit(conn, root_spec(DELEGATE_TASK, swarm.settings, 60), node=a.peer_id,
                                             on_event=started(a.peer_id)))
        running[a.peer_id].clear()
        await asyncio.wait_for(running[a.peer_id].wait(), 20)
        a_first = [a.model_copy(update={"queued": 0, "free_slots": 1}), b.model_copy(update={"queued": 9})]
        conn.serving_peers = lambda wait=0: _const(a_first)
        sub = await asyncio.wait_for(submit(conn, root_spec(DELEGATE_TASK, swarm.settings, 60)), 60)
        assert sub.entry == b.peer_id and sub.result.solved
        assert (await asyncio.wait_for(blocker, 60)).result.solved
    finally:
        await conn.close()


async def _const(value):
    return value
