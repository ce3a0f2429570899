"""Hostile programs against the real Docker sandbox: each must be contained, reported, and leave nothing behind.

Every case goes through the path generated code takes: ``DockerSandbox.run`` with ``{<module>.py, test_<module>.py}``
and the solver's own pytest command (``rcp.solver.PYTEST``), judged the way the solver judges it. Each test asserts
concrete evidence from three places: the report (exit code, ``timed_out``, ``oom_killed``, output flags, test
counts), the code's own view from inside (probes written as the pytest tests of the hostile module), and the host
(``HostWatch`` below: the run's processes seen in the host's /proc while it runs and none of them after it, the
container's configuration as the engine reports it, and no labelled container left). Module names carry a random
token, so the host can pick the run's processes out of its own process table by their command line.

Nothing here sends a packet anywhere but loopback: the network case only lists interfaces, routes and sockets, and
the raw-socket case only opens sockets. ``test_container_runtime_versions`` records the engine's runc, containerd
and engine versions and checks them against known container escapes.
"""

from __future__ import annotations

import gzip
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import docker
import pytest

from rcp.sandbox import LABEL, LABEL_PID, OUTPUT_CEILING_FACTOR, DockerSandbox, SandboxLimits, SandboxReport
from rcp.solver import PYTEST, test_counts

pytestmark = pytest.mark.docker

LIMITS = SandboxLimits(timeout_s=30, memory_mb=256, cpus=1.0, pids=64, tmpfs_mb=64, file_size_mb=16,
                       output_bytes=64 * 1024)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@pytest.fixture
async def sandbox(sandbox_image):
    sb = await DockerSandbox.create(sandbox_image, LIMITS)
    yield sb
    await sb.close()


@pytest.fixture
def token() -> str:
    return secrets.token_hex(6)


def _our_containers() -> list[dict]:
    """What ``docker ps -a --filter label=rcp.sandbox=1 --filter label=rcp.sandbox.pid=<this pid>`` lists."""
    client = docker.from_env(timeout=10)
    try:
        return client.api.containers(all=True, filters={"label": [f"{LABEL}=1", f"{LABEL_PID}={os.getpid()}"]})
    finally:
        client.close()


