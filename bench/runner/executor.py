"""Step executor: launches a step's instances, waits for them, tears them down.

It owns the launch pool (at most `concurrency` launch calls in flight), the
event-driven wait (a deadline heap and a queue of changed instances), teardown
with one retry, and the live registry an interrupted run tears down from.
"""

from __future__ import annotations

import functools
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.backends.base import Backend, Instance
from bench.machines.clock import Clock
from bench.model.errors import first_line
from bench.model.settings import ReadyRule
from bench.runner.readiness import Prober, console_for

# Teardown is not measured: it may use more parallel calls than launches do.
TEARDOWN_WORKERS = 16
# A destroy call that fails after this long means the engine has stopped answering
# (its calls time out), not that one instance is stuck: the engine's other instances
# are then not tried again, so a wedged engine costs about one call timeout instead
# of one per instance (2048 containers, 16 at a time: half an hour).
STALLED_DESTROY_S = 30.0


@dataclass
class Launch:
    inst: Instance
    launch_at: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    error: str | None = None
    done: bool = False  # ready, failed or past its deadline: no longer waited for
    deadline_set: bool = False

    @property
    def ready(self) -> bool:
        return self.error is None and self.inst.console.ready_at is not None


class StepWait:
    """Who of a step is still pending, updated per event: O(log N) per wake-up.

    Consoles and launch threads push the instance that changed; the runner pops only
    those, plus deadlines from a heap, so a step of hundreds of instances never
    re-scans the whole step on every line of console output.
    """

    def __init__(self, clock: Clock) -> None:
        self.cond = clock.condition()
        self.changed: deque[Launch] = deque()

    def wake(self, launch: Launch) -> None:
        with self.cond:
            self.changed.append(launch)
            self.cond.notify()


@dataclass
class LaunchedStep:
    """One step's instances on their backend, from before launch to teardown."""

    backend: Backend
    launches: list[Launch]
    waiter: StepWait
    # Probes and exit-status questions the step's ready rule needs (bench.runner.readiness).
    prober: Prober
    pool: ThreadPoolExecutor | None = None
    start: float = 0.0  # the step's first launch call, on the runner's clock


