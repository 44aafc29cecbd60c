"""The runner: steps, instances, the clock. It knows no engine.

For each platform, each N, each repeat: launch N instances (at most `concurrency`
launch calls in flight), wait until every one is ready or has timed out, then
destroy them all and record one sample per instance. Every time is taken from one
monotonic clock, relative to the instance's own launch call.
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
from typing import Any, Protocol

from bench.backends.base import NAME_PREFIX, Backend, Instance
from bench.console import Console
from bench.errors import EngineUnavailable, first_line
from bench.host import LocalHost
from bench.scenario import Density, LoadedScenario, Step
from bench.stats import percentile

Clock = Callable[[], float]


class Events(Protocol):
    """What the runner tells its user interface; all methods are optional no-ops."""

    def step_started(self, index: int, total: int, step: Step) -> None: ...
    def instance_done(self, step: Step, ok: bool) -> None: ...
    def step_finished(
        self, step: Step, samples: list[dict[str, Any]], record: dict[str, Any]
    ) -> None: ...
    def step_refused(self, step: Step, reason: str) -> None: ...


class NoEvents:
    def step_started(self, index: int, total: int, step: Step) -> None:
        pass

    def instance_done(self, step: Step, ok: bool) -> None:
        pass

    def step_finished(
        self, step: Step, samples: list[dict[str, Any]], record: dict[str, Any]
    ) -> None:
        pass

    def step_refused(self, step: Step, reason: str) -> None:
        pass


@dataclass
class _Launch:
    inst: Instance
    launch_at: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    error: str | None = None
    done: bool = False  # ready, failed or past its deadline: no longer waited for
    deadline_set: bool = False


class _StepWait:
    """Who of a step is still pending, updated per event: O(log N) per wake-up.

    Consoles and launch threads push the instance that changed; the runner pops only
    those, plus deadlines from a heap, so a step of hundreds of instances never
    re-scans the whole step on every line of console output.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.changed: deque[_Launch] = deque()

    def wake(self, launch: _Launch) -> None:
        with self.cond:
            self.changed.append(launch)
            self.cond.notify()


@dataclass
class StepResult:
    samples: list[dict[str, Any]]
    record: dict[str, Any]

    @property
    def failures(self) -> int:
        return sum(1 for s in self.samples if not s["ok"])


# Measured memory per instance is scaled by this before predicting a larger step:
# instances of a bigger step cost a little more each (page tables, engine bookkeeping).
GUARD_MARGIN = 1.25
# Teardown is not measured: it may use more parallel calls than launches do.
TEARDOWN_WORKERS = 16
# Sampling waits on engine calls (docker's stats takes ~1 s per container on some
# engines), not on CPU: many in flight keep a 256-instance step's sampling short.
SAMPLING_WORKERS = 32
# First step of a platform with no memory setting: a guess, replaced by measurement.
DEFAULT_INSTANCE_ESTIMATE_BYTES = 64 * 2**20


