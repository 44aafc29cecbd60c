"""The engine's own instants inside a container's launch: its event stream's create and
start events (Docker Engine's /events, podman's libpod /events), placed on bench's clock.

The runner's instants are on its monotonic clock, from each instance's launch call; an
event carries the engine's wall-clock time. The executor records the wall clock at the
launch call (Instance.launch_wall_ns) beside the runner's, so an event's instant is
its wall time less that one. This holds only where the engine shares this machine's
clock: for an engine elsewhere (ssh://) the backend says why in `why_not`, recorded in
the sample's engine_events_error, and no instant is stored. An event the
stream did not report leaves its field empty: never assumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model import kinds
from bench.model.errors import first_line
from bench.model.records import Facts

if TYPE_CHECKING:
    from bench.backends.base import EngineEvents, Instance

# Sample field per engine event name (docker and podman both name them so).
FIELDS = {"create": "engine_create_s", "start": "engine_start_s"}


def offsets(wall_ns: dict[str, int], launch_wall_ns: int | None) -> Facts:
    """The events' instants in seconds from the launch call (none without its wall time)."""
    if launch_wall_ns is None:
        return {}
    return {
        field: (wall_ns[event] - launch_wall_ns) / 1e9
        for event, field in FIELDS.items()
        if event in wall_ns
    }


class EngineEventInstants(InstanceMeasurement):
    fields = ("engine_create_s", "engine_start_s", "engine_events_error")
    # Read once every instance is ready: its start event has been emitted by then.
    when = "after_ready"
    kinds = frozenset({kinds.CONTAINER, kinds.SANDBOX})

    def __init__(self, name: str):
        super().__init__(name)
        self._events: EngineEvents | None = None
        self._error: str | None = None

    def prepare(self, ctx: StepContext) -> None:
        # One query per step, for all its instances.
        self._events, self._error = None, None
        try:
            self._events = ctx.backend.engine_events(ctx.instances)
        except Exception as e:  # the step goes on: its instants stay empty
            self._error = f"engine events not read: {first_line(e)}"

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        if self._error is not None:
            return {"engine_events_error": self._error}
        events = self._events
        if events is None:
            return {}
        if events.why_not is not None:
            return {"engine_events_error": events.why_not}
        return offsets(events.wall_ns.get(inst.name, {}), inst.launch_wall_ns)
