"""Run generated code in a throwaway, locked-down Docker container and report what happened.

``Sandbox`` is the interface the solver codes against (tests inject a fake); ``DockerSandbox`` is the real one.

How one ``DockerSandbox.run`` works, and why (all verified on Docker 20.10, cgroup v1, read-only root fs):

1. A container is created whose main process is ``docker-init`` + ``sleep <timeout + grace>``, with
   ``auto_remove``: if this process is SIGKILLed mid-run, the container still ends and removes itself. Every
   container carries labels naming this host and owner pid, so ``create``/``sweep`` can remove leftovers of
   dead owners without touching containers of live rcp processes sharing the engine.
2. The code goes in through the stdin of the exec that runs the command (``tar -x`` into /work, then ``exec``
   the command). ``put_archive`` does not work here: the engine refuses it on a read-only root fs ("container
   rootfs is marked read-only"), and it would write under the tmpfs anyway. A bind mount would put a host
   directory inside and break when the engine is remote; stdin needs neither.
3. The command's stdout/stderr are read from the exec stream in a worker thread, keeping the first
   ``output_bytes`` of each, counting the rest, and killing the container past ``OUTPUT_CEILING_FACTOR`` times
   the cap. A ``threading.Timer`` watchdog kills the container at the wall-clock timeout; the kill ends the
   stream, so the thread never hangs on a runaway process. (If the command leaves a background child holding
   stdout, the engine ends the stream ~2 s after the command exits: measured, harmless.)
4. The exit code comes from ``exec_inspect``. ``State.OOMKilled`` is no use here: the engine sets it only
   when the container's main process exits, and an OOM kill of an exec'd process never reaches it. Instead,
   after a non-zero exit the memory cgroup's ``oom_kill`` counter is read from inside the container.
5. Result files come out as a tar stream of /work read in memory with ``tarfile``: tar does not follow
   symlinks, and only regular files named by the caller and under ``collect_bytes`` are accepted.
6. The container is removed in the worker thread's ``finally``; cancelling the awaiting task kills the
   container first so that ``finally`` runs at once.

Deliberately left out: images (see ``rcp.sandbox_image``), GPU access, network access of any kind, keeping
containers warm between runs, and any file collection after a timeout (the container is killed then).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import io
import json
import logging
import os
import re
import secrets
import shlex
import socket
import sys
import tarfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit
from docker.utils.socket import SocketError, frames_iter
from pydantic import BaseModel, Field

from rcp.errors import DockerUnavailableError, RcpError, SandboxError, SandboxImageMissingError
from rcp.sandbox_image import SANDBOX_UID, docker_client, image_exists

logger = logging.getLogger(__name__)


class SandboxLimits(BaseModel):
    """Limits of one run; ``from_settings`` takes them from config."""

    timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=256, ge=32)
    cpus: float = Field(default=1.0, gt=0)
    pids: int = Field(default=64, ge=8)
    tmpfs_mb: int = Field(default=64, ge=1)
    file_size_mb: int = Field(default=16, ge=1)
    output_bytes: int = Field(default=64 * 1024, ge=1024)
    # Largest single file brought back by ``collect``; results (JSON, coverage) are small, and every collected
    # file is held in memory and put on the wire.
    collect_bytes: int = Field(default=1024 * 1024, ge=1024)

    @classmethod
    def from_settings(cls, s) -> SandboxLimits:
        return cls(timeout_s=s.sandbox_timeout, memory_mb=s.sandbox_memory_mb, cpus=s.sandbox_cpus,
                   pids=s.sandbox_pids, tmpfs_mb=s.sandbox_tmpfs_mb, file_size_mb=s.sandbox_file_size_mb,
                   output_bytes=s.sandbox_output_kb * 1024)


class SandboxReport(BaseModel):
    """What one sandbox run did. ``tests_*`` are None when no pytest run was recognised.

    ``exit_code`` is None when the sandbox killed the command (timeout or output ceiling).
    """

    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0  # bytes the process wrote, including what was dropped past the cap
    stderr_bytes: int = 0
    output_truncated: bool = False
    duration_s: float = 0.0
    timed_out: bool = False
    oom_killed: bool = False
    tests_passed: int | None = None
    tests_failed: int | None = None
    files: dict[str, str] = Field(default_factory=dict)  # collected result files (regular files only)
    image: str = ""
    # The command wrote more than OUTPUT_CEILING_FACTOR x output_bytes in total and was killed for it.
    output_limit_exceeded: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


class Sandbox(ABC):
    """Runs files + a command in isolation. Language-agnostic: the command and image decide the language."""

    @abstractmethod
    async def run(self, files: Mapping[str, str], cmd: Sequence[str] | None = None, *,
                  timeout: float | None = None, collect: Sequence[str] = ()) -> SandboxReport:
        """Copy ``files`` (relative path -> text) into a fresh work dir, run ``cmd`` there, return the report.

        ``cmd`` None with exactly one ``.py`` file runs it with python3. ``collect`` names work-dir files to
        bring back in ``report.files`` (regular files only; symlinks are never followed).
        """

    async def close(self) -> None:  # noqa: B027 - optional hook: a sandbox that holds nothing has nothing to close
        """Remove anything still running. Never raises."""


# --- pytest summary ------------------------------------------------------------------------------------------

# The last line pytest prints, with or without -q: "==== 1 failed, 2 passed, 1 warning in 0.12s ====",
# "3 passed in 65.20s (0:01:05)", "1 error in 0.05s", "no tests ran in 0.01s".
_SUMMARY_RE = re.compile(r"^=*\s*(?P<counts>(?:\d+ [a-z]+(?:, )?)+|no tests ran) in [\d.]+s(?: \([\d:]+\))?\s*=*$")
_COUNT_RE = re.compile(r"(\d+) ([a-z]+)")


def parse_pytest_summary(output: str) -> tuple[int, int] | None:
    """(passed, failed) from pytest's final summary line, or None if there is none.

    Errors (collection or fixture errors) count as failures: the code under test did not pass them.
    """
    for line in reversed(output.splitlines()):
        m = _SUMMARY_RE.match(line.strip())
        if not m:
            continue
        passed = failed = 0
        for n, word in _COUNT_RE.findall(m["counts"]):
            if word == "passed":
                passed += int(n)
            elif word in ("failed", "error", "errors"):
                failed += int(n)
        return passed, failed
    return None


# --- the Docker sandbox --------------------------------------------------------------------------------------

LABEL = "rcp.sandbox"  # value "1" on every sandbox container
LABEL_HOST = "rcp.sandbox.host"
LABEL_PID = "rcp.sandbox.pid"
LABEL_PID_START = "rcp.sandbox.pid_start"  # owner's start time in clock ticks: tells a reused pid apart
WORK_DIR = "/work"
USER = f"{SANDBOX_UID}:{SANDBOX_UID}"
# The whole environment of the sandboxed process: nothing of the host's leaks in.
ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORK_DIR,
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",  # the code dir is a small tmpfs; .pyc files would only eat it
    "PYTHONUNBUFFERED": "1",  # output written before a kill still reaches the report
}
TMP_MB = 16  # /tmp for tempfile & pytest's tmp_path; counted against the memory limit like /work
SHM_MB = 8  # /dev/shm: multiprocessing's semaphores need it; also charged to the memory cgroup
NOFILE = 1024
# Seconds the container outlives the command's timeout, for start-up, the code copy and collection. Only
# matters if this process dies: normally the container is removed right after the run.
GRACE_S = 30
# Past this many times output_bytes in total, the output is not going to be read by anyone: kill the run.
OUTPUT_CEILING_FACTOR = 64
TAIL_BYTES = 4096  # end of stdout kept beside the capped head, so pytest's summary survives truncation
COLLECT_TIMEOUT_S = 15.0


def _process_start(pid: int) -> str | None:
    """Start time (clock ticks since boot) of ``pid``, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; fields after the ")" of comm start at 3


