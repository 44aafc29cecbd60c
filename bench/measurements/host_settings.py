"""Host settings that change what memory figures mean (KSM, THP) and the host's load,
read last, when the step's figures are."""

from __future__ import annotations

from bench.measurements.base import StepContext, StepMeasurement
from bench.model.records import Facts


class HostSettings(StepMeasurement[None]):
    # A new fact a host reports (a new /sys file) is kept under extras.
    fields = ("ksm_run", "ksm_pages_shared", "ksm_pages_sharing", "thp_mode", "load_avg_1m")

    def after(self, ctx: StepContext, kept: None) -> Facts:
        return ctx.host.memory_facts()
