"""The engine view: what the backend's sample() reports of each instance (its own
memory figure, its writable storage, backend facts kept as extras), and its host
processes (which of them are the runtime's; a VM's VMM and configured RAM), for the
process view after it."""

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
        found["pids"] = _pids(raw.pop("pids", None))
        # Where the engine's own cost sits (not stored here: the process view measures it).
        runtime = raw.pop("runtime_pids", None)
        if runtime is not None:
            found["runtime_pids"] = _pids(runtime)
        guest, vmm = raw.pop("guest_memory_bytes", None), raw.pop("vmm_pid", None)
        if isinstance(guest, int) and isinstance(vmm, int) and guest > 0 and vmm > 0:
            found["guest_memory_bytes"], found["vmm_pid"] = guest, vmm
        return raw


def _pids(value: object) -> list[int]:
    return [p for p in value if isinstance(p, int)] if isinstance(value, list) else []
