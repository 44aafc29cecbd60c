"""The runner's clock, injected: real monotonic time, or virtual time for tests.

Everything that waits on time in a run (the step's wait for readiness, settle, the
fake backend's boot timers and slow creates) goes through one `Clock`, so tests can
run a 120 s timeout in milliseconds and assert exact times.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def condition(self) -> threading.Condition:
        """A condition whose wait(timeout) counts its timeout on this clock."""
        ...

    def wait_until(self, cond: threading.Condition, deadline: float) -> None:
        """With cond held: wait until notified or until the clock reads `deadline`."""
        ...

    def call_later(self, delay: float, fn: Callable[[*Ts], object], *args: *Ts) -> Timer: ...
    def submit(self, pool: Executor, fn: Callable[[*Ts], T], *args: *Ts) -> Future[T]:
        """pool.submit, telling the clock that work is in flight until the task ends."""
        ...

    def idle(self) -> AbstractContextManager[None]:
        """Context: this thread blocks on other participants (e.g. joins a pool)."""
        ...


class MonotonicClock:
    """Real time. Adds nothing to the hot path: every method is the plain call."""

    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def condition(self) -> threading.Condition:
        return threading.Condition()

    def wait_until(self, cond: threading.Condition, deadline: float) -> None:
        cond.wait(timeout=max(deadline - time.monotonic(), 0.001))

    def call_later(self, delay: float, fn: Callable[[*Ts], object], *args: *Ts) -> Timer:
        timer = threading.Timer(delay, fn, args=args)
        timer.daemon = True
        timer.start()
        return timer

    def submit(self, pool: Executor, fn: Callable[[*Ts], T], *args: *Ts) -> Future[T]:
        return pool.submit(fn, *args)

    @contextmanager
    def idle(self) -> Iterator[None]:
        yield


REAL_CLOCK = MonotonicClock()


class ClockStalled(RuntimeError):
    """Every participant waits and nothing is scheduled: a test would hang forever."""


class FakeClock:
    """Virtual time shared by real threads, deterministic.

    Time moves only when no participant is busy, i.e. every thread that takes part
    (the thread that made the clock, tasks given through `submit`, timer callbacks)
    is blocked on this clock; then it jumps to the earliest scheduled event and wakes
    exactly that one. A thread woken by a `notify` counts as busy again at once, so
    time never moves while the notified thread has yet to run.

    Conditions made by `condition()` share the clock's lock, so notifying one and
    moving time are one atomic step.
    """

    def __init__(self, start: float = 1000.0, stall_s: float = 10.0):
        self._now = start
        self._lock = threading.RLock()
        self._busy = 1  # the thread that made the clock
        self._events: list[tuple[float, int, _Event]] = []
        self._seq = itertools.count()
        self._stall_s = stall_s  # real seconds a blocked thread waits before giving up
        self._pools: dict[int, list[int]] = {}
        self.threads_started = 0

    # -- Clock --------------------------------------------------------------------

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        cond = self.condition()
        with cond:
            cond.wait(seconds)

    def condition(self) -> threading.Condition:
        return _FakeCondition(self)  # type: ignore[return-value]

    def wait_until(self, cond: threading.Condition, deadline: float) -> None:
        # Woken at `deadline` itself, not now + (deadline - now): a deadline compared
        # with now() is then due exactly, with no rounding in between.
        cond._wait_at(deadline)  # type: ignore[attr-defined]

    def call_later(self, delay: float, fn: Callable[[*Ts], object], *args: *Ts) -> Timer:
        event = _Event(fn=fn, args=args)
        with self._lock:
            self._schedule(self._now + max(delay, 0.0), event)
            self._advance()
        return _FakeTimer(self, event)

    def submit(self, pool: Executor, fn: Callable[[*Ts], T], *args: *Ts) -> Future[T]:
        """A task is busy from the moment a worker is free for it. A task queued behind
        busy workers is not (its pool could never drain while time stood still): the
        worker that finishes a task takes the next one at once, so busy passes on to
        it without a gap in which time could move."""
        with self._lock:
            state = self._pools.setdefault(id(pool), [0, 0])  # [running, queued]
            if state[0] < pool._max_workers:  # type: ignore[attr-defined]
                state[0] += 1
                self._busy += 1
            else:
                state[1] += 1
            future = pool.submit(fn, *args)
            # Runs for a cancelled task too (from shutdown), so the counts come back.
            future.add_done_callback(lambda f: self._task_done(id(pool), f))
        return future

    def _task_done(self, pool_id: int, future: Future[T]) -> None:
        with self._lock:
            state = self._pools[pool_id]
            if future.cancelled():
                state[1] -= 1
            elif state[1]:
                state[1] -= 1  # this worker runs the next queued task: still busy
            else:
                state[0] -= 1
                self._busy -= 1
                self._advance()
            if state == [0, 0]:
                del self._pools[pool_id]

    @contextmanager
    def idle(self) -> Iterator[None]:
        self._release()
        try:
            yield
        finally:
            with self._lock:
                self._busy += 1

    # -- inside ---------------------------------------------------------------------

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
            self._advance()

    def _schedule(self, at: float, event: _Event) -> None:
        heapq.heappush(self._events, (at, next(self._seq), event))

    def _advance(self) -> None:
        """With the lock held: while nobody is busy, fire the earliest live event."""
        while self._busy == 0 and self._events:
            at, _, event = heapq.heappop(self._events)
            if event.done:  # cancelled timer, or a waiter already notified
                continue
            event.done = True
            self._now = max(self._now, at)
            self._busy += 1
            if event.waiter is not None:
                event.waiter.notify_all()
            else:
                self.threads_started += 1
                threading.Thread(
                    target=self._run_timer, args=(event,), name="fake-clock-timer", daemon=True
                ).start()

    def _run_timer(self, event: _Event) -> None:
        try:
            event.fn(*event.args)  # type: ignore[misc]
        finally:
            self._release()


class _Event:
    __slots__ = ("fn", "args", "waiter", "done")

    def __init__(
        self,
        fn: Callable[..., object] | None = None,
        args: tuple[object, ...] = (),
        waiter: threading.Condition | None = None,
    ):
        self.fn, self.args, self.waiter = fn, args, waiter
        self.done = False


class _FakeTimer:
    def __init__(self, clock: FakeClock, event: _Event):
        self._clock, self._event = clock, event

    def cancel(self) -> None:
        with self._clock._lock:
            self._event.done = True


class _FakeCondition:
    """threading.Condition's interface on the clock's lock, with virtual timeouts."""

    def __init__(self, clock: FakeClock):
        self._clock = clock
        self._cond = threading.Condition(clock._lock)
        self._waiting: list[_Event] = []

    def __enter__(self) -> _FakeCondition:
        self._clock._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._clock._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        clock = self._clock
        self._wait_at(None if timeout is None else clock._now + max(timeout, 0.0))
        return True

    def _wait_at(self, at: float | None) -> None:
        clock = self._clock
        event = _Event(waiter=self._cond)
        self._waiting.append(event)
        if at is not None:
            clock._schedule(max(at, clock._now), event)
        clock._busy -= 1
        clock._advance()
        try:
            while not event.done:
                if not self._cond.wait(clock._stall_s):
                    event.done = True
                    clock._busy += 1
                    raise ClockStalled(
                        f"fake clock stalled at t={clock._now:g}: every participant waits "
                        "and nothing is scheduled (or a thread blocks outside the clock)"
                    )
        finally:
            if event in self._waiting:
                self._waiting.remove(event)

    def notify(self, n: int = 1) -> None:
        self.notify_all()

    def notify_all(self) -> None:
        clock = self._clock
        for event in self._waiting:
            if not event.done:
                event.done = True
                clock._busy += 1
        self._waiting.clear()
        self._cond.notify_all()