def _host_procs(needle: bytes, where: str = "cmdline") -> list[int]:
    """Host pids whose /proc/<pid>/<where> contains ``needle`` (the host sees every container process)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/{where}", "rb") as f:
                if needle in f.read():
                    found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


class HostWatch:
    """Watches one sandbox run from the host, in a thread, while the run goes on.

    Records the sandbox containers of this process (ids and the engine's ``inspect`` of each), and the host's view
    of the processes whose command line holds ``token``: the most seen at once, their summed anonymous RSS,
    their CPU time.
    ``leftovers()`` after the run lists any host process still inside one of those containers' cgroups and any
    token process: a daemon that outlived its run would show up in both.
    """

    def __init__(self, token: str) -> None:
        self.token = token.encode()
        self.max_procs = 0
        self.max_rss = 0
        self.cpu_ticks: dict[int, int] = {}  # pid -> last utime + stime seen; a lower bound of what it used
        self.inspects: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> HostWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / CLK_TCK

    def _loop(self) -> None:
        client = docker.from_env(timeout=10)
        try:
            while not self._stop.is_set():
                for info in client.api.containers(filters={"label": [f"{LABEL}=1", f"{LABEL_PID}={os.getpid()}"]}):
                    if info["Id"] not in self.inspects:
                        try:
                            self.inspects[info["Id"]] = client.api.inspect_container(info["Id"])
                        except docker.errors.NotFound:
                            pass
                rss = 0
                pids = _host_procs(self.token)
                for pid in pids:
                    try:
                        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        self.cpu_ticks[pid] = int(stat[11]) + int(stat[12])  # utime, stime: fields 14, 15
                        # Anonymous memory only: the shared pages of python3 and its libraries are charged to
                        # whichever cgroup read them first, and may add some MB to RSS outside the limit.
                        status = Path(f"/proc/{pid}/status").read_text()
                        rss += int(re.search(r"^RssAnon:\s+(\d+) kB", status, re.M)[1]) * 1024
                    except (OSError, IndexError, ValueError, TypeError):
                        pass
                self.max_procs = max(self.max_procs, len(pids))
                self.max_rss = max(self.max_rss, rss)
                self._stop.wait(0.03)
        finally:
            client.close()

    def leftovers(self) -> list[int]:
        pids = set(_host_procs(self.token))
        for cid in self.inspects:
            pids.update(_host_procs(cid.encode(), "cgroup"))
        return sorted(pids)


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After every hostile case: no sandbox container of this process, running or stopped."""
    yield
    left = _our_containers()
    assert not left, f"sandbox containers left: {[c['Names'] for c in left]}"


async def solver_run(sandbox: DockerSandbox, module: str, code: str, tests: str, *, timeout: float = 30,
                     collect: tuple[str, ...] = ()) -> SandboxReport:
    """One run exactly as ``Solver._run_tests`` makes it."""
    return await sandbox.run({f"{module}.py": code, f"test_{module}.py": tests}, [*PYTEST, f"test_{module}.py"],
                             timeout=timeout, collect=collect)


def solved(report: SandboxReport) -> bool:
    """The solver's verdict on a run (``_Candidate.solved`` with ``test_counts``)."""
    passed, failed = test_counts(report)
    if report.exit_code not in (0, None) and failed == 0:
        failed = 1
    return report.exit_code == 0 and not report.timed_out and failed == 0 and passed > 0


def assert_probes_passed(report: SandboxReport, n: int) -> None:
    """The in-container probes (pytest tests) all passed: every containment check held from the inside."""
    assert solved(report) and (report.tests_passed, report.tests_failed) == (n, 0), report.stdout + report.stderr


# The stdout of the `docker exec` is a pipe; pytest keeps a dup of it while it captures fds 1 and 2 into files in
# /tmp. Hostile code that wants the real stream finds the first pipe among its fds (fd 0 is /dev/null).
RAW_STDOUT = """
import os, stat

def raw_stdout():
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
    raise RuntimeError("no pipe among the fds")
"""


# --- 1. infinite loop ----------------------------------------------------------------------------------------

SPIN = """
import os

def spin():
    for _ in range(2):  # three spinning processes: more than the one CPU the container gets
        if os.fork() == 0:
            break
    while True:
        pass
"""


SPIN_TESTS = """
import os
from {m} import spin

def test_cpu_quota_is_one_cpu():  # runs first
    if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):  # cgroup v1
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
    else:
        quota, period = map(int, open("/sys/fs/cgroup/cpu.max").read().split())
    assert quota == period

def test_spin():
    spin()
"""


async def test_infinite_loop_is_killed_at_the_timeout_and_held_to_one_cpu(sandbox, token):
    module = f"spin_{token}"
    started = time.monotonic()
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, SPIN, SPIN_TESTS.format(m=module), timeout=3)
    elapsed = time.monotonic() - started
    assert report.timed_out and report.exit_code is None and not solved(report)
    assert report.stdout == "."  # the quota probe passed; the spinner never finished
    assert 2.9 <= report.duration_s < 5 and elapsed < 12
    assert watch.max_procs >= 3  # the host saw the three spinners ...
    # ... sharing one CPU's quota (an upper bound only: on a busy host they get less anyway)
    assert watch.cpu_s <= 1.25 * report.duration_s + 0.5
    assert not watch.leftovers()


# --- 2. fork bomb --------------------------------------------------------------------------------------------

FORK_BOMB = """
import os, time

def bomb():
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
"""


async def test_fork_bomb_is_held_by_the_pids_limit(sandbox, token):
    module = f"bomb_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, FORK_BOMB, f"from {module} import bomb\n\ndef test_bomb():\n"
                                  "    bomb()\n", timeout=4)
    assert report.timed_out and not report.oom_killed and not solved(report) and report.duration_s < 7
    # The host saw the bomb go off, and never more processes than the pids limit allows the whole container.
    assert 20 <= watch.max_procs <= LIMITS.pids, watch.max_procs
    assert not watch.leftovers()
    assert subprocess.run(["true"]).returncode == 0  # the host still forks
    after = await sandbox.run({"a.py": "print('alive')"})  # and the engine still starts sandboxes
    assert after.ok and after.stdout == "alive\n"


