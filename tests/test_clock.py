"""The virtual clock the runner tests run on: time moves only when every
participant waits on it, so real threads see exact, repeatable times."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.machines.clock import REAL_CLOCK, ClockStalled, FakeClock


def test_sleep_in_the_owner_thread_takes_no_wall_time():
    clock = FakeClock(start=0.0)
    t0 = time.monotonic()
    clock.sleep(3600)
    assert clock.now() == 3600 and time.monotonic() - t0 < 1


def test_timers_fire_in_time_order_and_cancelled_ones_never():
    clock = FakeClock(start=0.0)
    fired = []
    clock.call_later(0.3, lambda: fired.append(("c", clock.now())))
    clock.call_later(0.1, lambda: fired.append(("a", clock.now())))
    clock.call_later(0.2, lambda: fired.append(("x", clock.now()))).cancel()
    clock.sleep(1.0)
    assert fired == [("a", 0.1), ("c", 0.3)]


def test_pool_tasks_queue_behind_busy_workers():
    # 5 tasks of 1 s on 2 workers: they start at 0, 0, 1, 1, 2 and all end by 3.
    clock = FakeClock(start=0.0)
    starts = []

    def task():
        starts.append(clock.now())
        clock.sleep(1.0)

    pool = ThreadPoolExecutor(max_workers=2)
    futures = [clock.submit(pool, task) for _ in range(5)]
    with clock.idle():
        pool.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert sorted(starts) == [0, 0, 1, 1, 2] and clock.now() == 3


def test_wait_until_wakes_at_the_deadline_or_on_notify():
    clock = FakeClock(start=0.0)
    cond = clock.condition()
    with cond:
        clock.wait_until(cond, 5.0)
    assert clock.now() == 5.0
    clock.call_later(1.0, lambda: _notify(cond))
    with cond:
        clock.wait_until(cond, 100.0)
    assert clock.now() == 6.0  # notified at 6, long before 100


def _notify(cond):
    with cond:
        cond.notify()


def test_a_wait_nothing_can_end_is_reported_not_hung():
    clock = FakeClock(stall_s=0.2)
    cond = clock.condition()
    with pytest.raises(ClockStalled), cond:
        cond.wait()


def test_real_clock_is_monotonic_time():
    assert REAL_CLOCK.now is time.monotonic or abs(REAL_CLOCK.now() - time.monotonic()) < 1
    cond = REAL_CLOCK.condition()
    t0 = time.monotonic()
    with cond:
        REAL_CLOCK.wait_until(cond, time.monotonic() + 0.05)
    assert time.monotonic() - t0 >= 0.04
