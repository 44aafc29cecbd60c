"""The host view: the drop of the host's MemAvailable over the step, per instance."""

from __future__ import annotations

from bench.measurements.base import StepContext, StepMeasurement
from bench.model.records import Facts


class HostMemory(StepMeasurement[int]):
    fields = (
        "mem_available_before_bytes",
        "mem_available_after_bytes",
        "host_drop_bytes",
        "host_drop_per_instance_bytes",
    )

    def before(self, ctx: StepContext) -> int:
        return ctx.host.mem_available_bytes()

    def after(self, ctx: StepContext, kept: int) -> Facts:
        after = ctx.host.mem_available_bytes()
        drop = kept - after
        return {
            "mem_available_before_bytes": kept,
            "mem_available_after_bytes": after,
            "host_drop_bytes": drop,
            "host_drop_per_instance_bytes": drop / ctx.n,
        }
