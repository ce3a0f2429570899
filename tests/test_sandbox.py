"""The Docker sandbox against a real engine: results, limits, configuration, cleanup and the CLI.

Hostile programs (endless loop, fork bomb, memory and disk fillers, output flood, network, host files, writes
outside, symlinks, privilege attempts, daemons) are in ``tests/test_hostile.py``, through the solver's own path.

Tests marked ``docker`` skip only when Docker is unreachable (the ``sandbox_image`` fixture builds the image if
missing). Nothing here sends a packet anywhere: the network test only lists interfaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import docker
import pytest

from rcp.errors import DockerUnavailableError, SandboxImageMissingError
from rcp.sandbox import (
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    LABEL_PID_START,
    OUTPUT_CEILING_FACTOR,
    DockerSandbox,
    SandboxLimits,
    _process_start,
    parse_pytest_summary,
    sweep_leftovers,
)
from rcp.settings import PROJECT_ROOT

LIMITS = SandboxLimits(timeout_s=30, memory_mb=256, cpus=1.0, pids=64, tmpfs_mb=64, file_size_mb=16,
                       output_bytes=64 * 1024)
PYTEST = ["python3", "-m", "pytest", "-q"]


# --- pytest summary parser (no Docker) ------------------------------------------------------------------------

@pytest.mark.parametrize("output, expected", [
    ("..\n2 passed in 0.01s\n", (2, 0)),
    ("=========== 1 failed, 2 passed, 1 warning in 0.12s ===========", (2, 1)),
    ("E   boom\n=== 3 failed, 1 passed, 2 errors in 1.50s ===\n", (1, 5)),
    ("ERROR test_x.py\n!!! Interrupted: 1 error during collection !!!\n1 error in 0.05s\n", (0, 1)),
    ("\nno tests ran in 0.01s\n", (0, 0)),
    ("=== 4 passed, 1 skipped, 1 xfailed, 2 deselected in 65.20s (0:01:05) ===", (4, 0)),
    ("1 passed in 0.01s\nlater noise\n2 failed in 0.30s\n", (0, 2)),  # the last summary wins
    ("hello\nTraceback (most recent call last):\nKilled\n", None),
    ("I passed in school\n", None),
    ("", None),
])
def test_parse_pytest_summary(output, expected):
    assert parse_pytest_summary(output) == expected


# --- Docker ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def sandbox(sandbox_image):
    sb = await DockerSandbox.create(sandbox_image, LIMITS)
    yield sb
    await sb.close()


def _containers_of(pid: int) -> list[dict]:
    client = docker.from_env()
    try:
        return client.api.containers(all=True, filters={"label": [f"{LABEL}=1", f"{LABEL_PID}={pid}"]})
    finally:
        client.close()


CODE = "def add(a, b):\n    return a + b\n"
GOOD_TESTS = ("from mod import add\n\ndef test_add():\n    assert add(2, 3) == 5\n\n"
              "def test_zero():\n    assert add(0, 0) == 0\n")
BAD_TESTS = GOOD_TESTS + "\ndef test_wrong():\n    assert add(2, 2) == 5, 'two and two make four, not five'\n"


@pytest.mark.docker
async def test_passing_and_failing_pytest_runs_are_told_apart(sandbox):
    good = await sandbox.run({"mod.py": CODE, "test_mod.py": GOOD_TESTS}, PYTEST)
    assert good.ok and good.exit_code == 0
    assert (good.tests_passed, good.tests_failed) == (2, 0)
    bad = await sandbox.run({"mod.py": CODE, "test_mod.py": BAD_TESTS}, PYTEST)
    assert not bad.ok and bad.exit_code == 1
    assert (bad.tests_passed, bad.tests_failed) == (2, 1)
    assert "two and two make four, not five" in bad.stdout and "test_wrong" in bad.stdout
    assert not bad.timed_out and not bad.oom_killed and bad.image == sandbox.image


@pytest.mark.docker
async def test_collection_error_counts_as_failure_and_subdirs_work(sandbox):
    report = await sandbox.run({"pkg/__init__.py": "", "pkg/mod.py": "def f(:\n", "tests/test_f.py":
                                "from pkg.mod import f\n\ndef test_f():\n    assert f()\n"}, PYTEST)
    assert report.exit_code == 2 and (report.tests_passed, report.tests_failed) == (0, 1)
    assert "SyntaxError" in report.stdout
    nothing = await sandbox.run({"empty.py": ""}, PYTEST)
    assert nothing.exit_code == 5 and (nothing.tests_passed, nothing.tests_failed) == (0, 0)


@pytest.mark.docker
async def test_single_py_file_runs_without_cmd_and_output_is_split(sandbox):
    report = await sandbox.run({"main.py": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"})
    assert (report.exit_code, report.stdout, report.stderr) == (3, "out\n", "err\n")
    assert report.tests_passed is None  # not a pytest run
    with pytest.raises(ValueError):
        await sandbox.run({"a.py": "", "b.py": ""})  # two candidates and no cmd
    with pytest.raises(ValueError):
        await sandbox.run({"../escape.py": "print(1)"})
    with pytest.raises(ValueError):
        await sandbox.run({"a.py": "print(1)"}, collect=["/etc/passwd"])


PIDS_PROBE = """
import os, time
children = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            os.close(1)  # don't hold the exec's output open: the engine would wait for it after the parent exits
            os.close(2)
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as e:
    print(children, e.errno)