# --- 3. memory bomb ------------------------------------------------------------------------------------------

MEMORY_BOMB = """
import time

def hog():
    chunks = []
    for _ in range(256):  # 4 GiB in 16 MiB steps, each page written so that it is really charged
        chunks.append(b"\\1" * (16 << 20))
        time.sleep(0.01)
    return len(chunks)
"""


async def test_memory_bomb_is_oom_killed_and_reported(sandbox, token):
    module = f"hog_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, MEMORY_BOMB, f"from {module} import hog\n\ndef test_hog():\n"
                                  "    assert hog() == 256\n")
    assert report.oom_killed and report.exit_code == 137 and not report.timed_out and not solved(report)
    limit = LIMITS.memory_mb << 20
    assert 64 << 20 <= watch.max_rss <= limit, watch.max_rss  # it grew, as seen from the host, but not past the cap
    assert not watch.leftovers()


# --- 4. disk filler ------------------------------------------------------------------------------------------

DISK_FILLER = """
import errno, os

def write(paths, mb_per_file):
    written = 0
    try:
        for path in paths:
            with open(path, "wb") as f:
                for _ in range(mb_per_file):
                    f.write(b"x" * (1 << 20))
                    f.flush()
                    written += 1 << 20
    except OSError as e:
        return errno.errorcode[e.errno], written
    return "none", written

def clear(prefix):
    d, base = os.path.split(prefix)
    for name in os.listdir(d):
        if name.startswith(base):
            os.remove(os.path.join(d, name))
"""

DISK_TESTS = """
from {m} import clear, write

MB = 1 << 20

def test_work_dir_fills_up():
    err, n = write([f"/work/many{{i}}" for i in range(100)], 8)  # 800 MB offered
    clear("/work/many")
    assert err == "ENOSPC" and 40 * MB <= n <= {tmpfs_mb} * MB

def test_one_file_stops_at_the_file_size_limit():
    err, n = write(["/work/big"], 64)
    clear("/work/big")
    assert err == "EFBIG" and n == {fsize_mb} * MB

def test_tmp_fills_up():
    err, n = write([f"/tmp/t{{i}}" for i in range(100)], 8)
    clear("/tmp/t")
    assert err == "ENOSPC" and n <= 16 * MB

def test_shm_fills_up():
    err, n = write([f"/dev/shm/s{{i}}" for i in range(100)], 8)
    clear("/dev/shm/s")
    assert err == "ENOSPC" and n <= 8 * MB
"""


async def test_disk_filler_hits_the_tmpfs_and_file_size_limits(sandbox, token):
    module = f"fill_{token}"
    client = docker.from_env()
    docker_root = client.info().get("DockerRootDir", "/var/lib/docker")
    client.close()
    free_before = shutil.disk_usage(docker_root).free
    report = await solver_run(sandbox, module, DISK_FILLER, DISK_TESTS.format(
        m=module, tmpfs_mb=LIMITS.tmpfs_mb, fsize_mb=LIMITS.file_size_mb))
    assert_probes_passed(report, 4)
    assert not report.oom_killed and not report.timed_out
    # Nothing reached the host's disk: the writable places are all memory-backed tmpfs. (Generous margin: other
    # jobs share this disk; without the limits the filler alone would write ~1 GB.)
    assert free_before - shutil.disk_usage(docker_root).free < 200 << 20


# --- 5. 100 MB of output -------------------------------------------------------------------------------------

FLOOD = RAW_STDOUT + """
def flood():
    fd = raw_stdout()
    chunk = b"x" * (1 << 20)
    for _ in range(100):  # 100 MB straight into the exec's stdout, past pytest's capture
        os.write(fd, chunk)
"""


