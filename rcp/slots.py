"""A host-wide limit on concurrent model generations, shared by every rcp process on the machine.

Why: llama.cpp's worker threads spin at barriers, so oversubscribed cores collapse throughput instead of
sharing it. Measured here (2 cores, 0.5B model, one other busy process): 2 threads → 2.2 tokens/s,
1 thread → 10.4 tokens/s. Six nodes each generating with their own threads would thrash the same way, so a
generation first takes one of ``count`` slots; with ``N_THREADS = 1`` and one slot per core the cores stay
busy without oversubscription.

How: ``count`` lock files in one directory, taken with ``fcntl.flock``. The kernel releases a dead
process's locks, so a killed node never leaks a slot. Waiting polls (no FIFO order); generations last
seconds, so a 20 ms poll costs nothing measurable.

Widening: a generation that, once it holds its slot, finds other slots free may take them too (``extra``) and run
with the threads of all it holds. A lone generation then uses every core (measured, 1.5B on 2 cores: 1 thread
5.7-6.4 tokens/s, 2 threads 11.9) instead of leaving half the machine idle; a generation that starts while it
runs waits for it, as it would for any busy slot, so cores are never oversubscribed.

Deliberately left out: priorities, and limits across machines (each host has its own cores).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.02


def default_slots(n_threads: int) -> int:
    """One slot per ``n_threads`` cores, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, n_threads))


def widened_slots(n_threads: int, n_threads_max: int) -> int:
    """The slots one generation takes when it finds them free (widening): its most threads (``n_threads_max``, 0:
    every core) over ``n_threads`` per slot, at least one."""
    return max(1, -(-(n_threads_max or os.cpu_count() or 1) // max(1, n_threads)))


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"rcp-generation-slots-{os.getuid()}"


@dataclass(frozen=True)
class Held:
    """What ``HostSlots.hold`` got: seconds spent waiting, and how many slots the block holds (1 + extras)."""

    waited: float
    slots: int


class HostSlots:
    """``with slots.hold() as held: ...`` runs the block while holding one of ``count`` host-wide slots (blocking)."""

    def __init__(self, count: int, directory: Path | None = None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.directory = directory or default_directory()
        self.directory.mkdir(parents=True, exist_ok=True)

    def _try_take(self, most: int = 1) -> list[int]:
        """Descriptors of up to ``most`` free slots, now locked by this process (none free: empty)."""
        taken: list[int] = []
        for i in range(self.count):
            if len(taken) == most:
                break
            fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append(fd)
        return taken

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None, extra: int = 0,
             stop: threading.Event | None = None) -> Iterator[Held]:
        """Hold a slot for the block, plus up to ``extra`` more if they are free once the first is taken.

        Waits for the first slot only (never for extras). Raises TimeoutError after ``timeout`` seconds, and
        InterruptedError once ``stop`` is set while it waits.
        """
        started = time.monotonic()
        while not (fds := self._try_take(1 + max(0, extra))):
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(f"no generation slot free on this host after {timeout:.0f} s")
            if stop is not None and stop.is_set():
                raise InterruptedError("stopped while waiting for a generation slot")
            time.sleep(POLL_S)
        try:
            yield Held(waited=time.monotonic() - started, slots=len(fds))
        finally:
            for fd in fds:
                os.close(fd)  # closing the descriptor drops the flock
