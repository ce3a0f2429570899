"""Host-wide generation slots: a real cross-process limit through flock, released when a holder dies."""

import multiprocessing as mp
import os
import signal
import time

import pytest

from rcp.slots import HostSlots


def _hold(directory, count, ready, seconds):
    with HostSlots(count, directory).hold():
        ready.set()
        time.sleep(seconds)


def test_slots_limit_holders_across_processes(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path, 1, ready, 60))
    holder.start()
    try:
        assert ready.wait(30)
        slots = HostSlots(1, tmp_path)
        with pytest.raises(TimeoutError):
            with slots.hold(timeout=0.3):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # a killed holder must not leak its slot
        holder.join(10)
        with slots.hold(timeout=5) as held:
            assert held.waited < 5 and held.slots == 1
    finally:
        holder.kill()
        holder.join()


def test_two_slots_admit_two_holders(tmp_path):
    slots = HostSlots(2, tmp_path)
    with slots.hold(timeout=1), slots.hold(timeout=1):
        with pytest.raises(TimeoutError):
            with slots.hold(timeout=0.2):
                pass
    with slots.hold(timeout=1):
        pass


def test_widening_takes_free_slots_but_never_waits_for_them(tmp_path):
    slots = HostSlots(3, tmp_path)
    with slots.hold(timeout=1, extra=1) as held:  # asks for one extra: gets it, leaves the third free
        assert held.slots == 2
        with slots.hold(timeout=1, extra=5) as rest:  # only one left: takes it without waiting for more
            assert rest.slots == 1
            with pytest.raises(TimeoutError):
                with slots.hold(timeout=0.2):
                    pass
    with slots.hold(timeout=1, extra=5) as everything:  # all released on exit
        assert everything.slots == 3


def test_a_stopped_waiter_gives_up_at_once(tmp_path):
    import threading

    slots, stop = HostSlots(1, tmp_path), threading.Event()
    with slots.hold(timeout=1):
        stop.set()
        started = time.monotonic()
        with pytest.raises(InterruptedError):
            with slots.hold(timeout=10, stop=stop):
                pass
        assert time.monotonic() - started < 1
