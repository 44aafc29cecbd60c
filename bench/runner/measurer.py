"""Measurer: what a step costs, read through the step's backend's host by the
registered measurements (bench.measurements), in registry order.

Before the step: the page cache dropped (if the scenario says so), then each step
measurement's reading (the round trip, MemAvailable, the engine's storage entries).
After every instance is ready: the `after_ready` measurements, the settle wait and the
cache drop, then the `after_settle` ones (MemAvailable; the engine and process views of
each instance, on the sampling threads; the storage growth; the host's settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypedDict

from bench import measurements
from bench.backends.base import Backend, Instance
from bench.machines.clock import Clock
from bench.measurements.base import (
    Found,
    InstanceMeasurement,
    Kept,
    Measurement,
    StepContext,
    StepMeasurement,
    When,
)
from bench.model.errors import first_line
from bench.model.records import Facts
from bench.plan.scenario import Scenario
from bench.runner.executor import Launch

# Sampling waits on engine calls (docker's stats takes ~1 s per container on some
# engines), not on CPU: many in flight keep a 256-instance step's sampling short.
SAMPLING_WORKERS = 32


class Before(TypedDict):
    """What the measurer read before a step launched, for its after-readings."""

    dropped_caches: bool
    kept: dict[str, Kept]  # each step measurement's `before`, by its name


@dataclass
class Measurer:
    scenario: Scenario
    clock: Clock
    # name -> "module:Class"; default: bench.measurements.MEASUREMENTS as it is now.
    registry: Mapping[str, str] | None = None
    measurements: list[Measurement] = field(init=False)

    def __post_init__(self) -> None:
        self.measurements = measurements.load(self.registry)

    def _applying(self, backend: Backend) -> list[Measurement]:
        return [m for m in self.measurements if m.applies(backend.kind)]

    def before(self, backend: Backend) -> Before:
        """Before launch: what each step measurement keeps for its after-reading."""
        ctx = StepContext(self.scenario, self.clock, backend)
        dropped = backend.host.drop_caches() if self.scenario.drop_caches else False
        kept = {
            m.name: m.before(ctx) for m in self._applying(backend) if isinstance(m, StepMeasurement)
        }
        return Before(dropped_caches=dropped, kept=kept)

    def after(self, backend: Backend, launches: list[Launch], before: Before, n: int) -> Facts:
        """After the step is ready: each measurement's fields for the step record (the
        instance measurements' go to each instance's info, stored with its sample)."""
        sc = self.scenario
        live = [x.inst for x in launches if x.error is None and x.inst.handle is not None]
        ctx = StepContext(sc, self.clock, backend, n, live)
        applying = self._applying(backend)
        out: Facts = {"settle_s": sc.settle, "dropped_caches": before["dropped_caches"]}
        sampling_s = self._phase("after_ready", applying, ctx, before["kept"], out)
        if sc.settle > 0:
            self.clock.sleep(sc.settle)
        if sc.drop_caches:
            backend.host.drop_caches()
        sampling_s += self._phase("after_settle", applying, ctx, before["kept"], out)
        # Time bench spent asking engines, /proc and the disk about the running instances.
        out["sampling_s"] = sampling_s
        return out

    def _phase(
        self,
        when: When,
        applying: list[Measurement],
        ctx: StepContext,
        kept: dict[str, Kept],
        out: Facts,
    ) -> float:
        """Run one phase's measurements in registry order (instance measurements next to
        each other in one pass), filling `out`; the time spent in `sampling` ones."""
        spent, start = 0.0, None
        for ms in _passes([m for m in applying if m.when == when]):
            timed = any(m.sampling for m in ms)
            if timed and start is None:
                start = self.clock.now()
            elif not timed and start is not None:
                spent, start = spent + self.clock.now() - start, None
            step = [m for m in ms if isinstance(m, StepMeasurement)]
            for m in step:
                out.update(m.after(ctx, kept.get(m.name)))
            if not step:
                self._sample([m for m in ms if isinstance(m, InstanceMeasurement)], ctx)
        if start is not None:
            spent += self.clock.now() - start
        return spent

    def _sample(self, ms: list[InstanceMeasurement], ctx: StepContext) -> None:
        """Each instance measurement of each launched instance, on the sampling threads.
        Best effort: each sample says what it lacks (`sample_error`)."""
        for m in ms:
            try:
                m.prepare(ctx)
            except Exception as e:
                for inst in ctx.instances:
                    inst.info["sample_error"] = first_line(e)

        def sample(inst: Instance) -> None:
            found: Found = {}
            for m in ms:
                try:
                    inst.info.update(m.sample(ctx, inst, found))
                except Exception as e:  # a dead instance has no memory to report
                    inst.info["sample_error"] = first_line(e)

        with ThreadPoolExecutor(
            max_workers=max(1, min(SAMPLING_WORKERS, len(ctx.instances))),
            thread_name_prefix="bench-sample",
        ) as pool:
            list(pool.map(sample, ctx.instances))


def _passes(ms: list[Measurement]) -> list[list[Measurement]]:
    """Each step measurement on its own; instance measurements next to each other in
    the registry share one pass over the instances."""
    out: list[list[Measurement]] = []
    for m in ms:
        if (
            isinstance(m, InstanceMeasurement)
            and out
            and isinstance(out[-1][0], InstanceMeasurement)
        ):
            out[-1].append(m)
        else:
            out.append([m])
    return out