@dataclass
class StepExecutor:
    clock: Clock
    concurrency: int
    # Every instance from its launch call until its destroy succeeded: what an
    # interrupted run must still tear down, whatever phase it was in.
    _live: dict[str, tuple[Backend, Instance]] = field(default_factory=dict)
    _live_lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    # Backends (by id) whose engine stopped destroying instances, and why.
    _stalled: dict[int, str] = field(default_factory=dict)

    def new_step(
        self, backend: Backend, names: list[str], run_id: str, platform: str, ready: ReadyRule
    ) -> LaunchedStep:
        waiter = StepWait(self.clock)
        launches = []
        for name in names:
            console = console_for(ready, self.clock.now)
            launch = Launch(Instance(name=name, run_id=run_id, platform=platform, console=console))
            console.on_change = functools.partial(waiter.wake, launch)
            launches.append(launch)
        return LaunchedStep(
            backend, launches, waiter, Prober(ready, backend, self.clock, len(names))
        )

    def launch(self, step: LaunchedStep) -> None:
        step.start = self.clock.now()
        step.pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(step.launches)),
            thread_name_prefix="bench-launch",
        )
        for launch in step.launches:
            self.clock.submit(step.pool, self._launch, step.backend, launch, step.waiter.wake)

    def _launch(self, backend: Backend, launch: Launch, wake: Callable[[Launch], None]) -> None:
        if self._stopping.is_set():
            launch.error = "not launched: run interrupted"
            wake(launch)
            return
        with self._live_lock:
            self._live[launch.inst.name] = (backend, launch.inst)
        # No wake-up here: the runner learns this instance's deadline when its launch
        # call returns (below), which saves N context switches on the hot path.
        now = self.clock.now
        launch.launch_at = now()
        launch.inst.launch_wall_ns = time.time_ns()
        try:
            backend.create(launch.inst)
            launch.created_at = now()
            backend.start(launch.inst)
            launch.started_at = now()
        except Exception as e:  # recorded per instance; the step goes on
            launch.error = f"launch failed: {first_line(e)}"
        finally:
            wake(launch)

    def wait(self, step: LaunchedStep, timeout: float, on_done: Callable[[bool], None]) -> None:
        """Block until every instance is ready, failed, or past its deadline.

        Sleeps on a condition; woken by console events and launch calls, or by the
        earliest deadline. `on_done(ok)` is called once per instance.
        """
        waiter, now = step.waiter, self.clock.now
        pending = len(step.launches)
        deadlines: list[tuple[float, int, Launch]] = []

        def finish(launch: Launch) -> None:
            nonlocal pending
            launch.done = True
            pending -= 1
            on_done(launch.ready)

        with waiter.cond:
            while pending:
                while waiter.changed:
                    launch = waiter.changed.popleft()
                    if launch.done:
                        continue
                    if launch.error or launch.inst.console.done:
                        finish(launch)
                        continue
                    if launch.launch_at is not None and not launch.deadline_set:
                        launch.deadline_set = True
                        heapq.heappush(deadlines, (launch.launch_at + timeout, id(launch), launch))
                    if launch.launch_at is not None:
                        step.prober.changed(
                            launch.inst, launch.launch_at, launch.started_at, timeout
                        )
                t = now()
                while deadlines and deadlines[0][0] <= t:
                    launch = heapq.heappop(deadlines)[2]
                    if not launch.done:
                        finish(launch)
                if not pending:
                    step.prober.stop()
                    return
                # Instances still in their launch call wake us when it returns.
                if not waiter.changed:
                    self.clock.wait_until(
                        waiter.cond, deadlines[0][0] if deadlines else t + timeout
                    )

    def join_launches(self, step: LaunchedStep) -> None:
        if step.pool is not None:
            with self.clock.idle():
                step.pool.shutdown(wait=True)
        step.prober.join()

    def teardown(self, step: LaunchedStep) -> float:
        """Destroy the step's instances (one retry); returns the seconds it took."""
        return self.teardown_many([step])

    def teardown_many(self, steps: list[LaunchedStep]) -> float:
        """Destroy the instances of several steps together (a ramp's levels), one retry;
        returns the seconds it took."""
        for step in steps:
            if step.pool is not None:
                # Launches still in flight finish first: nothing is created after teardown.
                with self.clock.idle():
                    step.pool.shutdown(wait=True, cancel_futures=True)
            # Nor is anything probed once it is being destroyed.
            step.prober.join()
        start = self.clock.now()
        workers = max(self.concurrency, TEARDOWN_WORKERS)
        for _ in range(2):  # one retry: a busy engine (409)
            for backend, insts in self._still_live_by_backend(steps).values():
                self._destroy(backend, insts, workers)
        return self.clock.now() - start

    def stalled(self, backend: Backend) -> str | None:
        """Why this backend's engine is deemed to have stopped destroying instances (a
        destroy call failed after STALLED_DESTROY_S), or None."""
        return self._stalled.get(id(backend))

    def live_on(self, backend: Backend) -> int:
        """Instances of this run still on this backend's engine."""
        with self._live_lock:
            return sum(1 for b, _ in self._live.values() if b is backend)

    def still_live(self, step: LaunchedStep) -> int:
        """Instances the engine would not destroy: still running, skewing later steps."""
        return sum(1 for x in step.launches if x.inst.name in self._live)

    def _still_live_by_backend(
        self, steps: list[LaunchedStep]
    ) -> dict[int, tuple[Backend, list[Instance]]]:
        out: dict[int, tuple[Backend, list[Instance]]] = {}
        for step in steps:
            insts = [x.inst for x in step.launches if x.inst.name in self._live]
            if insts:
                out.setdefault(id(step.backend), (step.backend, []))[1].extend(insts)
        return out

    def _destroy(self, backend: Backend, insts: list[Instance], workers: int) -> None:
        """Destroy insts on their backend, `workers` calls in flight; a backend that asks
        for it (`halt_first`) has all of them halted first. A halt that fails is left to
        destroy, which stops an instance as well."""

        def call(what: str, fn: Callable[[Instance], None], inst: Instance) -> bool:
            stalled = self._stalled.get(id(backend))
            if stalled is not None:
                inst.info["destroy_error"] = f"not tried: {stalled}"
                return False
            t0 = self.clock.now()
            try:
                fn(inst)
            except Exception as e:
                inst.info["destroy_error"] = first_line(e)
                took = self.clock.now() - t0
                if took >= STALLED_DESTROY_S:
                    self._stalled.setdefault(
                        id(backend),
                        f"a {what} call failed after {took:.0f} s ({first_line(e, 200)})",
                    )
                return False
            return True

        def halt(inst: Instance) -> None:
            call("halt", backend.halt, inst)

        def destroy(inst: Instance) -> None:
            if call("destroy", backend.destroy, inst):
                inst.info.pop("destroy_error", None)  # a failed halt is no longer news
                with self._live_lock:
                    self._live.pop(inst.name, None)

        if not insts:
            return
        workers = max(1, min(workers, len(insts)))
        passes = [halt, destroy] if backend.halt_first else [destroy]
        for each in passes:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-destroy") as p:
                for inst in insts:
                    self.clock.submit(p, each, inst)
                with self.clock.idle():
                    p.shutdown(wait=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """No new launches from now on (the current step still tears down)."""
        self._stopping.set()

    def cleanup(self, workers: int = 32) -> list[str]:
        """Destroy every instance this run still has, whatever it was doing.

        Called after an interrupt; returns the names that could not be destroyed
        (`bench clean --run RUN_ID` finds them by their labels).
        """
        self._stopping.set()
        with self._live_lock:
            live = list(self._live.values())
        by_backend: dict[int, tuple[Backend, list[Instance]]] = {}
        for backend, inst in live:
            by_backend.setdefault(id(backend), (backend, []))[1].append(inst)
        for backend, insts in by_backend.values():
            self._destroy(backend, insts, workers)
        with self._live_lock:
            return sorted(self._live)
