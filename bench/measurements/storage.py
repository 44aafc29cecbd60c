"""Disk: the growth of the engine's storage over the step (the allocated bytes of the
entries that appeared in its storage directories)."""

from __future__ import annotations

from typing import Any

from bench.measurements.base import StepContext, StepMeasurement


class StorageGrowth(StepMeasurement):
    fields = ("disk_growth_bytes",)
    # Walking the instances' new storage is part of bench's sampling time.
    sampling = True

    def before(self, ctx: StepContext) -> Any:
        return ctx.host.snapshot_entries(ctx.backend.storage_dirs())

    def after(self, ctx: StepContext, kept: Any) -> dict[str, Any]:
        return {"disk_growth_bytes": ctx.host.new_entries_bytes(kept)}