def _owner_labels() -> dict[str, str]:
    return {LABEL: "1", LABEL_HOST: socket.gethostname(), LABEL_PID: str(os.getpid()),
            LABEL_PID_START: _process_start(os.getpid()) or "", "rcp.sandbox.created": str(int(time.time()))}


def _owner_alive(labels: Mapping[str, str]) -> bool:
    """True unless the labels prove the owner process is gone. Unknown means alive: never remove by mistake."""
    if labels.get(LABEL_HOST) != socket.gethostname():
        return True  # another machine's process; we cannot tell, and its containers expire by themselves
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return True
    start = _process_start(pid)
    if start is None:
        return False
    return not labels.get(LABEL_PID_START) or labels[LABEL_PID_START] == start


def sweep_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove sandbox containers whose owner process on this host is dead; return their names."""
    removed = []
    for info in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        if _owner_alive(info.get("Labels") or {}):
            continue
        name = (info.get("Names") or [info["Id"]])[0].lstrip("/")
        _remove_container(client, info["Id"])
        removed.append(name)
    if removed:
        logger.info("removed %d leftover sandbox container(s) of dead rcp processes: %s", len(removed),
                    ", ".join(removed))
    return removed


def _remove_container(client: docker.DockerClient, ref: str) -> None:
    """Force-remove a container and wait until it is gone. Never raises: cleanup must not mask the real error."""
    try:
        client.api.remove_container(ref, force=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as e:
        # auto_remove races with us after a kill: "removal of container ... is already in progress" (409).
        if e.status_code != 409:
            logger.warning("could not remove sandbox container %s: %s", ref, e.explanation or e)
            return
    except Exception as e:  # Docker went away mid-cleanup; the container dies with its sleep and is swept later
        logger.warning("could not remove sandbox container %s: %r", ref, e)
        return
    try:
        client.api.wait(ref, timeout=30, condition="removed")
    except Exception as e:  # NotFound: already gone, which is what we wanted
        logger.debug("waiting for removal of %s: %r", ref, e)


def _clean_relpath(name: str) -> str:
    """A relative path inside the work dir, normalised, or ValueError. Keeps tar and the collector inside it."""
    p = PurePosixPath(name)
    if (not name or not p.parts or "\0" in name or "\\" in name or p.is_absolute()
            or any(part in (".", "..") for part in p.parts)):
        raise ValueError(f"sandbox paths must be relative paths inside the work dir without '..': {name!r}")
    return p.as_posix()


def _pack(files: Mapping[str, str]) -> bytes:
    """The files as an in-memory tar that a non-root ``tar -x`` recreates with sane permissions."""
    buf = io.BytesIO()
    now = time.time()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in files.items():
            path = PurePosixPath(_clean_relpath(name))
            for parent in reversed(path.parents[:-1]):
                if parent.as_posix() not in dirs:
                    dirs.add(parent.as_posix())
                    info = tarfile.TarInfo(parent.as_posix())
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path.as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Capture:
    """One output stream: its first ``cap`` bytes, its total size and its last TAIL_BYTES."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.cap:
            self.head += data[:self.cap - len(self.head)]
        self.tail += data
        del self.tail[:-TAIL_BYTES]

    def text(self) -> str:
        return self.head.decode("utf-8", errors="replace")


