"""Disk: the growth of the engine's storage over the step (the allocated bytes of the
entries that appeared in its storage directories)."""

from __future__ import annotations

from pathlib import Path

from bench.measurements.base import StepContext, StepMeasurement
from bench.model.records import Facts


class StorageGrowth(StepMeasurement[dict[Path, set[str]]]):
    fields = ("disk_growth_bytes",)
    # Walking the instances' new storage is part of bench's sampling time.
    sampling = True

    def before(self, ctx: StepContext) -> dict[Path, set[str]]:
        return ctx.host.snapshot_entries(ctx.backend.storage_dirs())

    def after(self, ctx: StepContext, kept: dict[Path, set[str]]) -> Facts:
        return {"disk_growth_bytes": ctx.host.new_entries_bytes(kept)}