"""


@pytest.mark.docker
async def test_pids_limit_stops_forking(sandbox):
    report = await sandbox.run({"probe.py": PIDS_PROBE}, timeout=20)
    children, errno_ = map(int, report.stdout.split())
    assert errno_ == 11  # EAGAIN from the pids cgroup
    assert 50 <= children < LIMITS.pids  # docker-init, sleep and the probe itself hold the rest


@pytest.mark.docker
async def test_sigkill_without_oom_is_not_flagged_as_oom(sandbox):
    # The OOM case itself is in test_hostile.py; here the flag must not come from a plain non-zero exit.
    plain = await sandbox.run({"a.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"})
    assert plain.exit_code == 137 and not plain.oom_killed


@pytest.mark.docker
async def test_output_below_the_ceiling_is_truncated_not_killed(sandbox):
    # A flood past the ceiling is in test_hostile.py; below it the output is counted and cut, and the run completes.
    chatty = await sandbox.run({"c.py": "import sys\nsys.stderr.write('e' * 200_000)\nprint('done')\n"})
    cap = LIMITS.output_bytes
    assert 200_000 < OUTPUT_CEILING_FACTOR * cap
    assert chatty.ok and chatty.output_truncated and not chatty.output_limit_exceeded
    assert chatty.stderr_bytes == 200_000 and len(chatty.stderr) == cap and chatty.stdout == "done\n"


@pytest.mark.docker
async def test_pytest_summary_survives_truncated_output(sandbox):
    tests = "def test_noisy():\n    print('y' * 300_000)\n    assert False\n"
    report = await sandbox.run({"test_noisy.py": tests}, PYTEST)
    assert report.output_truncated and not report.output_limit_exceeded
    assert (report.tests_passed, report.tests_failed) == (0, 1)


LOCKDOWN_PROBE = """
import os, resource
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
st = os.stat("/work")
def cg(path):
    try:
        return open(path).read().strip()
    except OSError:
        return "-"