async def test_100_mb_of_output_is_capped_and_killed(sandbox, token):
    module = f"flood_{token}"
    cap = LIMITS.output_bytes
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = await solver_run(sandbox, module, FLOOD,
                                  f"from {module} import flood\n\ndef test_flood():\n    flood()\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.output_limit_exceeded and report.output_truncated and report.exit_code is None
    assert not solved(report) and not report.timed_out
    assert len(report.stdout.encode()) == cap and report.stdout == "x" * cap
    assert OUTPUT_CEILING_FACTOR * cap < report.stdout_bytes < 100_000_000
    assert time.monotonic() - started < 15  # killed, not read to the end
    assert peak < 16 << 20, peak  # the host side held the capped head and tail, never the flood


# --- 6. network ----------------------------------------------------------------------------------------------

NET_TESTS = """
import os, socket

def test_only_loopback_interface():
    assert sorted(os.listdir("/sys/class/net")) == ["lo"]
    names = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
    assert names == ["lo"]

def test_no_routes():
    assert open("/proc/net/route").read().splitlines()[1:] == []

def test_no_host_unix_sockets():
    # The host's abstract sockets (containerd-shim's, CVE-2020-15257) live in the host's network namespace.
    text = open("/proc/net/unix").read()
    assert "containerd" not in text and "docker" not in text

def test_loopback_works_and_nothing_else_is_configured():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname(), timeout=2)
    conn, _ = server.accept()
    client.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    for s in (client, conn, server):
        s.close()
"""


async def test_network_has_only_loopback(sandbox, token):
    module = f"net_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, "", NET_TESTS)
    assert_probes_passed(report, 4)
    (config,) = watch.inspects.values()
    assert config["HostConfig"]["NetworkMode"] == "none" and config["Config"].get("NetworkDisabled") is True


# --- 7. host files and host environment ----------------------------------------------------------------------

HOST_TESTS = """
import os

SECRET = {secret!r}

def test_secret_env_var_not_visible():
    assert "HOSTILE_TEST_SECRET" not in os.environ and SECRET not in os.environ.values()
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            blob = open(f"/proc/{{pid}}/environ", "rb").read()
        except OSError:
            continue
        assert SECRET.encode() not in blob and b"HOSTILE_TEST_SECRET" not in blob, pid

def test_host_paths_absent():
    for path in [{host_file!r}, {host_dir!r}, "/work/main", "/root/.ssh", "/home/cloudsdk", "/var/lib/docker",
                 "/var/run/docker.sock", "/run/containerd", "/etc/docker"]:
        assert not os.path.exists(path), path
    assert not os.access("/root", os.R_OK) or not os.listdir("/root")

def test_no_host_process_visible():
    names = set()
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            names.add(os.path.basename(open(f"/proc/{{pid}}/cmdline", "rb").read().split(b"\\0")[0].decode()))
        except OSError:
            pass
    assert names <= {{"docker-init", "sleep", "sh", "python3"}}, names

def test_only_docker_files_bind_mounted_and_read_only():
    # Mounts of a real (block-device) filesystem are files of the host: only the engine's own few, read-only.
    pseudo = {{"overlay", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}}
    host = {{}}
    for line in open("/proc/self/mountinfo"):
        fields, fs = line.split(" - ")[0].split(), line.split(" - ")[1].split()
        if fs[0] not in pseudo:
            host[fields[4]] = fields[5]
    allowed = {{"/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/usr/sbin/docker-init"}}
    assert host and set(host) <= allowed, host
    assert all(opts.split(",")[0] == "ro" for opts in host.values()), host
"""


async def test_host_files_and_environment_are_not_visible(sandbox, token, tmp_path, monkeypatch):
    secret = f"hostile-secret-{token}"
    monkeypatch.setenv("HOSTILE_TEST_SECRET", secret)
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    module = f"host_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, "", HOST_TESTS.format(
            secret=secret, host_file=str(host_file), host_dir=str(tmp_path)))
    assert_probes_passed(report, 4)
    (config,) = watch.inspects.values()
    # Nothing of the host is mounted, and only the sandbox's own variables (plus the image's) are set.
    assert config["Mounts"] == [] and not config["HostConfig"].get("Binds")
    assert not any(secret in e for e in config["Config"]["Env"])
    assert not config["HostConfig"]["Privileged"] and config["HostConfig"]["CapDrop"] == ["ALL"]


# --- 8. writing outside the work dir -------------------------------------------------------------------------

