"""The engine view: what the backend's sample() reports of each instance (its own
memory figure, its writable storage, backend facts kept as extras), and its host
processes, for the process view after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.records import Facts

if TYPE_CHECKING:
    from bench.backends.base import Instance


class EngineView(InstanceMeasurement):
    # The fields a backend's sample() may fill; any other key it reports goes to extras.
    fields = ("engine_mem_bytes", "engine_mem_source", "disk_writable_bytes")
    sampling = True

    def prepare(self, ctx: StepContext) -> None:
        ctx.backend.prefetch(ctx.instances, ctx.host)

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        raw = ctx.backend.sample(inst, ctx.host)
        pids = raw.pop("pids", None)
        found["pids"] = [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []
        return raw
