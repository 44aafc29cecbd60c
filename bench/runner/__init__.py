"""The runner: steps, instances, the clock. It knows no engine.

For each platform, each N, each repeat: launch N instances (at most `concurrency`
launch calls in flight), wait until every one is ready or has timed out, then
destroy them all and record one sample per instance. Every time is taken from one
clock (monotonic unless a test injects a virtual one), relative to the instance's
own launch call.

The parts, each in its own module:
- policy: counts, density progression, memory guard, limits, stop rules (pure);
- executor: launch pool, the wait, teardown, the live registry for interrupts;
- measurer: host readings and per-instance samples, through the backend's host;
- recorder: the only writer of results (sample and step rows are built there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.backends.base import NAME_PREFIX, Backend
from bench.clock import REAL_CLOCK, Clock
from bench.errors import EngineUnavailable
from bench.runner.executor import StepExecutor
from bench.runner.measurer import Measurer
from bench.runner.policy import PlatformPolicy
from bench.runner.recorder import Recorder, sample_row, step_head, step_row
from bench.scenario import LoadedScenario, Step

__all__ = ["Events", "NoEvents", "Runner", "StepResult", "instance_name"]


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
class StepResult:
    samples: list[dict[str, Any]]
    record: dict[str, Any]

    @property
    def failures(self) -> int:
        return sum(1 for s in self.samples if not s["ok"])


@dataclass
class Runner:
    loaded: LoadedScenario
    run_id: str
    backends: dict[str, Backend]
    sink: Any  # RunWriter-like: add_samples(list), add_step(dict); written by the recorder
    events: Events = field(default_factory=NoEvents)
    clock: Clock = REAL_CLOCK
    _index: int = 0

    def __post_init__(self) -> None:
        sc = self.loaded.scenario
        self._executor = StepExecutor(self.clock, sc.launch.concurrency)
        self._measurer = Measurer(sc, self.clock)
        self._recorder = Recorder(self.sink)

    def run(self) -> list[StepResult]:
        sc = self.loaded.scenario
        total = len(sc.plan())
        results: list[StepResult] = []
        for platform in sc.platforms:
            policy = PlatformPolicy.of(sc, platform)
            backend = self.backends[platform.name]
            for n, r in policy.steps():
                step = Step(platform=platform, n=n, repeat=r)
                index = self._index
                self._index += 1
                self.events.step_started(index, total, step)
                refusal = policy.guard(n, backend.host.mem_available_bytes())
                if refusal is not None:
                    self._recorder.refused(self._head(step, index), refusal)
                    self.events.step_refused(step, refusal.detail)
                    continue  # the policy has ended this platform's steps
                result = self.run_step(step, index)
                self._check_engine(step, result)
                limit = policy.judge(n, result.samples, result.record)
                if limit is not None:
                    result.record["limit"], result.record["limit_detail"] = limit
                self._recorder.step(result.samples, result.record)
                self.events.step_finished(step, result.samples, result.record)
                results.append(result)
                if policy.stops_run(result.failures):
                    return results
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
        self._recorder.step(result.samples, result.record)
        raise EngineUnavailable(
            f"the {step.platform.backend} engine of platform {step.platform.name!r} stopped "
            f"answering mid-run ({result.samples[0]['error']}); finished steps are kept; "
            f"once it is back, remove leftovers with `bench clean --run {self.run_id}`"
        )

    def _head(self, step: Step, index: int) -> dict[str, Any]:
        return step_head(self.run_id, step, index, self.backends[step.platform.name])

    def run_step(self, step: Step, index: int) -> StepResult:
        sc = self.loaded.scenario
        backend = self.backends[step.platform.name]
        head = self._head(step, index)
        names = [instance_name(self.run_id, step.platform.name, index, i) for i in range(step.n)]
        launched = self._executor.new_step(
            backend, names, self.run_id, step.platform.name, step.platform.ready.marker
        )
        before = self._measurer.before(backend)
        measured: dict[str, Any] = {}
        wait_end: float | None = None
        try:
            self._executor.launch(launched)
            self._executor.wait(
                launched, sc.timeout, lambda ok: self.events.instance_done(step, ok)
            )
            wait_end = self.clock.now()
            self._executor.join_launches(launched)
            measured = self._measurer.after(backend, launched.launches, before, step.n)
            teardown_s = self._executor.teardown(launched)
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
            destroy_failures=self._executor.still_live(launched),
            measured=measured,
        )
        return StepResult(samples, record)

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


def instance_name(run_id: str, platform: str, step: int, i: int) -> str:
    return f"{NAME_PREFIX}{run_id}-{platform}-s{step}-{i}"
