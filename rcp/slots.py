"""A host-wide limit on concurrent model generations, shared by every rcp process on the machine.

Why: llama.cpp's worker threads spin at barriers, so oversubscribed cores collapse throughput instead of
sharing it. Measured here (2 cores, 0.5B model, one other busy process): 2 threads → 2.2 tokens/s,
1 thread → 10.4 tokens/s. Six nodes each generating with their own threads would thrash the same way, so a
generation first takes one of ``count`` slots; with ``N_THREADS = 1`` and one slot per core the cores stay
busy without oversubscription.

How: ``count`` lock files in one directory, taken with ``fcntl.flock``. The kernel releases a dead
process's locks, so a killed node never leaks a slot. Waiting polls (no FIFO order); generations last
seconds, so a 20 ms poll costs nothing measurable.

Deliberately left out: priorities, and limits across machines (each host has its own cores).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

POLL_S = 0.02


def default_slots(n_threads: int) -> int:
    """One slot per ``n_threads`` cores, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, n_threads))


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"rcp-generation-slots-{os.getuid()}"


class HostSlots:
    """``with slots.hold(): ...`` runs the block while holding one of ``count`` host-wide slots (blocking)."""

    def __init__(self, count: int, directory: Path | None = None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.directory = directory or default_directory()
        self.directory.mkdir(parents=True, exist_ok=True)

    def _try_take(self) -> int | None:
        for i in range(self.count):
            fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[float]:
        """Hold a slot for the block; yields the seconds spent waiting. Raises TimeoutError after ``timeout``."""
        started = time.monotonic()
        while (fd := self._try_take()) is None:
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(f"no generation slot free on this host after {timeout:.0f} s")
            time.sleep(POLL_S)
        try:
            yield time.monotonic() - started
        finally:
            os.close(fd)  # closing the descriptor drops the flock
