"""The round trip to the engine's machine, read before launch (rtt_s)."""

from __future__ import annotations

from bench.measurements.base import StepContext, StepMeasurement
from bench.model.records import Facts


class RoundTrip(StepMeasurement[float]):
    fields = ("rtt_s",)

    def before(self, ctx: StepContext) -> float:
        # Before launch: the link as the step's consoles will see it.
        return ctx.host.rtt_s()

    def after(self, ctx: StepContext, kept: float) -> Facts:
        return {"rtt_s": kept}