class _Run:
    """Kill switch of one run, shared by the worker thread, its watchdog and the cancelling coroutine."""

    def __init__(self, kill: Callable[[], None]) -> None:
        self._kill = kill
        self._lock = threading.Lock()
        self.reason: str | None = None  # "timeout", "output" or "cancelled"; the first one wins

    def kill(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self._kill()


class _StdoutReader(io.RawIOBase):
    """File-like view of the stdout frames of an exec stream (stderr dropped), stopping after ``budget`` bytes."""

    def __init__(self, frames: Iterator[tuple[int, bytes]], budget: int) -> None:
        self._frames = frames
        self._buf = b""
        self._left = budget

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                stream, data = next(self._frames)
            except (StopIteration, OSError, SocketError):
                return 0
            if stream == 1:
                self._buf = data
        if len(self._buf) > self._left:
            raise SandboxError("collected files exceed the work dir size; refusing to read more")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self._left -= n
        return n


class DockerSandbox(Sandbox):
    """Runs code in a fresh container per run; see the module docstring for the design."""

    def __init__(self, client: docker.DockerClient, image: str, limits: SandboxLimits, ncpu: int) -> None:
        # Use ``await DockerSandbox.create(...)``: it checks Docker and the image and sweeps leftovers.
        self._client = client
        self.image = image
        self.limits = limits
        self._ncpu = ncpu
        self._live: set[str] = set()  # names of containers this object may still have to remove
        # Own threads rather than the loop's default executor: a run holds its thread for up to the timeout,
        # and must not starve other to_thread work of the process (the LLM call) or be starved by it.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rcp-sandbox")

    @classmethod
    async def create(cls, image: str, limits: SandboxLimits | None = None) -> DockerSandbox:
        """Connect to Docker, check ``image`` exists and remove containers of dead rcp processes."""
        limits = limits or SandboxLimits()
        client = await asyncio.to_thread(docker_client)
        try:
            if not await asyncio.to_thread(image_exists, image, client):
                raise SandboxImageMissingError(f"sandbox image {image} is not in the local Docker engine; build it "
                                               f"with `python -m rcp.sandbox build-image --tag {image}`")
            info = await asyncio.to_thread(client.info)
            await asyncio.to_thread(sweep_leftovers, client)
        except BaseException:
            client.close()
            raise
        ncpu = int(info.get("NCPU") or os.cpu_count() or 1)
        if limits.cpus > ncpu:
            logger.warning("sandbox CPU limit %.1f is above the engine's %d CPUs; using %d", limits.cpus, ncpu, ncpu)
        return cls(client, image, limits, ncpu)

    async def run(self, files: Mapping[str, str], cmd: Sequence[str] | str | None = None, *,
                  timeout: float | None = None, collect: Sequence[str] = ()) -> SandboxReport:
        """See ``Sandbox.run``. ``cmd`` may also be a shell-style string, split with shlex (never run by a shell).

        Raises ValueError for a bad path or a missing command, DockerUnavailableError / SandboxError when Docker
        fails; everything the code itself does (crash, timeout, OOM) is in the report instead.
        """
        argv = self._argv(files, cmd)
        payload = _pack(files)
        wanted = [_clean_relpath(n) for n in collect]
        timeout = float(timeout if timeout is not None else self.limits.timeout_s)
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        name = f"rcp-sbx-{os.getpid()}-{secrets.token_hex(4)}"
        self._live.add(name)
        state = _Run(functools.partial(self._kill, name))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._run_blocking, name, argv, payload, timeout, wanted, state)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The worker thread cannot be interrupted; killing the container ends its stream at once, and its
            # finally removes the container. Wait for that (shielded) so a cancelled run leaves nothing behind.
            if not future.done():
                await asyncio.shield(asyncio.to_thread(state.kill, "cancelled"))
                try:
                    await asyncio.shield(future)
                except Exception as e:  # the run was abandoned; its error is no longer anyone's business
                    logger.debug("cancelled sandbox run %s ended with %r", name, e)
            raise
        finally:
            if future.done():
                self._live.discard(name)

    async def close(self) -> None:
        """Kill and remove containers of runs still going (normally none). Never raises."""
        try:
            for name in list(self._live):
                await asyncio.to_thread(_remove_container, self._client, name)
                self._live.discard(name)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._client.close()
        except Exception as e:
            logger.warning("sandbox close: %r", e)

    # --- worker-thread side; everything below blocks ---

    def _argv(self, files: Mapping[str, str], cmd: Sequence[str] | str | None) -> list[str]:
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if cmd:
            return [str(a) for a in cmd]
        scripts = [n for n in files if n.endswith(".py")]
        if len(scripts) != 1:
            raise ValueError(f"no command given and {len(scripts)} .py files to choose from; pass cmd")
        return ["python3", _clean_relpath(scripts[0])]

    def _kill(self, name: str) -> None:
        try:
            self._client.api.kill(name)
        except Exception as e:  # already dead, removed or not started yet: nothing left to stop
            logger.debug("kill %s: %r", name, e)

    def _host_config(self) -> dict:
        lim = self.limits
        memory = lim.memory_mb * 1024 * 1024
        fsize = lim.file_size_mb * 1024 * 1024
        return self._client.api.create_host_config(
            auto_remove=True,
            network_mode="none",
            read_only=True,
            tmpfs={
                WORK_DIR: f"rw,nosuid,nodev,size={lim.tmpfs_mb}m,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0700",
                "/tmp": f"rw,nosuid,nodev,noexec,size={TMP_MB}m,mode=1777",
            },
            shm_size=SHM_MB * 1024 * 1024,
            mem_limit=memory,
            memswap_limit=memory,  # equal to mem_limit: no swap on top of the memory limit
            pids_limit=lim.pids,
            nano_cpus=int(min(lim.cpus, self._ncpu) * 1e9),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,  # docker-init reaps the orphans of exec'd processes
            ulimits=[Ulimit(name="fsize", soft=fsize, hard=fsize), Ulimit(name="nofile", soft=NOFILE, hard=NOFILE),
                     Ulimit(name="core", soft=0, hard=0)],
            log_config=LogConfig(type="none"),  # output is read from the exec stream; the engine stores nothing
            oom_score_adj=1000,  # if the host itself runs out of memory, sandboxed code is killed first
        )

    def _run_blocking(self, name: str, argv: list[str], payload: bytes, timeout: float, wanted: list[str],
                      state: _Run) -> SandboxReport:
        api = self._client.api
        report = SandboxReport(image=self.image)
        out, err = _Capture(self.limits.output_bytes), _Capture(self.limits.output_bytes)
        try:
            api.create_container(
                self.image, name=name, entrypoint=["sleep", str(int(timeout + GRACE_S))], user=USER,
                working_dir=WORK_DIR, environment=ENVIRONMENT, labels=_owner_labels(), hostname="sandbox",
                network_disabled=True, host_config=self._host_config())
            api.start(name)
            if state.reason == "cancelled":  # cancelled while the container was being created
                return report
            # tar reads the code from stdin; the command then gets /dev/null as its stdin.
            shell = f'tar -x -f - -C {WORK_DIR} && exec "$@" </dev/null'
            exec_id = api.exec_create(name, ["sh", "-c", shell, "rcp-sandbox", *argv], stdin=True, user=USER,
                                      workdir=WORK_DIR)["Id"]
            watchdog = threading.Timer(timeout, state.kill, ("timeout",))
            watchdog.daemon = True
            started = time.monotonic()
            sock = api.exec_start(exec_id, socket=True)
            watchdog.start()
            try:
                self._pump(sock, payload, out, err, state)
            finally:
                watchdog.cancel()
                _close_socket(sock)
            report.duration_s = round(time.monotonic() - started, 3)
            if state.reason is None:
                report.exit_code = self._exit_code(exec_id)
                if report.exit_code != 0:
                    report.oom_killed = self._oom_kills(name) > 0
                if wanted:
                    report.files = self._collect(name, wanted)
            report.timed_out = state.reason == "timeout"
            report.output_limit_exceeded = state.reason == "output"
        except docker.errors.ImageNotFound as e:
            raise SandboxImageMissingError(f"sandbox image {self.image} disappeared; rebuild it with "
                                           f"`python -m rcp.sandbox build-image --tag {self.image}`") from e
        except docker.errors.APIError as e:
            if state.reason is not None:  # our own kill raced a call (e.g. exec_inspect after removal)
                logger.debug("docker call after kill (%s) of %s: %r", state.reason, name, e)
            else:
                raise SandboxError(f"sandbox container {name} failed: {' '.join(str(e.explanation or e).split())}"
                                   ) from e
        except (requests.exceptions.RequestException, docker.errors.DockerException) as e:
            raise DockerUnavailableError(f"Docker stopped answering during a sandbox run ({e.__class__.__name__}); "
                                         "check `docker info`, restart it with `sudo systemctl start docker`") from e
        finally:
            _remove_container(self._client, name)
        report.stdout, report.stderr = out.text(), err.text()
        report.stdout_bytes, report.stderr_bytes = out.total, err.total
        report.output_truncated = out.total > len(out.head) or err.total > len(err.head)
        if any("pytest" in a for a in argv):
            counts = parse_pytest_summary(out.tail.decode("utf-8", errors="replace"))
            if counts is not None:
                report.tests_passed, report.tests_failed = counts
        logger.debug("sandbox %s: %s exit=%s in %.2f s", name, shlex.join(argv), report.exit_code, report.duration_s)
        return report

    def _pump(self, sock, payload: bytes, out: _Capture, err: _Capture, state: _Run) -> None:
        raw = getattr(sock, "_sock", sock)
        try:
            raw.sendall(payload)
            # Half-close: the engine then closes tar's stdin, so tar sees the end of the archive.
            raw.shutdown(socket.SHUT_WR)
        except OSError as e:  # the container was killed (e.g. cancelled) before it read everything
            logger.debug("sending code to the sandbox: %r", e)
        ceiling = OUTPUT_CEILING_FACTOR * self.limits.output_bytes
        try:
            for stream, data in frames_iter(sock, tty=False):
                (err if stream == 2 else out).feed(data)
                if out.total + err.total > ceiling:
                    # Close before killing: the engine blocks writing to a socket nobody reads, and its kill
                    # then waits ~10 s for that stream copy to give up (measured on 20.10).
                    _close_socket(sock)
                    state.kill("output")
                    break
        except (OSError, SocketError) as e:  # the connection dies with the container on a kill
            logger.debug("sandbox stream ended: %r", e)

    def _exit_code(self, exec_id: str) -> int | None:
        # The stream can end a moment before the engine records the exit code.
        deadline = time.monotonic() + 2.0
        while True:
            info = self._client.api.exec_inspect(exec_id)
            if info.get("ExitCode") is not None and not info.get("Running"):
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def _exec_output(self, name: str, argv: list[str], timeout: float) -> Iterator[tuple[int, bytes]]:
        """Run a helper command in the container and yield its frames; the container is killed past ``timeout``.

        Used after the command finished, so a hung helper never turns into a reported timeout of the code.
        """
        exec_id = self._client.api.exec_create(name, argv, user=USER, workdir=WORK_DIR)["Id"]
        sock = self._client.api.exec_start(exec_id, socket=True)
        watchdog = threading.Timer(timeout, self._kill, (name,))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield from frames_iter(sock, tty=False)
        finally:
            watchdog.cancel()
            _close_socket(sock)

    def _oom_kills(self, name: str) -> int:
        """OOM kills in the container's memory cgroup (v1: memory.oom_control, v2: memory.events)."""
        frames = self._exec_output(name, ["cat", "/sys/fs/cgroup/memory/memory.oom_control",
                                          "/sys/fs/cgroup/memory.events"], COLLECT_TIMEOUT_S)
        try:
            text = b"".join(data for stream, data in frames if stream == 1).decode(errors="replace")
        except (docker.errors.APIError, OSError, SocketError) as e:
            # e.g. a fork bomb still holds every pid, so no helper can start; fall back on the exit code alone.
            logger.debug("cannot read OOM counter of %s: %r", name, e)
            return 0
        finally:
            frames.close()
        return sum(int(n) for n in re.findall(r"^oom_kill (\d+)$", text, re.MULTILINE))

    def _collect(self, name: str, wanted: list[str]) -> dict[str, str]:
        # Only the top-level entries that lead to wanted files; tar archives a symlink as a symlink, never
        # descends through one, and the reader below accepts nothing but regular files.
        tops = sorted({"./" + w.split("/")[0] for w in wanted})
        budget = self.limits.tmpfs_mb * 1024 * 1024 + 1024 * 1024  # the whole work dir plus tar's headers
        files: dict[str, str] = {}
        frames = self._exec_output(name, ["tar", "-c", "-f", "-", "-C", WORK_DIR, *tops], COLLECT_TIMEOUT_S)
        try:
            with tarfile.open(fileobj=io.BufferedReader(_StdoutReader(frames, budget)), mode="r|") as tar:
                for member in tar:
                    path = member.name[2:] if member.name.startswith("./") else member.name
                    if path not in wanted:
                        continue
                    if not member.isreg() or member.size > self.limits.collect_bytes:
                        logger.info("not collecting %s from the sandbox: %s", path,
                                    "too large" if member.isreg() else "not a regular file")
                        continue
                    f = tar.extractfile(member)
                    if f is not None:
                        files[path] = f.read().decode("utf-8", errors="replace")
        except (tarfile.TarError, SandboxError, docker.errors.APIError, OSError, SocketError) as e:
            # Nothing to collect (tar found none of the names) or the code filled the work dir with junk:
            # the run itself still happened, so report what was collected.
            logger.debug("collecting %s from %s: %r", wanted, name, e)
        finally:
            frames.close()
        return files


