"""The process view: PSS, USS and RSS summed over an instance's host processes (the
pids the engine view found)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.records import Facts

if TYPE_CHECKING:
    from bench.backends.base import Instance


class ProcessMemory(InstanceMeasurement):
    fields = ("pss_bytes", "uss_bytes", "rss_bytes", "processes")
    sampling = True

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        pids = found.get("pids")
        return dict(ctx.host.process_memory(pids) or {}) if pids else {}
