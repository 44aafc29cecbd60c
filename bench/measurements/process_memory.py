"""The process view: PSS, USS and RSS summed over an instance's host processes (the
pids the engine view found)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.measurements.base import InstanceMeasurement, StepContext

if TYPE_CHECKING:
    from bench.backends.base import Instance


class ProcessMemory(InstanceMeasurement):
    fields = ("pss_bytes", "uss_bytes", "rss_bytes", "processes")
    sampling = True

    def sample(self, ctx: StepContext, inst: Instance, found: dict[str, Any]) -> dict[str, Any]:
        pids = found.get("pids")
        return (ctx.host.process_memory(pids) or {}) if pids else {}