WRITE_TESTS = """
import errno, os

DENIED = ("EROFS", "EACCES", "EPERM", "ENOENT")

def attempt(fn, *args):
    try:
        fn(*args)
        return "done"
    except OSError as e:
        return errno.errorcode[e.errno]

def write(path, text="x"):
    with open(path, "w") as f:
        f.write(text)

def test_writes_outside_fail():
    paths = ["/evil", "/etc/evil", "/etc/passwd", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
             "/usr/lib/python3/dist-packages/evil.py", "/var/evil", "/var/tmp/evil", "/root/evil", "/work/../evil",
             "/dev/evil",
             "/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern",
             # raising its own limits from inside, or escaping via a cgroup v1 release_agent (CVE-2022-0492)
             "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/notify_on_release", "/sys/fs/cgroup/memory/release_agent",
             "/sys/kernel/uevent_helper"]
    results = {p: attempt(write, p) for p in paths}
    assert all(r in DENIED for r in results.values()), results

def test_cannot_shield_itself_from_the_oom_killer():
    # Lowering oom_score_adj needs CAP_SYS_RESOURCE; the host would then kill something else first.
    for path in ("/proc/self/oom_score_adj", "/proc/1/oom_score_adj"):
        assert attempt(write, path, "-1000") == "EACCES", path
    assert open("/proc/self/oom_score_adj").read().strip() == "1000"

def test_other_changes_outside_fail():
    results = {
        "mkdir /x": attempt(os.mkdir, "/x"),
        "rename passwd": attempt(os.rename, "/etc/passwd", "/etc/p"),
        "chmod passwd": attempt(os.chmod, "/etc/passwd", 0o666),
        "symlink /etc": attempt(os.symlink, "/work", "/etc/w"),
        "hardlink passwd": attempt(os.link, "/etc/passwd", "/work/passwd"),
        "unlink python": attempt(os.unlink, "/usr/bin/python3"),
    }
    assert all(r in DENIED + ("EXDEV",) for r in results.values()), results

def test_the_scratch_places_are_writable():
    for path in ["/work/ok", "/tmp/ok", "/dev/shm/ok"]:
        assert attempt(write, path) == "done", path
"""


async def test_writing_outside_the_work_dir_fails(sandbox, token):
    module = f"write_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, "", WRITE_TESTS)
    assert_probes_passed(report, 4)
    (config,) = watch.inspects.values()
    assert config["HostConfig"]["ReadonlyRootfs"] is True


# --- 9. symlinks planted in the output -----------------------------------------------------------------------

PLANT = """
import os

def plant(host_file, host_dir):
    os.symlink(host_file, "result.json")          # the output file the caller asks for -> a host path
    os.symlink(host_dir, "out")                   # a directory -> the host dir holding that file
    os.symlink("/etc", "etc")                     # -> a directory inside the container
    os.symlink("/proc/self/environ", "env.txt")
    os.makedirs("deep")
    os.symlink("/etc/passwd", "deep/leak.txt")
    os.mkfifo("fifo.txt")                         # would block a reader that opens it
    open("ok.json", "w").write('{"ok": true}')
    open("big.txt", "w").write("z" * 2_000_000)  # a regular file over collect_bytes
    return sorted(os.listdir("."))
"""