@dataclass
class Runner:
    loaded: LoadedScenario
    run_id: str
    backends: dict[str, Backend]
    sink: Any  # RunWriter-like: add_samples(list), add_step(dict)
    events: Events = field(default_factory=NoEvents)
    clock: Clock = time.monotonic
    host: Any = field(default_factory=LocalHost)
    _index: int = 0
    # Every instance from its launch call until its destroy succeeded: what an
    # interrupted run must still tear down, whatever phase it was in.
    _live: dict[str, tuple[Backend, Instance]] = field(default_factory=dict)
    _live_lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> list[StepResult]:
        sc = self.loaded.scenario
        total = len(sc.plan())
        results: list[StepResult] = []
        for platform in sc.platforms:
            search = sc.search_for(platform)
            # (N, measured host drop per instance) of this platform's steps so far.
            per_instance: list[tuple[int, float]] = []
            for n in sc.counts_for(platform):
                stop = False
                for r in range(sc.repeat):
                    step = Step(platform=platform, n=n, repeat=r)
                    index = self._index
                    self._index += 1
                    self.events.step_started(index, total, step)
                    refusal = self._guard(step, index, per_instance)
                    if refusal is not None:
                        self.sink.add_step(refusal)
                        self.events.step_refused(step, refusal["limit_detail"])
                        stop = True
                        break
                    result = self.run_step(step, index)
                    self._check_engine(step, result)
                    drop = result.record.get("host_drop_per_instance_bytes")
                    if drop is not None and drop > 0:
                        per_instance.append((n, drop))
                    if search is not None:
                        self._check_limits(result, search, sc.reserve_for(platform))
                    self.sink.add_samples(result.samples)
                    self.sink.add_step(result.record)
                    self.events.step_finished(step, result.samples, result.record)
                    results.append(result)
                    if result.failures and sc.on_failure == "stop":
                        return results
                    if result.record.get("limit"):
                        stop = True
                        break
                # A refused or limit-breaking N ends this platform's steps: a density
                # search is over, and fixed counts after a refused N would need as much
                # memory or more (counts are usually given in increasing order).
                if stop:
                    break
        return results

    def _check_engine(self, step: Step, result: StepResult) -> None:
        """A step where every launch failed and the engine no longer answers: the engine
        died mid-run. Keep the step, then stop with one clear line instead of failing
        every remaining step the same way."""
        if not result.samples or any(s["failure"] != "launch" for s in result.samples):
            return
        backend = self.backends[step.platform.name]
        if backend.reachable():
            return
        self.sink.add_samples(result.samples)
        self.sink.add_step(result.record)
        raise EngineUnavailable(
            f"the {step.platform.backend} engine of platform {step.platform.name!r} stopped "
            f"answering mid-run ({result.samples[0]['error']}); finished steps are kept; "
            f"once it is back, remove leftovers with `bench clean --run {self.run_id}`"
        )

    def _guard(
        self, step: Step, index: int, per_instance: list[tuple[int, float]]
    ) -> dict[str, Any] | None:
        """Refuse a step predicted to push MemAvailable below the reserve, before it starts.

        The prediction scales the per-instance host drop of the largest step measured so
        far: small steps are dominated by noise (a few MiB of page cache either way).
        """
        sc = self.loaded.scenario
        reserve = sc.reserve_for(step.platform)
        if per_instance:
            largest = max(n for n, _ in per_instance)
            measured = [d for n, d in per_instance if n == largest][-1]
            estimate = int(measured * GUARD_MARGIN)
            basis = f"{measured / 2**20:.0f} MiB measured at N={largest}, x{GUARD_MARGIN:g}"
        else:
            estimate = step.platform.memory or DEFAULT_INSTANCE_ESTIMATE_BYTES
            basis = "configured memory" if step.platform.memory else "default guess"
        available = self.host.mem_available_bytes()
        predicted = estimate * step.n
        if available - predicted >= reserve:
            return None
        detail = (
            f"N={step.n} needs ~{predicted / 2**20:.0f} MiB ({estimate / 2**20:.0f} MiB each: "
            f"{basis}) but only {(available - reserve) / 2**20:.0f} MiB is available above "
            f"the {reserve / 2**20:.0f} MiB reserve"
        )
        return {
            **self._step_head(step, index),
            "status": "refused",
            "limit": "memory_reserve",
            "limit_detail": detail,
            "predicted_bytes": predicted,
            "mem_available_before_bytes": available,
            "memory_reserve_bytes": reserve,
        }

    def _check_limits(self, result: StepResult, search: Density, reserve: int) -> None:
        """Mark the step with the first density limit it broke, if any."""
        rec = result.record
        ready = [s["ready_s"] for s in result.samples if s["ok"]]
        limit = detail = None
        if result.failures:
            failed = [s for s in result.samples if not s["ok"]]
            errors = sorted({s["error"] for s in failed})
            limit = "timeout" if all(s["failure"] == "timeout" for s in failed) else "failure"
            detail = f"{result.failures} of {rec['n']} not ready: {errors[0]}"
        elif search.slo.ready_p95 is not None:
            p95 = percentile(ready, 95)
            if p95 is not None and p95 > search.slo.ready_p95:
                limit = "slo"
                detail = f"ready p95 {p95:.3f}s > SLO {search.slo.ready_p95:g}s"
        after = rec.get("mem_available_after_bytes")
        if limit is None and after is not None and after < reserve:
            limit = "memory_reserve"
            detail = (
                f"MemAvailable fell to {after / 2**20:.0f} MiB, below the "
                f"{reserve / 2**20:.0f} MiB reserve"
            )
        rec["limit"], rec["limit_detail"] = limit, detail

    def _step_head(self, step: Step, index: int) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step": index,
            "platform": step.platform.name,
            "backend": step.platform.backend,
            "kind": self.backends[step.platform.name].kind,
            "n": step.n,
            "repeat": step.repeat,
        }

    def run_step(self, step: Step, index: int) -> StepResult:
        sc = self.loaded.scenario
        backend = self.backends[step.platform.name]
        waiter = _StepWait()
        launches = []
        for i in range(step.n):
            console = Console(step.platform.ready.marker, clock=self.clock)
            launch = _Launch(
                Instance(
                    name=instance_name(self.run_id, step.platform.name, index, i),
                    run_id=self.run_id,
                    platform=step.platform.name,
                    console=console,
                )
            )
            console.on_change = functools.partial(waiter.wake, launch)
            launches.append(launch)
        before = self._host_before(backend)
        step_start = self.clock()
        pool = ThreadPoolExecutor(
            max_workers=min(sc.launch.concurrency, step.n), thread_name_prefix="bench-launch"
        )
        measured: dict[str, Any] = {}
        wait_end: float | None = None
        try:
            for launch in launches:
                pool.submit(self._launch, backend, launch, waiter.wake)
            self._wait(step, launches, waiter, sc.timeout)
            wait_end = self.clock()
            pool.shutdown(wait=True)
            measured = self._measure(backend, launches, before, step.n)
            teardown_s = self._teardown(backend, pool, launches)
        except BaseException:
            # Interrupted (or broken) mid-step, teardown included: destroy what is left
            # (only instances not yet destroyed), then keep what was measured.
            self._teardown(backend, pool, launches)
            launched = [(i, x) for i, x in enumerate(launches) if x.launch_at is not None]
            self.sink.add_samples(
                [
                    self._sample(
                        step, index, i, x, step_start, sc.timeout, wait_end, "run interrupted"
                    )
                    for i, x in launched
                ]
            )
            self.sink.add_step(
                {**self._step_head(step, index), "status": "interrupted", **measured}
            )
            raise
        samples = [
            self._sample(step, index, i, launch, step_start, sc.timeout, wait_end)
            for i, launch in enumerate(launches)
        ]
        ready = [s["ready_s"] for s in samples if s["ok"]]
        all_ready = max(s["ready_at_s"] for s in samples) if len(ready) == step.n else None
        record = {
            **self._step_head(step, index),
            "status": "ran",
            "failures": sum(1 for s in samples if not s["ok"]),
            # Wall time from the first launch call to the last instance ready.
            "all_ready_s": all_ready,
            "launch_rate_per_s": step.n / all_ready if all_ready else None,
            "wait_s": wait_end - step_start if wait_end is not None else None,
            "teardown_s": teardown_s,
            # Instances the engine would not destroy: still running, skewing later steps.
            "destroy_failures": sum(1 for x in launches if x.inst.name in self._live),
            **measured,
        }
        return StepResult(samples, record)

    def _teardown(
        self, backend: Backend, pool: ThreadPoolExecutor, launches: list[_Launch]
    ) -> float:
        # Launches still in flight finish first, so nothing is created after teardown.
        pool.shutdown(wait=True, cancel_futures=True)
        start = self.clock()
        workers = max(self.loaded.scenario.launch.concurrency, TEARDOWN_WORKERS)
        self._destroy_all(backend, launches, workers)
        if any(x.inst.name in self._live for x in launches):
            self._destroy_all(backend, launches, workers)  # one retry: a busy engine (409)
        return self.clock() - start

    # -- measurement around a step ------------------------------------------------------

    def _host_before(self, backend: Backend) -> dict[str, Any]:
        sc = self.loaded.scenario
        dropped = self.host.drop_caches() if sc.drop_caches else False
        return {
            "mem_available": self.host.mem_available_bytes(),
            "storage": self.host.snapshot_entries(backend.storage_dirs()),
            "dropped_caches": dropped,
        }

    def _measure(
        self, backend: Backend, launches: list[_Launch], before: dict[str, Any], n: int
    ) -> dict[str, Any]:
        """After the step is ready: settle, then the host, process and engine views."""
        sc = self.loaded.scenario
        if sc.settle > 0:
            time.sleep(sc.settle)
        if sc.drop_caches:
            self.host.drop_caches()
        after = self.host.mem_available_bytes()
        sampling_start = self.clock()
        live = [x for x in launches if x.error is None and x.inst.handle is not None]
        try:
            backend.prefetch([x.inst for x in live], self.host)
        except Exception as e:  # sampling is best effort; each sample says what it lacks
            for x in live:
                x.inst.info["sample_error"] = first_line(e)

        def sample(launch: _Launch) -> None:
            inst = launch.inst
            try:
                raw = backend.sample(inst, self.host)
                pids = raw.pop("pids", [])
                inst.info.update(raw)
                if pids:
                    inst.info.update(self.host.process_memory(pids) or {})
            except Exception as e:  # a dead instance has no memory to report
                inst.info["sample_error"] = first_line(e)

        with ThreadPoolExecutor(
            max_workers=max(1, min(SAMPLING_WORKERS, len(live))),
            thread_name_prefix="bench-sample",
        ) as pool:
            list(pool.map(sample, live))
        drop = before["mem_available"] - after
        return {
            "settle_s": sc.settle,
            "dropped_caches": before["dropped_caches"],
            "mem_available_before_bytes": before["mem_available"],
            "mem_available_after_bytes": after,
            "host_drop_bytes": drop,
            "host_drop_per_instance_bytes": drop / n,
            "disk_growth_bytes": self.host.new_entries_bytes(before["storage"]),
            # Time bench spent asking engines and /proc about the running instances.
            "sampling_s": self.clock() - sampling_start,
            **self.host.memory_facts(),
        }

    def _launch(self, backend: Backend, launch: _Launch, wake: Callable[[_Launch], None]) -> None:
        if self._stopping.is_set():
            launch.error = "not launched: run interrupted"
            wake(launch)
            return
        with self._live_lock:
            self._live[launch.inst.name] = (backend, launch.inst)
        # No wake-up here: the runner learns this instance's deadline when its launch
        # call returns (below), which saves N context switches on the hot path.
        launch.launch_at = self.clock()
        try:
            backend.create(launch.inst)
            launch.created_at = self.clock()
            backend.start(launch.inst)
            launch.started_at = self.clock()
        except Exception as e:  # recorded per instance; the step goes on
            launch.error = f"launch failed: {first_line(e)}"
        finally:
            wake(launch)

    def _wait(self, step: Step, launches: list[_Launch], waiter: _StepWait, timeout: float) -> None:
        """Block until every instance is ready, failed, or past its deadline.

        Sleeps on a condition; woken by console events and launch calls, or by the
        earliest deadline.
        """
        pending = len(launches)
        deadlines: list[tuple[float, int, _Launch]] = []

        def finish(launch: _Launch) -> None:
            nonlocal pending
            launch.done = True
            pending -= 1
            ok = launch.error is None and launch.inst.console.ready_at is not None
            self.events.instance_done(step, ok)

        with waiter.cond:
            while pending:
                while waiter.changed:
                    launch = waiter.changed.popleft()
                    if launch.done:
                        continue
                    if launch.error or launch.inst.console.done:
                        finish(launch)
                    elif launch.launch_at is not None and not launch.deadline_set:
                        launch.deadline_set = True
                        heapq.heappush(deadlines, (launch.launch_at + timeout, id(launch), launch))
                now = self.clock()
                while deadlines and deadlines[0][0] <= now:
                    launch = heapq.heappop(deadlines)[2]
                    if not launch.done:
                        finish(launch)
                if not pending:
                    return
                # Instances still in their launch call wake us when it returns.
                wait = deadlines[0][0] - now if deadlines else timeout
                if not waiter.changed:
                    waiter.cond.wait(timeout=max(wait, 0.001))

    def _destroy_all(self, backend: Backend, launches: list[_Launch], concurrency: int) -> None:
        insts = [x.inst for x in launches if x.inst.name in self._live]
        self._destroy(backend, insts, concurrency)

    def _destroy(self, backend: Backend, insts: list[Instance], workers: int) -> None:
        def destroy(inst: Instance) -> None:
            try:
                backend.destroy(inst)
            except Exception as e:
                inst.info["destroy_error"] = first_line(e)
                return
            with self._live_lock:
                self._live.pop(inst.name, None)

        if not insts:
            return
        workers = max(1, min(workers, len(insts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-destroy") as p:
            list(p.map(destroy, insts))

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

    def _sample(
        self,
        step: Step,
        index: int,
        i: int,
        launch: _Launch,
        step_start: float,
        timeout: float,
        wait_end: float | None,
        unfinished: str | None = None,
    ) -> dict[str, Any]:
        inst, console = launch.inst, launch.inst.console
        t0 = launch.launch_at

        def rel(t: float | None) -> float | None:
            return None if t is None or t0 is None else t - t0

        # A marker that arrives after the deadline (while the step tore down) is late:
        # the instance did not become ready within the timeout.
        in_time = (
            console.ready_at is not None and t0 is not None and console.ready_at - t0 <= timeout
        )
        ok = launch.error is None and in_time
        # A console that closed after its deadline, or once the wait was over, was
        # closed by bench's own teardown: the instance did not exit by itself.
        exited = (
            console.closed_at is not None
            and t0 is not None
            and console.closed_at <= t0 + timeout
            and (wait_end is None or console.closed_at <= wait_end)
        )
        error, failure = launch.error, "launch" if launch.error else None
        if error is None and not in_time:
            if t0 is None:
                error, failure = "never launched", "launch"
            elif unfinished:
                error, failure = unfinished, "interrupted"
            elif exited:
                error = f"{console.closed_reason} before {console.marker}"
                failure = "exited"
            else:
                error, failure = f"no {console.marker} within {timeout:g}s", "timeout"
        guest_uptime = _float(console.fields.get("uptime"))
        return {
            **self._step_head(step, index),
            "index": i,
            "name": inst.name,
            "ok": ok,
            # Why not ok: launch | exited | timeout | interrupted (None when ok).
            "failure": failure,
            "error": error,
            # Launch call relative to the step's start: queueing behind `concurrency`.
            "queued_s": rel_to(t0, step_start),
            "create_s": rel(launch.created_at),
            "start_s": rel(launch.started_at),
            "ready_s": rel(console.ready_at),
            # Ready time relative to the step's start (for step wall time, launch rate).
            "ready_at_s": rel_to(console.ready_at, step_start),
            "guest_uptime_s": guest_uptime,
            "guest_kernel": console.fields.get("kernel"),
            "marker_fields": console.fields,
            "console_tail": None if ok else console.tail(),
            **{k: v for k, v in inst.info.items() if not k.startswith("_")},
        }


def instance_name(run_id: str, platform: str, step: int, i: int) -> str:
    return f"{NAME_PREFIX}{run_id}-{platform}-s{step}-{i}"


def rel_to(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None
