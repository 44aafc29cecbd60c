"""The measurement seam: a new measurement is one module plus one registry line.

The plug-ins below live in this module and are registered with one line each (the
test's `monkeypatch.setitem` on MEASUREMENTS); a fake run stores what they read.
"""

from typing import Any, ClassVar

import pytest

from bench import measurements
from bench.machines.clock import FakeClock
from bench.measurements import MEASUREMENTS
from bench.measurements.base import InstanceMeasurement, StepContext, StepMeasurement
from bench.model.records import BACKEND_FIELDS, Sample, StepRecord, fields_of
from bench.plan.scenario import parse_scenario
from bench.runner.measurer import Measurer
from tests.helpers import FakeHost, run_fake


class LiveCount(StepMeasurement):
    """How many instances the fake engine holds once the step is ready."""

    fields = ("fake_live",)  # not declared in bench.model.records: stored under extras
    when = "after_ready"

    def after(self, ctx: StepContext, kept: Any) -> dict[str, Any]:
        return {"fake_live": len(ctx.backend.live)}  # type: ignore[attr-defined]


class NameChars(InstanceMeasurement):
    """The length of each instance's name, on VMs only."""

    fields = ("name_chars",)
    kinds = frozenset({"vm"})

    def sample(self, ctx, inst, found):
        return {"name_chars": len(inst.name)}


def _own(extras):
    """A sample's extras but the built-in boundary mapping (every sample has one)."""
    return {k: v for k, v in extras.items() if k != "boundary"}


def scenario(kind="container"):
    return (
        "name: t\ntimeout: 2s\nsettle: 1s\ncounts: [1, 3]\n"
        f"platforms:\n  - name: f\n    backend: fake\n    kind: {kind}\n"
    )


def test_a_new_step_measurement_is_one_registry_line(monkeypatch):
    monkeypatch.setitem(MEASUREMENTS, "live_count", "tests.test_measurements:LiveCount")
    _, sink, _ = run_fake(scenario())
    assert [(st["n"], st["extras"]) for st in sink.steps] == [
        (1, {"fake_live": 1}),
        (3, {"fake_live": 3}),
    ]
    # The built-in measurements still fill their declared fields beside it.
    assert all(st["host_drop_per_instance_bytes"] == 100 * 2**20 for st in sink.steps)
    StepRecord.model_validate(sink.steps[0])  # the stored row is a valid record


def test_an_instance_measurement_runs_on_the_kinds_it_names(monkeypatch):
    monkeypatch.setitem(MEASUREMENTS, "name_chars", "tests.test_measurements:NameChars")
    _, sink, _ = run_fake(scenario("vm"))
    assert [_own(s["extras"]) for s in sink.samples] == [
        {"name_chars": len(s["name"])} for s in sink.samples
    ]
    assert all(Sample.model_validate(s).ok for s in sink.samples)
    _, sink, _ = run_fake(scenario("container"))
    assert all(_own(s["extras"]) == {} for s in sink.samples)


class Stamp(StepMeasurement):
    """When it was read, on the virtual clock."""

    seen: ClassVar[list[tuple[str, float]]] = []

    def before(self, ctx):
        self.seen.append((f"{self.name} before", ctx.clock.now()))

    def after(self, ctx, kept):
        self.seen.append((f"{self.name} after", ctx.clock.now()))
        return {}


class StampReady(Stamp):
    when = "after_ready"


def test_after_ready_reads_before_the_settle_wait_and_after_settle_after_it(monkeypatch):
    sc = parse_scenario(scenario().replace("settle: 1s", "settle: 2s"))
    clock = FakeClock(start=0.0)
    registry = {
        "settled": "tests.test_measurements:Stamp",
        "ready": "tests.test_measurements:StampReady",
    }
    monkeypatch.setattr(Stamp, "seen", [])
    m = Measurer(sc, clock, registry)

    class Backend:
        kind = "container"
        host = FakeHost(list)

    before = m.before(Backend)  # type: ignore[arg-type]
    assert m.after(Backend, [], before, 1) == {  # type: ignore[arg-type]
        "settle_s": 2.0,
        "dropped_caches": False,
        "sampling_s": 0.0,
    }
    # Registry order within a phase; the after_ready phase first, settle between.
    assert Stamp.seen == [
        ("settled before", 0.0),
        ("ready before", 0.0),
        ("ready after", 0.0),
        ("settled after", 2.0),
    ]


def test_every_built_in_field_is_declared_where_it_is_stored():
    """Their units and directions come from bench.model.records; an instance measurement's
    fields are ones a sample takes from the instance's info (not extras)."""
    loaded = measurements.load()
    assert [m.name for m in loaded] == list(MEASUREMENTS)
    for m in loaded:
        declared = m.declared()
        # A nested mapping of facts is stored under extras, documented by its measurement.
        declared = {k: v for k, v in declared.items() if k not in m.nested}
        assert declared or m.nested, m.name
        assert all(info is not None for info in declared.values()), m.name
        if m.per == "instance":
            assert set(declared) <= BACKEND_FIELDS, m.name
    host = next(m for m in loaded if m.name == "host_memory").declared()
    drop = host["host_drop_per_instance_bytes"]
    assert drop is not None and (drop.unit, drop.metric, drop.worse) == ("bytes", True, "higher")
    assert LiveCount.declared() == {"fake_live": None}  # stored under extras
    assert (
        fields_of(StepRecord)["rtt_s"]
        == next(m for m in loaded if m.name == "rtt").declared()["rtt_s"]
    )


def test_two_measurements_cannot_claim_one_field():
    clash = {**MEASUREMENTS, "again": "bench.measurements.storage:StorageGrowth"}
    with pytest.raises(ValueError, match="again: disk_growth_bytes is already storage's"):
        measurements.load(clash)
    with pytest.raises(ValueError, match="mine: sampling_s is already the measurer's"):
        measurements.load({"mine": "tests.test_measurements:ClaimsSamplingS"})
    with pytest.raises(ValueError, match="when='at_noon'"):
        measurements.load({"noon": "tests.test_measurements:AtNoon"})


class ClaimsSamplingS(StepMeasurement):
    fields = ("sampling_s",)  # the measurer's own

    def after(self, ctx, kept):
        return {}


class AtNoon(ClaimsSamplingS):
    fields = ()
    when = "at_noon"