async def test_symlinks_in_the_output_are_never_followed(sandbox, token, tmp_path):
    host_file = tmp_path / "secret.txt"
    host_file.write_text("host secret, must stay put\n")
    stamp = host_file.stat()
    listing = sorted(p.name for p in tmp_path.iterdir())
    cwd_listing = sorted(os.listdir())
    module = f"plant_{token}"
    tests = (f"from {module} import plant\n\ndef test_plant():\n"
             f"    assert 'result.json' in plant({str(host_file)!r}, {str(tmp_path)!r})\n")
    wanted = ("result.json", "out/secret.txt", "etc/passwd", "env.txt", "deep/leak.txt", "fifo.txt", "big.txt",
              "nope.txt", "ok.json")
    report = await solver_run(sandbox, module, PLANT, tests, collect=wanted)
    assert_probes_passed(report, 1)
    # Regular files under collect_bytes only: no link followed, the fifo and the big file skipped, a missing name
    # simply absent.
    assert report.files == {"ok.json": '{"ok": true}'}
    # Nothing on the host was read through a link or written: same file, same stamp, no new files anywhere near.
    assert host_file.read_text() == "host secret, must stay put\n"
    assert (host_file.stat().st_mtime_ns, host_file.stat().st_ino) == (stamp.st_mtime_ns, stamp.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing and sorted(os.listdir()) == cwd_listing


# --- 10. privilege attempts ----------------------------------------------------------------------------------

PRIV_TESTS = """
import ctypes, errno, os, shutil, socket, stat, subprocess, time

libc = ctypes.CDLL(None, use_errno=True)

def status():
    return dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)

def test_no_capabilities_no_new_privs_seccomp_on():
    s = status()
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(s[cap], 16) == 0, (cap, s[cap])
    assert s["NoNewPrivs"].strip() == "1" and s["Seccomp"].strip() == "2"
    assert os.getuid() == os.geteuid() == 1000

def test_setuid_root_binary_gives_no_root():
    # su waits at its password prompt: read its uids from /proc meanwhile. Without no-new-privileges the
    # effective uid would be 0 here (checked by hand against a container without that option).
    assert os.stat("/usr/bin/su").st_mode & stat.S_ISUID and os.stat("/usr/bin/su").st_uid == 0
    p = subprocess.Popen(["/usr/bin/su", "root", "-c", "id"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(0.5)
    uids = [line.split()[1:] for line in open(f"/proc/{p.pid}/status") if line.startswith("Uid:")][0]
    p.kill()
    p.communicate()
    assert uids == ["1000"] * 4, uids

def test_chmod_u_plus_s_gives_nothing():
    # The work dir is nosuid and noexec: a planted binary does not even run, setuid bit or not.
    opts = {line.split()[1]: line.split()[3] for line in open("/proc/self/mounts")}
    assert {"nosuid", "noexec", "nodev"} <= set(opts["/work"].split(",")), opts["/work"]
    shutil.copy("/usr/bin/id", "/work/id")
    os.chmod("/work/id", 0o4755)
    try:
        subprocess.run(["/work/id", "-u"])
        raise AssertionError("a binary in the work dir ran")
    except PermissionError:
        pass
    try:
        os.chown("/work/id", 0, 0)
        raise AssertionError("chown to root worked")
    except PermissionError:
        pass
    for fn, arg in ((os.setuid, 0), (os.setgid, 0), (os.setgroups, [0])):
        try:
            fn(arg)
            raise AssertionError(f"{fn.__name__} worked")
        except PermissionError:
            pass

def test_mount_fails():
    os.mkdir("/work/m")
    assert libc.mount(b"none", b"/work/m", b"tmpfs", 0, None) == -1 and ctypes.get_errno() == errno.EPERM
    r = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", "/work/m"], capture_output=True)
    assert r.returncode != 0 and not os.path.ismount("/work/m")

def test_new_namespaces_and_chroot_fail():
    CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
    for flag in (CLONE_NEWUSER, CLONE_NEWNS):
        assert libc.unshare(flag) == -1 and ctypes.get_errno() == errno.EPERM, flag
    try:
        os.chroot("/work")
        raise AssertionError("chroot worked")
    except PermissionError:
        pass

def test_raw_sockets_refused():
    # Only opened, never used: no packet leaves.
    for family, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                (socket.AF_PACKET, socket.SOCK_RAW, 0)):
        try:
            socket.socket(family, kind, proto).close()
            raise AssertionError(f"raw socket {family} opened")
        except PermissionError:
            pass

def test_no_docker_socket():
    for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
        assert not os.path.exists(path), path
    sockets = []
    for top in ("/run", "/var/run", "/tmp", "/etc", "/"):
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath == "/":
                dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "usr", "work")]
            for name in filenames:
                try:
                    if stat.S_ISSOCK(os.lstat(os.path.join(dirpath, name)).st_mode):
                        sockets.append(os.path.join(dirpath, name))
                except OSError:
                    pass
    assert sockets == []
"""


async def test_privilege_attempts_fail(sandbox, token):
    module = f"priv_{token}"
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, "", PRIV_TESTS)
    assert_probes_passed(report, 7)
    (config,) = watch.inspects.values()
    assert config["HostConfig"]["SecurityOpt"] == ["no-new-privileges"] and config["Config"]["User"] == "1000:1000"