def _close_socket(sock) -> None:
    """Close a hijacked exec connection: the HTTP response wrapping it first, so that its later garbage
    collection does not flush into an already closed socket ("I/O operation on closed file")."""
    for part in (getattr(sock, "_response", None), sock, getattr(sock, "_sock", None)):
        try:
            if part is not None:
                part.close()
        except (OSError, ValueError):
            pass


# --- command line --------------------------------------------------------------------------------------------

SANDBOX_SETTINGS = ["sandbox_image", "sandbox_timeout", "sandbox_memory_mb", "sandbox_cpus", "sandbox_pids",
                    "sandbox_tmpfs_mb", "sandbox_file_size_mb", "sandbox_output_kb", "log_level"]


def _parser() -> argparse.ArgumentParser:
    from rcp.settings import add_settings_arguments

    parser = argparse.ArgumentParser(prog="python -m rcp.sandbox", description="Run code in the rcp Docker sandbox.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run files in a sandbox and print the JSON report")
    run.add_argument("files", nargs="+", metavar="FILE", help="files copied into the work dir under their base name")
    run.add_argument("--cmd", help='command to run, e.g. "python3 -m pytest -q" (default: python3 FILE for one .py)')
    run.add_argument("--timeout", type=float, help="wall-clock seconds (default: the sandbox_timeout setting)")
    run.add_argument("--collect", action="append", default=[], metavar="NAME",
                     help="work-dir file to bring back in the report (repeatable)")
    add_settings_arguments(run, SANDBOX_SETTINGS)
    build = sub.add_parser("build-image", help="build the sandbox image (offline with debootstrap by default)")
    build.add_argument("--tag", help="image tag (default: the sandbox_image setting)")
    build.add_argument("--base", help="build from this registry image instead, e.g. python:3.12-slim")
    build.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    add_settings_arguments(build, ["sandbox_image", "log_level"])
    sweep = sub.add_parser("sweep", help="remove sandbox containers left by dead rcp processes")
    add_settings_arguments(sweep, ["log_level"])
    return parser


