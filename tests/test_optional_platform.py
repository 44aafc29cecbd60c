"""`optional: true`: a platform this host cannot run (crun under cgroups v1/hybrid, a
runtime docker does not know, an engine that is down) is left out of the run with why,
stored in the run and said in its report; any other platform's failure stops the run."""

from __future__ import annotations

import json

import pytest

from bench.backends.fake import FakeBackend
from bench.model.errors import EngineUnavailable, RuntimeUnusable
from bench.model.results import load_run
from bench.plan.scenario import LoadedScenario, parse_scenario
from bench.report.frame import load_frames
from bench.report.model import build_model
from bench.runner.run import run_scenario
from tests.helpers import FakeHost

REFUSAL = "runtime 'crun' cannot start the bench image on this host: cgroups in hybrid mode"


def text(optional: str = "true", both: bool = False) -> str:
    other = (
        f"  - {{name: b, backend: fake, optional: {optional}}}\n"
        if both
        else "  - {name: b, backend: fake}\n"
    )
    return (
        "name: o\nsettle: 0s\ntimeout: 5s\ncounts: [1]\nwarmup: 0\nplatforms:\n"
        f"  - {{name: crun, backend: fake, optional: {optional}}}\n" + other
    )


def run(tmp_path, scenario: str, refused: set[str], stage: str = "preflight"):
    host = FakeHost(lambda: [])
    warned: list[str] = []

    class Refusing(FakeBackend):
        def preflight(self):
            if stage == "preflight" and self.settings.name in refused:
                raise RuntimeUnusable(REFUSAL)

        def prepare(self, **kw):
            if stage == "prepare" and self.settings.name in refused:
                raise EngineUnavailable("the engine is down")
            return super().prepare(**kw)

    outcome = run_scenario(
        LoadedScenario(parse_scenario(scenario), None, scenario),
        tmp_path,
        warn=warned.append,
        factory=lambda p: Refusing(p, host=host),
    )
    return outcome, warned


@pytest.mark.parametrize("stage", ["preflight", "prepare"])
def test_an_optional_platform_this_host_cannot_run_is_left_out_with_why(tmp_path, stage):
    outcome, warned = run(tmp_path, text(), {"crun"}, stage)
    why = REFUSAL if stage == "preflight" else "the engine is down"
    assert any(w.startswith("platform crun (optional) is left out: ") and why in w for w in warned)
    meta = json.loads((outcome.directory / "metadata.json").read_text())
    assert list(meta["left_out"]) == ["crun"] and why in meta["left_out"]["crun"]
    assert meta["status"] == "complete" and list(meta["engines"]) == ["b"]
    run_ = load_run(outcome.directory)
    assert {s["platform"] for s in run_.samples} == {"b"}
    notes = build_model(load_frames([outcome.directory])).notes
    assert any(
        n.startswith("platform crun was not run (optional, this host cannot): ") for n in notes
    )


def test_a_platform_not_marked_optional_still_stops_the_run_before_anything_starts(tmp_path):
    with pytest.raises(RuntimeUnusable, match="cgroups in hybrid mode"):
        run(tmp_path, text("false"), {"crun"})
    assert list(tmp_path.iterdir()) == []


def test_when_no_platform_can_run_the_run_stops_naming_each(tmp_path):
    with pytest.raises(EngineUnavailable, match="no platform can run here: crun: .*; b: "):
        run(tmp_path, text(both=True), {"crun", "b"})


def test_an_optional_platform_that_can_run_runs(tmp_path):
    outcome, warned = run(tmp_path, text(), set())
    meta = json.loads((outcome.directory / "metadata.json").read_text())
    assert "left_out" not in meta and warned == []
    assert {s["platform"] for s in load_run(outcome.directory).samples} == {"crun", "b"}
