"""The swarm: membership and peer choice (fast, in-process), then real node processes over real hivemind.

Tests marked ``swarm`` boot `python network.py` on loopback with the scripted LLM (``LLM_BACKEND = "scripted"``,
so the production node code runs with canned replies) and the real Docker sandbox. One module-scoped swarm of 3
nodes serves the tests in file order; the last one stops it and checks nothing is left. A session fixture kills
any process a failed test left behind. Lines starting with ``MEASURE`` (shown with ``-s``) are the numbers the
issue asks for.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from hivemind.p2p import P2PContext, PeerID
from swarm_helpers import (
    DELEGATE_TASK,
    SCRIPTS,
    Swarm,
    alive,
    cmdline,
    kill_leftovers,
    remember,
    scripted_env,
    slow_script,
    solve_replies,
    wait_gone,
)

from rcp.access import make_proof
from rcp.membership import (
    RECORD_TTL,
    NodeState,
    PeerChooser,
    PeerRecord,
    fetch_peers,
    short_id,
)
from rcp.records import PROTOCOL_VERSION, EventKind, ProgressEvent, TaskSpec
from rcp.rpc import (
    MAX_REQUEST_BYTES,
    NAMESPACE,
    ErrorReply,
    InfoRequest,
    NodeBusy,
    SolveRequest,
    SwarmServicer,
    encode,
    parse_request,
)
from rcp.settings import PROJECT_ROOT

PART_DELAY = 3.0  # seconds each scripted part takes: long enough to kill its node mid-work, short for the suite


def peer(n: int, state: NodeState = NodeState.ONLINE, **fields) -> PeerRecord:
    peer_id = "12D3KooW" + "abcdefghijkmnopqrstuvwxyzABCDEFGH"[n] * 44
    return PeerRecord(peer_id=peer_id, state=state, **fields)


# --- peer choice and wire records (no processes) -------------------------------------------------------------


def test_chooser_takes_least_loaded_serving_peer_and_skips_joining_and_offline():
    peers = [peer(0, queued=2), peer(1, NodeState.BUSY, queued=0, free_slots=0), peer(2, free_slots=1),
             peer(3, NodeState.JOINING, free_slots=4), peer(4, NodeState.OFFLINE, free_slots=4)]
    chooser = PeerChooser(rng=random.Random(0))
    assert chooser.choose(peers) == peers[2]  # nothing queued and a free slot beats nothing queued and none
    assert chooser.choose(peers, exclude=[peers[2].peer_id]) == peers[1]
    assert chooser.choose(peers[3:]) is None


def test_chooser_breaks_ties_at_random_and_spreads_work_it_has_in_flight():
    peers = [peer(i, free_slots=1) for i in range(3)]
    picks = {PeerChooser(rng=random.Random(seed)).choose(peers).peer_id for seed in range(30)}
    assert len(picks) == 3, "equal peers must all get picked sometimes"
    chooser = PeerChooser(rng=random.Random(1))
    first = chooser.choose(peers)
    chooser.sent(first.peer_id)
    second = chooser.choose(peers)
    assert second != first, "a second subtask sent before any heartbeat must go to another idle peer"
    chooser.returned(first.peer_id)
    assert chooser.load(first) == chooser.load(second)


def test_failed_peer_is_banned_with_capped_backoff_then_comes_back():
    now = [1000.0]
    chooser = PeerChooser(rng=random.Random(0), clock=lambda: now[0])
    a, b = peer(0, free_slots=1), peer(1, queued=5)
    assert chooser.ban(a.peer_id) == 30.0
    assert chooser.choose([a, b]) == b, "a banned peer is avoided even when it is the least loaded"
    now[0] += 31
    assert chooser.choose([a, b]) == a
    bans = [chooser.ban(a.peer_id) for _ in range(6)]
    assert bans == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]
    chooser.succeeded(a.peer_id)
    assert not chooser.is_banned(a.peer_id)


def test_peer_record_ignores_unknown_fields_and_rejects_bad_ids():
    record = PeerRecord.model_validate_json(json.dumps({**peer(0).model_dump(mode="json"), "from_the_future": 1}))
    assert record.state == NodeState.ONLINE
    with pytest.raises(ValueError):
        PeerRecord(peer_id="not a peer id!", state=NodeState.ONLINE)


@pytest.mark.parametrize("data, code", [
    (b"{not json", "malformed"),
    (b'{"type": "solve", "version": 1}', "malformed"),  # no spec
    (b'{"type": "solve", "version": 99, "spec": {}}', "unsupported_version"),
    (b"[1, 2, 3]", "malformed"),
    (b"x" * (MAX_REQUEST_BYTES + 1), "too_large"),
])
def test_bad_requests_become_error_replies(data, code):
    reply = parse_request(data, SolveRequest)
    assert isinstance(reply, ErrorReply) and reply.code == code, reply


def test_task_spec_of_unknown_version_is_refused():
    spec = TaskSpec(goal="g", root_task="g").model_dump(mode="json")
    spec["version"] = PROTOCOL_VERSION + 1
    reply = parse_request(json.dumps({"type": "solve", "version": 1, "spec": spec}).encode(), SolveRequest)
    assert isinstance(reply, ErrorReply) and reply.code == "unsupported_version"
    ok = parse_request(json.dumps({"version": 1, "extra": "ignored"}).encode(), InfoRequest)
    assert isinstance(ok, InfoRequest)


class _BusyNode:
    """A handler that refuses every task at once, as a node at MAX_ROOT_TASKS does."""

    def info(self):
        raise AssertionError("not called")

    async def solve(self, spec, remote):
        raise NodeBusy("node X is busy: it runs 1 root tasks, its limit (MAX_ROOT_TASKS)")
        yield  # an async generator, like Node.solve


async def test_a_node_never_hangs_up_first_after_its_last_message():
    # p2pd can drop a reply written just before the serving side closes its stream (seen under load as "peer hung up
    # before sending a result" instead of "busy"); so the node leaves the hang-up to the caller, who has the reply.
    node, caller = peer(1).peer_id, peer(2).peer_id
    servicer = SwarmServicer(_BusyNode(), swarm_key="k" * 32, peer_id=node)
    request = SolveRequest(auth=make_proof("k" * 32, "solve", caller, node), spec=TaskSpec(goal="g", root_task="g"))
    context = P2PContext(handle_name="solve", local_id=PeerID.from_base58(node), remote_id=PeerID.from_base58(caller))
    stream = servicer.rpc_solve(encode(request), context)
    reply = ErrorReply.model_validate_json((await anext(stream)).value)
    assert reply.code == "busy", reply
    # The stream stays open until hivemind, seeing the caller hang up, cancels the handler (as wait_for does here).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.5)


# --- real processes --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def no_swarm_process_left():
    """Kill whatever a swarm test left running, and fail the session if there was anything."""
    yield
    leftovers = kill_leftovers()
    assert not leftovers, f"swarm processes left running after the tests: {leftovers}"


@pytest.fixture(scope="module")
def swarm(tmp_path_factory, sandbox_image):
    tmp = tmp_path_factory.mktemp("swarm")
    env = scripted_env(tmp / "run", slow_script(tmp, PART_DELAY))
    s = Swarm(tmp / "run", env, num_nodes=3).start()
    print(f"\nMEASURE boot of 3 scripted nodes: {s.ready_line}")
    yield s
    s.stop()


async def connect(swarm):
    from rcp.client import Connection

    return await Connection.open(swarm.settings)


async def wait_serving(conn, count: int, timeout: float, *, without: str = "") -> list[PeerRecord]:
    deadline = time.monotonic() + timeout
    while True:
        peers = [p for p in await fetch_peers(conn.dht) if p.peer_id != without]
        if len(peers) >= count or time.monotonic() > deadline:
            return peers
        await asyncio.sleep(0.25)


@pytest.mark.swarm
async def test_boot_and_discovery_of_three_nodes(swarm):
    ready = r"swarm ready: 3/3 nodes in [\d.]+ s · model scripted · peers( \w{8}){3} · memory"
    assert re.match(ready, swarm.ready_line), swarm.ready_line
    contact = swarm.contact()
    nodes = contact["nodes"]
    assert len({n["peer_id"] for n in nodes}) == 3 and len(contact["initial_peers"]) >= 3
    assert all(alive(n["pid"]) for n in nodes)
    started = time.monotonic()
    conn = await connect(swarm)
    try:
        peers = await wait_serving(conn, 3, 15)
        discovery = time.monotonic() - started
        assert {p.peer_id for p in peers} == {n["peer_id"] for n in nodes}
        assert {p.pid for p in peers} == {n["pid"] for n in nodes}
        assert all(p.state == NodeState.ONLINE and p.model == "scripted" for p in peers)
        for p in peers:
            info = await conn.rpc.info(p.peer_id)
            assert info.node.peer_id == p.peer_id and info.node.active == 0
        print(f"\nMEASURE DHT discovery (client join until all 3 records seen): {discovery:.2f} s")
    finally:
        await conn.close()


@pytest.mark.swarm
async def test_malformed_rpc_input_gets_an_error_reply_and_the_node_keeps_serving(swarm):
    from hivemind.p2p import PeerID

    target = swarm.contact()["nodes"][0]
    conn = await connect(swarm)
    try:
        p2p = conn.rpc.p2p
        stub = SwarmServicer.get_stub(p2p, PeerID.from_base58(target["peer_id"]), namespace=NAMESPACE)

        async def solve_reply(payload: bytes) -> dict:
            replies = await solve_replies(await stub.rpc_solve(BytesValue(value=payload)))
            assert len(replies) == 1, replies
            return replies[0]

        info = json.loads((await stub.rpc_info(BytesValue(value=b"\x00garbage"), timeout=5)).value)
        assert info["type"] == "error" and info["code"] == "malformed"
        assert (await solve_reply(b'{"type": "solve", "version": 1, "spec": {"goal": ""}}'))["code"] == "malformed"
        future = {"type": "solve", "version": 2, "spec": {"goal": "x", "root_task": "x"}}
        assert (await solve_reply(json.dumps(future).encode()))["code"] == "unsupported_version"
        assert (await solve_reply(b" " * (MAX_REQUEST_BYTES + 10)))["code"] == "too_large"
        # Bytes that are not even a protobuf: hivemind's framing hangs up on them; the node must not mind.
        _, reader, writer = await p2p.call_binary_stream_handler(PeerID.from_base58(target["peer_id"]),
                                                                 f"{NAMESPACE}::SwarmServicer.rpc_solve")
        writer.write(b"\x00" + (6).to_bytes(8, "big") + b"\xff" * 6)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        info = await conn.rpc.info(target["peer_id"])
        assert info.node.peer_id == target["peer_id"] and info.node.state == NodeState.ONLINE
        assert alive(target["pid"])
    finally:
        await conn.close()


@pytest.mark.swarm
def test_a_task_delegates_across_nodes_and_returns(swarm, tmp_path):
    out = tmp_path / "out"
    wanted = swarm.contact()["nodes"][1]["peer_id"]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "submit_task.py", DELEGATE_TASK, "--json", "--out", str(out),
                           "--timeout", "120", "--node", short_id(wanted)], cwd=PROJECT_ROOT, env=swarm.env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["solved"] and result["exit_code"] == 0 and result["verdict"].startswith("solved")
    trace = result["trace"]
    root_node = trace["node"]
    assert result["entry_node"] == wanted and root_node == short_id(wanted), "--node picks the entry node"
    children = trace["children"]
    assert len(children) == 2 and all(c["solved"] for c in children)
    assert any(c["node"] != root_node for c in children), f"no part ran on another node: {children}"
    swarm_nodes = {short_id(n["peer_id"]) for n in swarm.contact()["nodes"]}
    assert {c["node"] for c in children} <= swarm_nodes
    assert "def add" in (out / "arith.py").read_text() and "def test_" in (out / "test_arith.py").read_text()
    saved = json.loads((out / "trace.json").read_text())
    kinds = {e["kind"] for e in saved["events"]}
    assert {"accepted", "decided", "planned", "delegated", "tested", "result"} <= kinds
    assert "sending task" in proc.stderr and "delegated" in proc.stderr  # progress lines on a non-terminal
    print(f"\nMEASURE delegated task through submit_task.py: {time.monotonic() - started:.1f} s wall "
          f"(incl. {PART_DELAY:.0f} s of scripted delay in the parallel parts, client start and DHT join)")


async def submit_in_background(swarm, conn, on_event=None, node=None):
    from rcp.client import root_spec, submit

    spec = root_spec(DELEGATE_TASK, swarm.settings, 120)
    return asyncio.create_task(submit(conn, spec, on_event=on_event, node=node))


@pytest.mark.swarm
async def test_tasks_entering_every_node_at_once_cross_delegate_without_deadlock(swarm):
    """Each root waits on parts running on the other nodes, which are busy with roots of their own."""
    conn = await connect(swarm)
    try:
        peers = await wait_serving(conn, 3, 20)
        started = time.monotonic()
        tasks = [await submit_in_background(swarm, conn, node=p.peer_id) for p in peers]
        subs = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert all(sub.result.solved for sub in subs), [sub.result.verdict for sub in subs]
        for sub in subs:
            root = sub.result.trace.node
            assert any(c.node != root for c in sub.result.trace.children), "each root delegated to another node"
        print(f"\nMEASURE 3 concurrent delegating tasks, one per entry node: {time.monotonic() - started:.1f} s")
    finally:
        await conn.close()


@pytest.mark.swarm
async def test_client_that_goes_away_cancels_the_work_across_the_swarm(swarm):
    conn = await connect(swarm)
    try:
        remote_part = asyncio.Event()
        entry: list[str] = []

        def on_event(ev: ProgressEvent) -> None:
            if ev.depth == 0 and ev.kind == EventKind.ACCEPTED:
                entry.append(ev.node)
            if ev.depth == 1 and ev.kind == EventKind.ACCEPTED and entry and ev.node != entry[0]:
                remote_part.set()

        task = await submit_in_background(swarm, conn, on_event)
        await asyncio.wait_for(remote_part.wait(), 30)
        before = {p.peer_id: (await conn.rpc.info(p.peer_id)) for p in await fetch_peers(conn.dht)}
        assert sum(i.node.active for i in before.values()) >= 2, "the root and a remote part should be running"
        task.cancel()  # what a client that disconnects or times out does: it closes the stream
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled_at = time.monotonic()
        while True:
            after = {pid: (await conn.rpc.info(pid)) for pid in before}
            if all(i.node.active == 0 for i in after.values()):
                break
            assert time.monotonic() - cancelled_at < 10, {short_id(k): v.node.active for k, v in after.items()}
            await asyncio.sleep(0.1)
        cancelled = sum(after[p].solves_cancelled - before[p].solves_cancelled for p in before)
        assert cancelled >= 2, "the root and its remote parts must all have been cancelled, not finished"
        print(f"\nMEASURE cancel: every node idle {time.monotonic() - cancelled_at:.2f} s after the client left "
              f"({cancelled} solves cancelled, parts were {PART_DELAY:.0f} s from done)")
    finally:
        await conn.close()


@pytest.mark.swarm
async def test_node_killed_mid_subtask_root_still_completes_and_node_is_restarted(swarm):
    conn = await connect(swarm)
    try:
        await wait_healthy(swarm, conn)
        part_on_victim = asyncio.Event()
        victim: dict = {}
        entry: list[str] = []
        fallback_at: list[float] = []

        def on_event(ev: ProgressEvent) -> None:
            if ev.depth == 0 and ev.kind == EventKind.ACCEPTED:
                entry.append(ev.node)
            if ev.depth == 1 and ev.kind == EventKind.ACCEPTED and entry and ev.node != entry[0] and not victim:
                victim.update(node=ev.node, task=ev.task_id)
                part_on_victim.set()
            if victim and ev.kind == EventKind.FALLBACK and ev.task_id == victim["task"]:
                fallback_at.append(time.monotonic())

        task = await submit_in_background(swarm, conn, on_event)
        await asyncio.wait_for(part_on_victim.wait(), 30)
        pid = swarm.node_pid(victim["node"])
        family = remember(pid)  # the node, its DHT child and p2pd
        assert len(family) >= 3, family
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        sub = await asyncio.wait_for(task, 60)
        done_at = time.monotonic()
        assert sub.result.solved, sub.result.verdict
        assert fallback_at, "the parent must report the dead peer"
        # The victim's part is redone on the third node or, when the parent has no other peer it trusts (one that
        # failed it within the ban time is avoided), on the parent itself under a new id: either way, not on the
        # victim, and every part comes back solved.
        children = [(c.goal, c.node, c.solved) for c in sub.result.trace.children]
        assert len({goal for goal, _, _ in children}) == 2, children
        assert all(solved and node != victim["node"] for _, node, solved in children), (victim, children)
        for _ in range(50):
            if not any(alive(p) for p in family):
                break
            await asyncio.sleep(0.1)
        assert not [p for p in family if alive(p)], "the killed node's DHT child and p2pd must die with it"
        print(f"\nMEASURE fault recovery: peer death noticed {fallback_at[0] - killed_at:.2f} s after SIGKILL, "
              f"root finished {done_at - killed_at:.2f} s after it (the re-sent part takes {PART_DELAY:.0f} s)")

        await wait_replaced(swarm, conn, victim["node"], pid)
        print(f"MEASURE killed node out of routing and replaced after {time.monotonic() - killed_at:.1f} s "
              f"(record TTL {RECORD_TTL:.0f} s)")
    finally:
        await conn.close()


async def wait_replaced(swarm, conn, dead: str, pid: int, timeout: float = 60) -> None:
    """Until the dead node's record expired and the launcher's restarted node is serving in its place."""
    await wait_healthy(swarm, conn, timeout, dead=(dead, pid))


async def wait_healthy(swarm, conn, timeout: float = 60, *, dead: tuple[str, int] = ("", 0)) -> list[PeerRecord]:
    """Until exactly the launcher's 3 live nodes are serving: no record of a dead node is left in the DHT.

    Each fault test starts from here, so that one test's killed node cannot be another test's "survivor".
    """
    short, pid = dead
    deadline = time.monotonic() + timeout
    while True:
        contact = swarm.contact()
        peers = await fetch_peers(conn.dht)
        index = [n for n in contact["nodes"] if n["pid"] != pid and alive(n["pid"])]
        gone = not short or all(not p.peer_id.endswith(short) for p in peers)
        if gone and len(peers) == 3 and len(index) == 3 and {p.pid for p in peers} == {n["pid"] for n in index}:
            swarm.pids()
            return peers
        assert time.monotonic() < deadline, (contact, [(p.short, p.state.value, p.pid) for p in peers])
        await asyncio.sleep(0.5)


@pytest.mark.swarm
async def test_entry_node_killed_mid_task_fails_the_client_clearly_and_its_subtasks_stop(swarm):
    from rcp.errors import SwarmUnavailableError

    conn = await connect(swarm)
    try:
        await wait_healthy(swarm, conn)
        parts_running = asyncio.Event()
        entry: list[str] = []
        remote: set[str] = set()

        def on_event(ev: ProgressEvent) -> None:
            if ev.depth == 0 and ev.kind == EventKind.ACCEPTED:
                entry.append(ev.node)
            if ev.depth == 1 and ev.kind == EventKind.ACCEPTED and entry and ev.node != entry[0]:
                remote.add(ev.node)
                parts_running.set()

        task = await submit_in_background(swarm, conn, on_event)
        await asyncio.wait_for(parts_running.wait(), 30)
        pid = swarm.node_pid(entry[0])
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(SwarmUnavailableError, match="the swarm failed mid-task"):
            await asyncio.wait_for(task, 20)
        # The orphaned parts on the other nodes must stop, not run to completion for nobody.
        killed_at = time.monotonic()
        survivors = [p for p in await fetch_peers(conn.dht) if p.pid != pid]
        while True:
            infos = [await conn.rpc.info(p.peer_id) for p in survivors]
            if all(i.node.active == 0 for i in infos):
                break
            assert time.monotonic() - killed_at < PART_DELAY, "orphaned parts kept running"
            await asyncio.sleep(0.1)
        assert sum(i.solves_cancelled for i in infos) >= 1
        await wait_replaced(swarm, conn, entry[0], pid)
    finally:
        await conn.close()


@pytest.mark.swarm
async def test_a_node_stopped_cleanly_leaves_routing_at_once_and_is_restarted(swarm):
    conn = await connect(swarm)
    try:
        peers = await wait_healthy(swarm, conn)
        leaving = peers[0]
        stopped_at = time.monotonic()
        os.kill(leaving.pid, signal.SIGTERM)
        while True:
            records = {p.peer_id: p for p in await fetch_peers(conn.dht, include_offline=True)}
            if records.get(leaving.peer_id) and records[leaving.peer_id].state == NodeState.OFFLINE:
                break
            assert time.monotonic() - stopped_at < 5, "no OFFLINE announcement within 5 s of SIGTERM"
            await asyncio.sleep(0.05)
        offline_after = time.monotonic() - stopped_at
        assert leaving.peer_id not in {p.peer_id for p in await fetch_peers(conn.dht)}
        assert offline_after < RECORD_TTL / 2, "OFFLINE must come from the announcement, not from expiry"
        await wait_replaced(swarm, conn, leaving.short, leaving.pid)
        print(f"\nMEASURE clean node stop: OFFLINE in the DHT {offline_after:.2f} s after SIGTERM")
    finally:
        await conn.close()


@pytest.mark.swarm
def test_clean_shutdown_leaves_no_process_and_no_container(swarm):
    pids = swarm.pids()
    p2pd = [p for p in pids if "p2pd" in cmdline(p)]
    assert len(p2pd) >= 4, "three nodes and the launcher's DHT client each run a p2pd"
    seconds = swarm.stop()
    assert swarm.proc.returncode == 0, "\n".join(swarm.lines[-20:])
    assert seconds < 10, f"shutdown took {seconds:.1f} s"
    assert not [(p, cmdline(p)) for p in wait_gone(pids)], "processes left after shutdown"
    assert not (swarm.run_dir / "swarm.json").exists()
    assert any(line.startswith("swarm stopped: 3 nodes") for line in swarm.lines)
    import docker

    client = docker.from_env()
    try:
        left = [c.name for c in client.containers.list(all=True, filters={"label": "rcp.sandbox=1"})
                if int(c.labels.get("rcp.sandbox.pid", 0)) in pids]
    finally:
        client.close()
    assert not left, f"sandbox containers left: {left}"
    print(f"\nMEASURE clean shutdown of 3 nodes: {seconds:.2f} s")


# --- start-up failures: one line, non-zero exit ------------------------------------------------------------------


@pytest.mark.swarm
@pytest.mark.parametrize("problem, expected", [
    ("model", ["nope.gguf not found", "MODEL_PATH"]),
    ("docker", ["Docker is not reachable", "start it with"]),
])
def test_swarm_start_failure_is_one_line(tmp_path, problem, expected):
    env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json")
    if problem == "model":
        env.update(RCP_LLM_BACKEND="llama", RCP_MODEL_PATH=str(tmp_path / "nope.gguf"))
    else:  # a Docker engine that is not there (the real one is left alone)
        env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    proc = subprocess.run([sys.executable, "network.py", "--num-nodes", "2"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: node-0 failed to start: "), proc.stderr
    assert all(text in lines[0] for text in expected), lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "swarm.json").exists()


@pytest.mark.swarm
def test_node_on_a_port_in_use_fails_with_one_line(tmp_path, sandbox_image):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json")
        proc = subprocess.run([sys.executable, "node.py", "--host-maddrs", f"/ip4/127.0.0.1/tcp/{port}"],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(port) in errors[0] and "port" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_settings_and_empty_task_are_usage_errors(tmp_path):
    env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json", RCP_NUM_NODES="0")
    proc = subprocess.run([sys.executable, "network.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: bad setting NUM_NODES = '0'"), proc.stderr
    env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json")
    proc = subprocess.run([sys.executable, "submit_task.py", "   "], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "the task is empty" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "submit_task.py", "Write is_prime"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "no swarm found" in proc.stderr and "python network.py" in proc.stderr


# --- the real thing: a small swarm on the real model and real Docker -------------------------------------------

TEST_MODEL = PROJECT_ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"


# A task whose expected values the 0.5B computes right: on is_prime it writes tests such as is_prime(9) == True
# and then, honestly, reports "not solved" (seen); the 1.5B default model is the one for harder tasks.
E2E_TASK = "Write a Python function add(a, b) that returns the sum of two numbers, with tests"


@pytest.mark.swarm
@pytest.mark.model
@pytest.mark.docker
async def test_end_to_end_on_the_real_model(tmp_path, sandbox_image):
    """submit_task.py solves a small task on a 2-node swarm of the real 0.5B model, and the nodes keep answering
    RPCs and heartbeats while the model generates (it runs in a worker thread)."""
    if not TEST_MODEL.is_file():
        pytest.skip(f"{TEST_MODEL.name} not present; fetch it with: python -m rcp.models fetch {TEST_MODEL.stem}")
    env = scripted_env(tmp_path / "run", SCRIPTS / "direct.json", RCP_LLM_BACKEND="llama",
                       RCP_MODEL_PATH=str(TEST_MODEL), RCP_TEMPERATURE="0")
    swarm = Swarm(tmp_path / "run", env, num_nodes=2).start()
    conn = None
    try:
        assert "model qwen2.5-coder-0.5b-instruct" in swarm.ready_line
        print(f"\nMEASURE boot of 2 nodes on the 0.5B model: {swarm.ready_line}")
        conn = await connect(swarm)
        peers = await wait_serving(conn, 2, 20)
        out = tmp_path / "out"
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "submit_task.py", E2E_TASK, "--out", str(out),
            "--timeout", "600", cwd=PROJECT_ROOT, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        communicate = asyncio.create_task(proc.communicate())
        slowest, busy_seen = 0.0, False
        while not communicate.done():
            for p in peers:
                t = time.perf_counter()
                info = await conn.rpc.info(p.peer_id)
                slowest = max(slowest, time.perf_counter() - t)
                busy_seen |= info.node.state == NodeState.BUSY
            await asyncio.sleep(0.2)
        stdout, stderr = (b.decode() for b in communicate.result())
        print(f"MEASURE real-model task: exit {proc.returncode} in {time.monotonic() - started:.0f} s; slowest info "
              f"RPC while generating {slowest * 1000:.0f} ms")
        assert busy_seen, "a node generating must report BUSY in its heartbeat"
        assert slowest < 1.0, "info must stay responsive while the model generates"
        # Whether the 0.5B gets its own expected values right is a quality figure (issue 5 / bench), not a
        # property of the swarm: it has written add(-5, -5) == 10 (seen), after which "not solved" (exit 1) is
        # the honest answer. What must hold either way: a finished verdict, never a crash or exit 3; a trace of
        # real model calls and real sandbox runs; and "PASSED" only with code that passes its tests here too.
        assert proc.returncode in (0, 1), stdout[-2000:] + stderr[-3000:]
        verdict = stdout.strip().splitlines()[-1]
        assert verdict.startswith("PASSED: solved" if proc.returncode == 0 else "NOT PASSED"), verdict
        trace = json.loads((out / "trace.json").read_text())
        nodes = [trace.get("trace", trace)]
        calls = runs = 0
        while nodes:
            node = nodes.pop()
            calls += node.get("llm_calls", 0)
            runs += len(node.get("tests", []))
            nodes += node.get("children", [])
        assert calls >= 2 and runs >= 1, trace
        code_file = next(p for p in out.glob("*.py") if not p.name.startswith("test_"))
        assert "def add" in code_file.read_text()
        if proc.returncode == 0:
            from rcp.sandbox import DockerSandbox, SandboxLimits

            box = await DockerSandbox.create(sandbox_image, SandboxLimits(timeout_s=60))
            try:
                files = {p.name: p.read_text() for p in out.glob("*.py")}
                report = await box.run(files, "python3 -m pytest -q -p no:cacheprovider")
            finally:
                await box.close()
            assert report.ok and report.tests_failed == 0 and report.tests_passed, report
    finally:
        if conn is not None:
            await conn.close()
        swarm.stop()
