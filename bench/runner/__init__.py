"""The runner: steps, instances, the clock. It knows no engine.

For each platform, each N, each repeat: launch N instances (at most `concurrency`
launch calls in flight), wait until every one is ready or has timed out, then
destroy them all and record one sample per instance. Every time is taken from one
clock (monotonic unless a test injects a virtual one), relative to the instance's
own launch call.

The parts, each in its own module:
- policy: counts, density progression, memory guard, limits, stop rules (pure);
- executor: launch pool, the wait, teardown, the live registry for interrupts;
- measurer: runs the registered measurements (bench.measurements: host, process and
  engine views, storage, round trip) around each step, through the backend's host;
- recorder: the only writer of results (sample and step rows are built there).
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from bench.backends.base import NAME_PREFIX, Backend
from bench.machines.clock import REAL_CLOCK, Clock
from bench.model.errors import EngineUnavailable
from bench.model.records import Facts, Sample, StepRecord
from bench.model.settings import PlatformBase
from bench.plan.leftovers import clean_command
from bench.plan.scenario import LoadedScenario, Step
from bench.runner.executor import LaunchedStep, StepExecutor
from bench.runner.measurer import Before, Measurer
from bench.runner.policy import PlatformPolicy, ab_order
from bench.runner.recorder import (
    RampTeardown,
    Recorder,
    Sink,
    StepHead,
    sample_row,
    step_head,
    step_row,
)

__all__ = ["Events", "NoEvents", "Runner", "Sink", "StepResult", "instance_name"]


class Events(Protocol):
    """What the runner tells its user interface; all methods are optional no-ops."""

    def step_started(self, index: int, total: int, step: Step) -> None: ...
    def instance_done(self, step: Step, ok: bool) -> None: ...
    def step_finished(self, step: Step, samples: list[Sample], record: StepRecord) -> None: ...
    def step_refused(self, step: Step, reason: str) -> None: ...
    def warmup_started(self, platform: str, instances: int) -> None: ...


class NoEvents:
    def step_started(self, index: int, total: int, step: Step) -> None:
        pass

    def instance_done(self, step: Step, ok: bool) -> None:
        pass

    def step_finished(self, step: Step, samples: list[Sample], record: StepRecord) -> None:
        pass

    def step_refused(self, step: Step, reason: str) -> None:
        pass

    def warmup_started(self, platform: str, instances: int) -> None:
        pass


@dataclass(frozen=True)
class StepResult:
    index: int  # the step's number in the run (StepRecord.step)
    samples: list[Sample]
    record: StepRecord

    @property
    def failures(self) -> int:
        return sum(1 for s in self.samples if not s.ok)


@dataclass
class Runner:
    loaded: LoadedScenario
    run_id: str
    backends: dict[str, Backend]
    sink: Sink  # written by the recorder only
    events: Events = field(default_factory=NoEvents)
    clock: Clock = REAL_CLOCK
    # (baseline, candidate) platform names: run them as counterbalanced pairs (bench ab).
    ab: tuple[str, str] | None = None
    # Several hosts in one run (bench.runner.lanes): this runner's platforms (default:
    # the scenario's), the key of each one's backend and warm-up (default: its name),
    # and the step numbers and recorder every host's runner shares.
    platforms: list[PlatformBase] | None = None
    slot_of: Callable[[PlatformBase], str] = operator.attrgetter("name")
    counter: Iterator[int] = field(default_factory=itertools.count)
    recorder: Recorder | None = None

    def __post_init__(self) -> None:
        sc = self.loaded.scenario
        self._executor = StepExecutor(self.clock, sc.launch.concurrency)
        self._measurer = Measurer(sc, self.clock)
        self._recorder = self.recorder or Recorder(self.sink)

    def run(self) -> list[StepResult]:
        """Every platform in turn: its warm-up, then its steps as its policy allows."""
        if self.ab is not None:
            return self._run_ab(*self.ab)
        sc = self.loaded.scenario
        if sc.workloads is not None:
            return self._run_interleaved()
        total = len(sc.plan())
        results: list[StepResult] = []
        for platform in self.platforms or sc.platforms:
            policy = PlatformPolicy.of(sc, platform)
            self._warm_up(platform, policy)
            if policy.ramp:
                if self._ramp(platform, policy, total, results):
                    return results
                continue
            for n, r in policy.steps():
                result = self._step(Step(platform=platform, n=n, repeat=r), policy, total)
                if result is None:
                    continue  # refused: the policy has ended this platform's steps
                results.append(result)
                if policy.stops_run(result.failures):
                    return results
        return results

    def _run_interleaved(self) -> list[StepResult]:
        """A workload run: the platforms take turns, one step each (repeat-major), so a
        host load that drifts over the run falls on every platform alike; the figures
        are ratios between platforms. Every platform warms up first."""
        sc = self.loaded.scenario
        total = len(sc.plan())
        platforms = self.platforms or sc.platforms
        policies = {p.name: PlatformPolicy.of(sc, p) for p in platforms}
        for p in platforms:
            self._warm_up(p, policies[p.name])
        turns = {p.name: policies[p.name].steps() for p in platforms}
        results: list[StepResult] = []
        while turns:
            for p in platforms:
                if p.name not in turns:
                    continue
                nxt = next(turns[p.name], None)
                if nxt is None:
                    del turns[p.name]
                    continue
                n, r = nxt
                result = self._step(Step(platform=p, n=n, repeat=r), policies[p.name], total)
                if result is None:
                    continue  # refused: the policy has ended this platform's steps
                results.append(result)
                if policies[p.name].stops_run(result.failures):
                    return results
        return results

    def _run_ab(self, baseline: str, candidate: str) -> list[StepResult]:
        """Counterbalanced pairs of the baseline's and the candidate's steps (bench ab).

        Both platforms warm up first; then every repeat goes through every N, each pair
        in AB or BA order (policy.ab_order). The pairs are recorded as they finish.
        """
        sc = self.loaded.scenario
        a, b = (next(p for p in sc.platforms if p.name == x) for x in (baseline, candidate))
        policies = {p.name: PlatformPolicy.of(sc, p) for p in (a, b)}
        order = ab_order(sc.counts_for(a), sc.repeat)
        total = 2 * len(order)
        self._warm_up(a, policies[a.name])
        self._warm_up(b, policies[b.name])
        results: list[StepResult] = []
        pairs: list[list[int]] = []
        for n, r, baseline_first in order:
            steps: dict[str, int] = {}
            for p in (a, b) if baseline_first else (b, a):
                result = self._step(Step(platform=p, n=n, repeat=r), policies[p.name], total)
                if result is None:
                    return results  # refused by the memory guard: no pair without it
                results.append(result)
                steps[p.name] = result.index
                if policies[p.name].stops_run(result.failures):
                    return results
            pairs.append([steps[a.name], steps[b.name]])
            self._recorder.ab_pairs(a.name, b.name, pairs)
        return results

    def _step(
        self, step: Step, policy: PlatformPolicy, total: int, ramp: Ramp | None = None
    ) -> StepResult | None:
        """One step, guarded, run, judged and recorded; None when the guard refused it.

        A ramp's level (`ramp`) launches only the instances it adds, and keeps them.
        """
        backend = self.backends[self.slot_of(step.platform)]
        index = next(self.counter)
        self.events.step_started(index, total, step)
        # The instances already running are in MemAvailable: only the added ones count.
        refusal = policy.guard(step.added, backend.host.mem_available_bytes())
        if refusal is not None:
            self._recorder.refused(self._head(step, index), refusal)
            self.events.step_refused(step, refusal.detail)
            return None
        result = self.run_step(step, index, ramp)
        self._check_engine(step, result)
        result = _judged(result, policy, step.n)
        self._recorder.step(result.samples, result.record)
        self.events.step_finished(step, result.samples, result.record)
        self._check_teardown(step.platform)
        return result

    def _warm_up(self, platform: PlatformBase, policy: PlatformPolicy) -> None:
        """Start `warmup` instances, wait for them, destroy them: nothing is measured.

        What they saw goes to the metadata only (a first boot of minutes is worth
        knowing about), never into the samples. The memory guard applies to it too:
        a warm-up the host cannot hold is skipped (the first step is then refused).
        """
        k = self.loaded.scenario.warmup
        backend = self.backends[self.slot_of(platform)]
        if k == 0 or policy.would_refuse(k, backend.host.mem_available_bytes()):
            return
        names = [f"{NAME_PREFIX}{self.run_id}-{platform.name}-w-{i}" for i in range(k)]
        launched = self._executor.new_step(
            backend, names, self.run_id, platform.name, platform.ready
        )
        self.events.warmup_started(platform.name, k)
        try:
            self._executor.launch(launched)
            self._executor.wait(launched, self.loaded.scenario.timeout, lambda _ok: None)
            self._executor.join_launches(launched)
        finally:
            self._executor.teardown(launched)
        self._check_teardown(platform)
        ready_s = [
            x.inst.console.ready_at - x.launch_at
            if x.error is None and x.launch_at is not None and x.inst.console.ready_at
            else None
            for x in launched.launches
        ]
        self._recorder.warmup(k, self.slot_of(platform), ready_s)

    def _check_teardown(self, platform: PlatformBase) -> None:
        """An engine that stopped destroying instances (its calls time out) would hang
        every later step the same way: stop with one line that says what is left."""
        backend = self.backends[self.slot_of(platform)]
        reason = self._executor.stalled(backend)
        if reason is None:
            return
        hint = f"{backend.stall_hint}; " if backend.stall_hint else ""
        raise EngineUnavailable(
            f"the {platform.backend} engine of platform {platform.name!r} stopped destroying "
            f"instances: {reason}; {self._executor.live_on(backend)} instance(s) of this run "
            f"are left. {hint}once it answers again, run `{self._clean_command()}`; "
            "finished steps are kept"
        )

    def _check_engine(self, step: Step, result: StepResult) -> None:
        """A step where every launch failed and the engine no longer answers: the engine
        died mid-run. Keep the step, then stop with one clear line instead of failing
        every remaining step the same way."""
        if not result.samples or any(s.failure != "launch" for s in result.samples):
            return
        backend = self.backends[self.slot_of(step.platform)]
        if backend.reachable():
            return
        self._recorder.step(result.samples, result.record)
        raise EngineUnavailable(
            f"the {step.platform.backend} engine of platform {step.platform.name!r} stopped "
            f"answering mid-run ({result.samples[0].error}); finished steps are kept; "
            f"once it is back, remove leftovers with `{self._clean_command()}`"
        )

    def _clean_command(self) -> str:
        return clean_command(self.run_id, self.loaded)

    def _head(self, step: Step, index: int) -> StepHead:
        return step_head(self.run_id, step, index, self.backends[self.slot_of(step.platform)])

    def run_step(self, step: Step, index: int, ramp: Ramp | None = None) -> StepResult:
        """Launch the step's instances, wait, measure, tear down; a ramp's level
        (`ramp`) launches only those it adds and keeps them all running."""
        sc = self.loaded.scenario
        backend = self.backends[self.slot_of(step.platform)]
        head = self._head(step, index)
        names = [
            instance_name(self.run_id, step.platform.name, index, i) for i in range(step.added)
        ]
        launched = self._executor.new_step(
            backend, names, self.run_id, step.platform.name, step.platform.ready
        )
        if ramp is None:
            before = self._measurer.before(backend)
        else:
            # Memory and storage from before the ramp's first level: a level's figures
            # (per instance: over its N) are those of everything running at it.
            ramp.before = ramp.before or self._measurer.before(backend)
            before = ramp.before
        measured: Facts = {}
        wait_end: float | None = None
        teardown_s: float | None = None
        try:
            self._executor.launch(launched)
            self._executor.wait(
                launched, sc.timeout, lambda ok: self.events.instance_done(step, ok)
            )
            wait_end = self.clock.now()
            self._executor.join_launches(launched)
            measured = self._measurer.after(backend, launched.launches, before, step.n)
            if ramp is None:
                teardown_s = self._executor.teardown(launched)
            else:
                ramp.levels.append(launched)
        except BaseException:
            # Interrupted (or broken) mid-step, teardown included: destroy what is left
            # (only instances not yet destroyed), then keep what was measured.
            self._executor.teardown(launched)
            self._recorder.interrupted(head, launched, sc.timeout, wait_end, measured)
            raise
        samples = [
            sample_row(head, i, x, launched.start, sc.timeout, wait_end)
            for i, x in enumerate(launched.launches)
        ]
        record = step_row(
            head,
            "ran",
            samples=samples,
            wait_s=wait_end - launched.start,
            teardown_s=teardown_s,
            destroy_failures=self._executor.still_live(launched) if ramp is None else 0,
            measured=measured,
        )
        return StepResult(index, samples, record)

    # -- ramp -------------------------------------------------------------------------

    def _ramp(
        self,
        platform: PlatformBase,
        policy: PlatformPolicy,
        total: int,
        results: list[StepResult],
    ) -> bool:
        """A ramp density search: each N adds to the instances of the N before it, whose
        instances stay up; torn down once, after its last N (and per repeat), whatever
        ended it (the max, a limit, a refusal, a failure, an interrupt). True when
        `on_failure: stop` ends the run.

        Every level is recorded when it is measured, before the teardown: a teardown
        that hangs (an engine deadlocked by thousands of removals) loses no level. The
        teardown goes to the run's metadata (`ramp_teardowns`)."""
        ramp = Ramp(platform.name)
        stop = False
        try:
            for n, r in policy.ramp_steps():
                if r != ramp.repeat:  # a new repeat ramps up from zero again
                    self._end_ramp(ramp)
                    self._check_teardown(platform)
                    ramp = Ramp(platform.name, repeat=r)
                step = Step(platform=platform, n=n, repeat=r, kept=ramp.n)
                result = self._step(step, policy, total, ramp)
                if result is None:
                    break  # refused: the policy has ended this platform's steps
                ramp.n, ramp.last_step = n, result.index
                results.append(result)
                if policy.stops_run(result.failures):
                    stop = True
                    break
        finally:
            self._end_ramp(ramp)
        self._check_teardown(platform)
        return stop

    def _end_ramp(self, ramp: Ramp) -> None:
        """Destroy every level of the ramp, and record how long it took."""
        levels, ramp.levels = ramp.levels, []
        if not levels:
            return
        seconds = self._executor.teardown_many(levels)
        self._recorder.ramp_teardown(
            RampTeardown(
                platform=ramp.platform,
                repeat=ramp.repeat,
                after_step=ramp.last_step,
                instances=sum(len(x.launches) for x in levels),
                teardown_s=seconds,
                destroy_failures=sum(self._executor.still_live(x) for x in levels),
            )
        )

    # -- interrupts -------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._executor.stopping

    def stop(self) -> None:
        """No new launches from now on (the current step still tears down)."""
        self._executor.stop()

    def cleanup(self, workers: int = 32) -> list[str]:
        """Destroy every instance this run still has; returns those that would not go."""
        return self._executor.cleanup(workers)


@dataclass
class Ramp:
    """A ramp's levels, whose instances stay running from one N to the next."""

    platform: str
    repeat: int = 0
    last_step: int | None = None  # the index of its last recorded level
    n: int = 0  # instances running: the last level's N
    levels: list[LaunchedStep] = field(default_factory=list)
    before: Before | None = None  # the host before the first level


def _judged(result: StepResult, policy: PlatformPolicy, n: int) -> StepResult:
    """The step with its density limit (PlatformPolicy.judge), if its platform searches.

    The limit is judged on the finished record (its host readings), so it goes into a
    copy of it, made before the record is stored or shown."""
    limit = policy.judge(n, result.samples, result.record)
    if limit is None:
        return result
    update = {"limit": limit[0], "limit_detail": limit[1]}
    return dataclasses.replace(result, record=result.record.model_copy(update=update))


def instance_name(run_id: str, platform: str, step: int, i: int) -> str:
    return f"{NAME_PREFIX}{run_id}-{platform}-s{step}-{i}"
