"""The round trip to the engine's machine, read before launch (rtt_s)."""

from __future__ import annotations

from typing import Any

from bench.measurements.base import StepContext, StepMeasurement


class RoundTrip(StepMeasurement):
    fields = ("rtt_s",)

    def before(self, ctx: StepContext) -> float:
        # Before launch: the link as the step's consoles will see it.
        return ctx.host.rtt_s()

    def after(self, ctx: StepContext, kept: Any) -> dict[str, Any]:
        return {"rtt_s": kept}