mounts = {line.split()[1]: line.split()[3] for line in open("/proc/self/mounts")}
print(os.getuid(), os.getgid(), status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip())
print(oct(st.st_mode & 0o777), st.st_uid, mounts["/"].split(",")[0], mounts["/work"])
print(resource.getrlimit(resource.RLIMIT_FSIZE)[0], resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(cg("/sys/fs/cgroup/pids/pids.max"), cg("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
      cg("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"), cg("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
print(os.path.exists("/var/run/docker.sock"), os.path.exists("/run/docker.sock"),
      open("/proc/1/cmdline").read().split("\\0")[0])
print(" ".join(sorted(os.environ)))
print(os.environ["HOME"], os.getcwd())
"""


@pytest.mark.docker
async def test_container_is_locked_down(sandbox):
    client = docker.from_env()
    image_env = {e.split("=", 1)[0] for e in client.images.get(sandbox.image).attrs["Config"].get("Env") or []}
    client.close()
    report = await sandbox.run({"probe.py": LOCKDOWN_PROBE})
    assert report.ok, report.stderr
    ids, work, rlimits, cgroups, sockets, env, home = report.stdout.splitlines()
    # Non-root, no capabilities (the bounding set too: cap_drop ALL, so not even a setuid file gets any back),
    # no_new_privs.
    assert ids == "1000 1000 0000000000000000 0000000000000000 1"
    mode, uid, root_opts, work_opts = work.split()
    assert (mode, uid, root_opts) == ("0o700", "1000", "ro")
    assert f"size={LIMITS.tmpfs_mb * 1024}k" in work_opts and "nosuid" in work_opts
    assert rlimits == f"{LIMITS.file_size_mb << 20} 1024"
    memory = str(LIMITS.memory_mb << 20)
    assert cgroups.split() == [str(LIMITS.pids), memory, memory, "100000"]  # memsw == memory: no swap; 1 CPU
    assert sockets == "False False /sbin/docker-init"  # no Docker socket; pid 1 is the init that reaps orphans
    # Only our variables, Docker's HOSTNAME, sh's PWD and the image's own ENV lines: nothing of the host's.
    assert set(env.split()) - image_env == {"HOME", "LANG", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
                                            "HOSTNAME", "PWD", "PATH"} - image_env
    assert home == "/work /work"


@pytest.mark.docker
async def test_event_loop_stays_responsive_and_runs_overlap(sandbox):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    code = {"s.py": "import time\ntime.sleep(2)\nprint('slept')\n"}
    reports = await asyncio.gather(sandbox.run(code), sandbox.run(code))
    elapsed = time.monotonic() - started
    tick_task.cancel()
    assert all(r.ok and r.stdout == "slept\n" for r in reports)
    assert elapsed < 3.8  # the two runs overlapped
    assert ticks >= 0.6 * elapsed / 0.05  # the loop kept ticking while the runs blocked in threads


@pytest.mark.docker
async def test_cancelling_a_run_removes_its_container(sandbox):
    task = asyncio.create_task(sandbox.run({"loop.py": "while True:\n    pass\n"}, timeout=60))
    for _ in range(100):  # wait until the container exists
        await asyncio.sleep(0.05)
        if _containers_of(os.getpid()):
            break
    assert _containers_of(os.getpid())
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert not _containers_of(os.getpid())


def _labelled_sleeper(client: docker.DockerClient, image: str, labels: dict[str, str]) -> str:
    return client.api.create_container(image, entrypoint=["sleep", "120"], labels={LABEL: "1", **labels},
                                       host_config=client.api.create_host_config(network_mode="none",
                                                                                 auto_remove=True))["Id"]


@pytest.mark.docker
def test_sweep_removes_only_containers_of_dead_owners(sandbox_image):
    client = docker.from_env()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])  # stands in for another rcp process sharing the engine
    host = socket.gethostname()
    ids = {}
    try:
        ids["dead"] = _labelled_sleeper(client, sandbox_image, {LABEL_HOST: host, LABEL_PID: str(dead.pid)})
        ids["live"] = _labelled_sleeper(client, sandbox_image, {LABEL_HOST: host, LABEL_PID: str(live.pid),
                                                                LABEL_PID_START: _process_start(live.pid)})
        # Same pid as the live process but another start time: the pid was reused, the owner is dead.
        ids["reused"] = _labelled_sleeper(client, sandbox_image, {LABEL_HOST: host, LABEL_PID: str(live.pid),
                                                                  LABEL_PID_START: "1"})
        ids["other_host"] = _labelled_sleeper(client, sandbox_image, {LABEL_HOST: host + "-elsewhere",
                                                                      LABEL_PID: str(dead.pid)})
        for cid in ids.values():
            client.api.start(cid)
        sweep_leftovers(client)
        present = {c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})}
        assert ids["dead"] not in present and ids["reused"] not in present
        assert ids["live"] in present and ids["other_host"] in present
    finally:
        live.kill()
        live.wait()
        for cid in ids.values():
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
        client.close()


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcp.sandbox", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.docker
def test_cli_run_prints_a_json_report(sandbox_image, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("print('hello from the sandbox')\n")
    result = _cli("run", str(script), "--sandbox-image", sandbox_image)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["exit_code"] == 0 and report["stdout"] == "hello from the sandbox\n"

    (tmp_path / "mod.py").write_text(CODE)
    (tmp_path / "test_mod.py").write_text(BAD_TESTS)
    result = _cli("run", str(tmp_path / "mod.py"), str(tmp_path / "test_mod.py"), "--cmd", "python3 -m pytest -q",
                  "--timeout", "30", "--sandbox-image", sandbox_image)
    report = json.loads(result.stdout)
    assert not report["ok"] and (report["tests_passed"], report["tests_failed"]) == (2, 1)


@pytest.mark.docker
def test_killed_cli_run_leaves_a_container_the_next_create_sweeps(sandbox_image, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("while True:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-m", "rcp.sandbox", "run", str(script), "--timeout", "60",
                             "--sandbox-image", sandbox_image], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _containers_of(proc.pid):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no finally of the CLI runs
        proc.wait()
    assert _containers_of(proc.pid)  # orphaned, still spinning (it would end itself after 60 + grace s)

    async def create_and_close():
        await (await DockerSandbox.create(sandbox_image, LIMITS)).close()

    asyncio.run(create_and_close())
    assert not _containers_of(proc.pid)


def test_cli_reports_unreachable_docker_in_one_line():
    result = _cli("run", str(PROJECT_ROOT / "config.py"), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Docker is not reachable")
    assert "sudo dockerd" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.docker
def test_cli_reports_a_missing_image_in_one_line(sandbox_image):
    result = _cli("run", str(PROJECT_ROOT / "config.py"), "--sandbox-image", "rcp-sandbox:no-such-tag")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "python -m rcp.sandbox build-image" in lines[0], result.stderr


@pytest.mark.docker
async def test_create_raises_typed_errors(monkeypatch, sandbox_image):
    with pytest.raises(SandboxImageMissingError):
        await DockerSandbox.create("rcp-sandbox:no-such-tag", LIMITS)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailableError):
        await DockerSandbox.create(sandbox_image, LIMITS)