async def _cli_run(args: argparse.Namespace, files: dict[str, str], settings) -> SandboxReport:
    sandbox = await DockerSandbox.create(settings.sandbox_image, SandboxLimits.from_settings(settings))
    try:
        return await sandbox.run(files, args.cmd, timeout=args.timeout, collect=args.collect)
    finally:
        await sandbox.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rcp.sandbox``: exit 0 when the command did its job (a run's report says how the code fared)."""
    from rcp.sandbox_image import build_image
    from rcp.settings import load_settings

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args)
        logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command == "run":
            files = {}
            for path in map(Path, args.files):
                if path.name in files:
                    parser.error(f"two files are called {path.name}; they would overwrite each other")
                try:
                    files[path.name] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    parser.error(f"cannot read {path}: {e}")
            try:
                report = asyncio.run(_cli_run(args, files, settings))
            except ValueError as e:
                parser.error(str(e))
            print(json.dumps({**report.model_dump(), "ok": report.ok}, indent=2))
        elif args.command == "build-image":
            print(build_image(args.tag or settings.sandbox_image, base=args.base, force=args.force))
        else:
            client = docker_client()
            try:
                removed = sweep_leftovers(client)
            finally:
                client.close()
            print(f"removed {len(removed)} leftover sandbox container(s)")
        return 0
    except RcpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
