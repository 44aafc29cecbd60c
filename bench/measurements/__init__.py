"""Measurements: what bench reads of a step besides its times, one plug-in each.

A measurement is a class in its own module, on the base of bench.measurements.base:
a step measurement (StepMeasurement) fills fields of the step's record, an instance
measurement (InstanceMeasurement) fields of each launched instance's sample. It
declares the fields it fills (their units and directions are declared once, in
bench.model.records; an undeclared name is stored under the record's `extras`), when it
reads (`when`: right after every instance is ready, or after the settle wait and cache
drop; a step measurement may also read before launch), and the kinds it applies to.
The measurer (bench.runner.measurer) runs them in registry order: settle first, step
measurements in turn, the instance measurements next to each other in one pass over
the instances on the sampling threads. A new measurement is one module here plus one
line in MEASUREMENTS.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.measurements.base import Measurement

MEASUREMENTS: dict[str, str] = {
    "rtt": "bench.measurements.rtt:RoundTrip",
    "host_memory": "bench.measurements.host_memory:HostMemory",
    "engine": "bench.measurements.engine:EngineView",
    "engine_events": "bench.measurements.engine_events:EngineEventInstants",
    "process_memory": "bench.measurements.process_memory:ProcessMemory",
    "storage": "bench.measurements.storage:StorageGrowth",
    "host_settings": "bench.measurements.host_settings:HostSettings",
    "boundary": "bench.measurements.boundary:BoundaryFacts",
    # Before the workloads: it needs every instance of the step idle at once.
    "neighbours": "bench.measurements.neighbours:Neighbours",
    # Last: it runs the scenario's workloads in each instance (nothing without them).
    "workloads": "bench.measurements.workloads:Workloads",
}


def measurement_class(target: str) -> type[Measurement]:
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def load(registry: Mapping[str, str] | None = None) -> list[Measurement]:
    """One of each registered measurement, in registry order; two that claim one field
    (or a field the measurer fills itself) are refused."""
    from bench.measurements.base import MEASURER_FIELDS, WHENS

    out: list[Measurement] = []
    owner = {key: "the measurer" for key in MEASURER_FIELDS}
    for name, target in (MEASUREMENTS if registry is None else registry).items():
        m = measurement_class(target)(name)
        if m.when not in WHENS:
            raise ValueError(f"measurement {name}: when={m.when!r} (known: {', '.join(WHENS)})")
        for f in m.fields:
            if (m.per, f) in owner:
                raise ValueError(f"measurement {name}: {f} is already {owner[m.per, f]}'s")
            owner[m.per, f] = name
        out.append(m)
    return out