# --- 11. conftest.py doing mischief at collection time -------------------------------------------------------

# A module the plan happens to call "conftest": pytest loads it before collecting anything. It tries to make
# itself permanent, leaves a daemon behind, and then hangs collection.
CONFTEST = RAW_STDOUT + """
import errno, os, sys, time

def _try(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
        return "written"
    except OSError as e:
        return errno.errorcode[e.errno]

_targets = ["/usr/lib/python3/dist-packages/sitecustomize.py", "/usr/lib/python3.11/sitecustomize.py",
            "/usr/lib/python3/dist-packages/zz_evil.pth", "/usr/local/lib/python3.11/dist-packages/evil.pth",
            "/usr/lib/python3/dist-packages/_pytest/evil.py"]
_results = " ".join(f"{p}={_try(p, 'import os')}" for p in _targets)
os.write(raw_stdout(), f"PERSIST {_results}\\n".encode())
_try("/tmp/marker", "left by the conftest")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/python3", ["python3", "-c", "import time; time.sleep(600)", "TOKEN"])
    os._exit(0)
while True:
    time.sleep(1)
"""

AFTER_CONFTEST = """
import os

def test_nothing_persisted():
    assert not os.path.exists("/tmp/marker")
    for path in ("/usr/lib/python3/dist-packages/sitecustomize.py", "/usr/lib/python3/dist-packages/zz_evil.pth",
                 "/usr/local/lib/python3.11/dist-packages/evil.pth", "/usr/lib/python3/dist-packages/_pytest/evil.py"):
        assert not os.path.exists(path), path
    assert open("/usr/lib/python3.11/sitecustomize.py").read() != "import os"  # Debian's own file, untouched
"""


async def test_conftest_mischief_at_collection_is_contained(sandbox, token):
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, "conftest", CONFTEST.replace("TOKEN", token),
                                  "import conftest\n\ndef test_x():\n    assert True\n", timeout=4)
    assert report.timed_out and report.exit_code is None and not solved(report)
    line = next(ln for ln in report.stdout.splitlines() if ln.startswith("PERSIST "))
    results = dict(item.split("=") for item in line.split()[1:])
    assert len(results) == 5 and set(results.values()) <= {"EROFS", "EACCES", "ENOENT"}, results
    assert watch.max_procs >= 1  # its daemon was running, seen from the host ...
    assert not watch.leftovers()  # ... and is gone with the container
    # A fresh run sees none of it.
    after = await solver_run(sandbox, f"after_{token}", "", AFTER_CONFTEST)
    assert_probes_passed(after, 1)


# --- 12. a daemon that outlives its test ---------------------------------------------------------------------

DAEMON = """
import os, signal, sys, time

def daemonise(token, keep_fds):
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    if keep_fds:  # stays a copy of pytest: keeps its pipes to the exec open
        while True:
            time.sleep(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in range(3):
        os.dup2(devnull, fd)
    os.closerange(3, 1024)
    os.execv("/usr/bin/python3", ["python3", "-c", "import time; time.sleep(600)", token])
"""


async def test_daemon_does_not_outlive_its_run(sandbox, token):
    module = f"daemon_{token}"
    tests = (f"import time\nfrom {module} import daemonise\n\ndef test_spawn():\n"
             f"    daemonise({token!r}, keep_fds=False)\n    daemonise({token!r}, keep_fds=True)\n"
             "    time.sleep(1)\n")
    with HostWatch(token) as watch:
        report = await solver_run(sandbox, module, DAEMON, tests)
    # The test itself passed and the run ended: the daemon holding the pipes cost ~2 s, not the timeout.
    assert_probes_passed(report, 1)
    assert report.duration_s < 10 and not report.timed_out
    # The host saw pytest, both daemons (one exec'd with the token as an argument, one a fork of pytest) ...
    assert watch.max_procs >= 3
    assert watch.inspects  # ... in a container it saw ...
    assert not watch.leftovers()  # ... and after the run there is no process left in that container's cgroup


# --- 13. killing its own container ---------------------------------------------------------------------------

