"""The host view: the drop of the host's MemAvailable over the step, per instance, and
the kernel's slab (Slab, SReclaimable, SUnreclaim of /proc/meminfo) at both readings."""

from __future__ import annotations

from bench.machines import procfs
from bench.measurements.base import StepContext, StepMeasurement
from bench.model.records import Facts

MEMINFO = "/proc/meminfo"
# The slab readings, stored raw (before and after) by stem: growth and per-instance
# figures are computed on read (StepRecord.slab_growth_bytes is the one difference kept,
# as host_drop_bytes is, so that summary and compare treat it as a metric).
SLAB_STEMS = tuple(procfs.SLAB_FIELDS.values())


class HostMemory(StepMeasurement[tuple[int, dict[str, int]]]):
    fields = (
        "mem_available_before_bytes",
        "mem_available_after_bytes",
        "host_drop_bytes",
        "host_drop_per_instance_bytes",
        *(f"{stem}_{when}_bytes" for stem in SLAB_STEMS for when in ("before", "after")),
        "slab_growth_bytes",
    )

    def before(self, ctx: StepContext) -> tuple[int, dict[str, int]]:
        return ctx.host.mem_available_bytes(), _slab(ctx)

    def after(self, ctx: StepContext, kept: tuple[int, dict[str, int]]) -> Facts:
        available, slab = kept
        after = ctx.host.mem_available_bytes()
        drop = available - after
        facts: Facts = {
            "mem_available_before_bytes": available,
            "mem_available_after_bytes": after,
            "host_drop_bytes": drop,
            "host_drop_per_instance_bytes": drop / ctx.n,
        }
        slab_after = _slab(ctx)
        # A field the host's kernel does not report (or a host that cannot read the
        # file) is left out, not stored as a zero.
        for stem in SLAB_STEMS:
            if stem in slab:
                facts[f"{stem}_before_bytes"] = slab[stem]
            if stem in slab_after:
                facts[f"{stem}_after_bytes"] = slab_after[stem]
        if "slab" in slab and "slab" in slab_after:
            facts["slab_growth_bytes"] = slab_after["slab"] - slab["slab"]
        return facts


def _slab(ctx: StepContext) -> dict[str, int]:
    """The slab fields of the engine's machine, through its Host (local or SSH)."""
    return procfs.parse_slab(ctx.host.read_files([MEMINFO]).get(MEMINFO) or "")