async def test_code_killing_its_own_container_is_a_failed_run(sandbox, token):
    for i, kill in enumerate(["os.kill(1, signal.SIGTERM)", "os.kill(-1, signal.SIGKILL)"]):
        module = f"kill{i}_{token}"
        code = f"import os, signal, time\n\ndef go():\n    {kill}\n    time.sleep(5)\n"
        report = await solver_run(sandbox, module, code, f"from {module} import go\n\ndef test_go():\n    go()\n")
        # The code's failure, not an infrastructure error: the solver retries it like any crash.
        assert report.exit_code not in (0, None) or report.timed_out, report
        assert not solved(report) and report.duration_s < 5
    after = await sandbox.run({"a.py": "print('alive')"})
    assert after.ok


# --- the container runtime against known escapes -------------------------------------------------------------

def _version(text: str) -> tuple[int, ...]:
    """(major, minor, patch) of "1.1.5+ds1", "1.1.12", "1.0.0-rc6"; an -rcN release sorts as a fourth number."""
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)(?:-rc\.?(\d+))?", text.strip())
    if not m:
        return ()
    return (*map(int, m.groups()[:3]), int(m[4]) if m[4] else 10 ** 6)  # a final release sorts after its rcs


def _debian_changelog_mentions(package: str, cve: str) -> bool:
    """True if the installed Debian package's changelog names ``cve`` (a distribution backport of the fix)."""
    path = Path(f"/usr/share/doc/{package}/changelog.Debian.gz")
    try:
        return cve in gzip.open(path, "rt", errors="replace").read()
    except OSError:
        return False


def test_container_runtime_versions(sandbox_image, record_property):
    """Records engine, containerd and runc versions; fails on a runc with a known escape through ``exec``.

    rcp runs generated code through ``docker exec`` into a container where earlier code may still be running,
    which is the setting of CVE-2019-5736 (fixed in runc 1.0.0-rc7) and CVE-2024-21626 "Leaky Vessels" (fixed in
    runc 1.1.12; Debian bookworm backported it to 1.1.5+ds1-1+deb12u1). The November 2025 advisories
    (CVE-2025-31133, -52565, -52881; fixed in 1.2.8 / 1.3.3) need control of the container's mounts or image at
    creation, which generated code never has here: they only warn.
    """
    client = docker.from_env()
    try:
        version = client.version()
    finally:
        client.close()
    components = {c["Name"]: c for c in version.get("Components", [])}
    runc = components.get("runc", {}).get("Version", "")
    runc_commit = components.get("runc", {}).get("Details", {}).get("GitCommit", "")
    versions = {"engine": version.get("Version", ""), "api": version.get("ApiVersion", ""),
                "containerd": components.get("containerd", {}).get("Version", ""), "runc": runc,
                "runc_commit": runc_commit, "kernel": version.get("KernelVersion", "")}
    local = shutil.which("runc")
    if local:
        cli = subprocess.run([local, "--version"], capture_output=True, text=True)
        versions["runc_cli"] = cli.stdout.split("\n")[0]
    for key, value in versions.items():
        record_property(key, value)
    print("container runtime:", versions)
    assert runc, f"the engine does not report its runc version: {version}"
    v = _version(runc)
    assert v, f"cannot read the runc version {runc!r}"
    assert v >= (1, 0, 0, 7), f"runc {runc} predates 1.0.0-rc7: CVE-2019-5736 (overwrite of the host runc binary)"
    # A distribution backport counts when the engine's runc is the locally installed package that names the fix.
    backport = runc in versions.get("runc_cli", "") and _debian_changelog_mentions("runc", "CVE-2024-21626")
    assert v >= (1, 1, 12) or backport, (f"runc {runc} ({runc_commit}) is open to CVE-2024-21626 (Leaky Vessels): "
                                         "update runc")
    if not ((1, 2, 8) <= v < (1, 3) or v >= (1, 3, 3)):
        warnings.warn(f"runc {runc} predates the fixes of CVE-2025-31133/52565/52881 (runc 1.2.8, 1.3.3); not "
                      "reachable from rcp's sandbox (no image or mount control), but update the host", stacklevel=1)
