"""Density search and the memory guard, on the fake backend and a fake host."""

import pytest

from bench.judge.summary import density_results
from bench.plan.scenario import parse_scenario
from tests.helpers import fake_runner, run_fake


def run(text: str, **host_args):
    _, sink, backends = run_fake(text, "run-d", **host_args)
    (backend,) = backends.values()
    return sink, backend


def run_raising(text: str, expected: type[BaseException], **host_args):
    """Like run(), for a run that raises `expected`: returns (error, sink, backend)."""
    runner, sink, backends = fake_runner(text, "run-d", **host_args)
    with pytest.raises(expected) as caught:
        runner.run()
    (backend,) = backends.values()
    return caught.value, sink, backend


HEAD = "name: d\nsettle: 0s\ntimeout: 3s\n"


def test_search_stops_at_the_first_step_over_the_slo():
    sink, backend = run(
        HEAD + "density: {factor: 2, max: 64, slo: {ready_p95: 600ms}, memory_reserve: 1MiB}\n"
        "platforms:\n  - {name: f, backend: fake, boot: 50ms, boot_per_instance: 50ms}\n",
        total=64 * 2**30,
    )
    ns = [st["n"] for st in sink.steps]
    # The last of N=8 boots in 50 + 8 x 50 = 450 ms, of N=16 in 850 ms: over the SLO.
    assert ns == [1, 2, 4, 8, 16]
    assert max(s["ready_s"] for s in sink.samples if s["n"] == 8) == pytest.approx(0.45)
    assert max(s["ready_s"] for s in sink.samples if s["n"] == 16) == pytest.approx(0.85)
    assert sink.steps[-1]["limit"] == "slo" and "SLO 0.6s" in sink.steps[-1]["limit_detail"]
    assert all(st["limit"] is None for st in sink.steps[:-1])
    assert density_results(sink.steps, sink.searches)["f"] == {
        "max_density": 8,
        "limit": "slo",
        "limit_detail": sink.steps[-1]["limit_detail"],
    }
    assert all(st["launch_rate_per_s"] > 0 for st in sink.steps)


def test_memory_guard_refuses_a_step_before_starting_any_instance():
    # 2 GiB host, 100 MiB per instance, 1 GiB reserve: N=16 would need ~2000 MiB.
    sink, backend = run(
        HEAD + "density: {factor: 2, max: 64, memory_reserve: 1GiB}\n"
        "platforms:\n  - {name: f, backend: fake, memory: 100MiB}\n"
    )
    assert [st["n"] for st in sink.steps] == [1, 2, 4, 8, 16]
    refused = sink.steps[-1]
    assert refused["status"] == "refused" and refused["limit"] == "memory_reserve"
    assert "N=16 needs" in refused["limit_detail"] and "measured" in refused["limit_detail"]
    # Not one instance of the refused step was created.
    assert backend.created == 1 + (1 + 2 + 4 + 8)  # the warm-up instance, then the steps
    assert {s["n"] for s in sink.samples} == {1, 2, 4, 8}
    assert density_results(sink.steps, sink.searches)["f"]["max_density"] == 8
    # The measured host view is what the guard used.
    assert sink.steps[0]["host_drop_per_instance_bytes"] == 100 * 2**20


def test_first_step_uses_configured_memory():
    sink, backend = run(
        HEAD + "counts: [1]\nmemory_reserve: 1GiB\n"
        "platforms:\n  - {name: f, backend: fake, memory: 1536MiB}\n"
    )
    (refused,) = sink.steps
    assert (
        refused["status"] == "refused"
        and "(1536 MiB each: configured memory)" in refused["limit_detail"]
    )
    assert backend.created == 0 and sink.samples == []


def test_timeout_ends_the_search():
    sink, _ = run(
        HEAD.replace("3s", "300ms") + "density: {factor: 2, max: 64, memory_reserve: 1MiB}\n"
        "platforms:\n  - {name: f, backend: fake, silent: [3]}\n",
        total=64 * 2**30,
    )
    assert [st["n"] for st in sink.steps] == [1, 2, 4]
    assert sink.steps[-1]["limit"] == "timeout"
    assert density_results(sink.steps, sink.searches)["f"]["max_density"] == 2


def test_platform_density_overrides_scenario_and_step_progression():
    sc = parse_scenario(
        "name: d\ndensity: {factor: 2, max: 512}\nplatforms:\n"
        "  - {name: c, backend: fake}\n"
        "  - {name: v, backend: fake, density: {step: 8, max: 32}}\n"
        "  - {name: w, backend: fake, counts: [3]}\n"
    )
    c, v, w = sc.platforms
    assert sc.counts_for(c) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert sc.counts_for(v) == [8, 16, 24, 32]
    assert sc.counts_for(w) == [3] and sc.search_for(w) is None


def test_non_density_runs_report_no_density():
    sink, _ = run(HEAD + "counts: [1, 2]\nplatforms:\n  - {name: f, backend: fake}\n")
    assert density_results(sink.steps, sink.searches) == {}


RAMP = (
    HEAD
    + "warmup: 0\nplatforms:\n  - {name: f, backend: fake, boot: 50ms, boot_per_instance: 10ms}\n"
)


def test_ramp_keeps_each_levels_instances_and_adds_to_them():
    sink, backend = run(
        RAMP.replace("platforms:", "density: {factor: 2, max: 8, mode: ramp}\nplatforms:"),
        total=64 * 2**30,
    )
    assert sink.searches["f"]["mode"] == "ramp"
    steps = sink.steps
    # N = instances running at the level; each level launched only what it added.
    assert [(st["n"], st["added"]) for st in steps] == [(1, 1), (2, 1), (4, 2), (8, 4)]
    assert [len([s for s in sink.samples if s["step"] == st["step"]]) for st in steps] == [
        1,
        1,
        2,
        4,
    ]
    assert backend.created == 8  # 1 + 1 + 2 + 4, not 1 + 2 + 4 + 8
    # The new instances boot under the load already there: the N=8 level's first new
    # instance starts with 4 running besides itself (the fake: 50 ms + 10 ms x 5).
    assert min(s["ready_s"] for s in sink.samples if s["n"] == 8) == pytest.approx(0.1)
    # Memory per instance from the whole level: 100 MiB per fake instance, over N.
    assert all(st["host_drop_per_instance_bytes"] == 100 * 2**20 for st in steps)
    assert all(st["host_drop_bytes"] == st["n"] * 100 * 2**20 for st in steps)
    assert all(st["launch_rate_per_s"] > 0 and st["all_ready_s"] > 0 for st in steps)
    # Torn down once, at the end, after the last level was recorded (a teardown that
    # hangs loses no level): the levels have no teardown time, the metadata has it.
    assert all(st["teardown_s"] is None for st in steps)
    (td,) = sink.metadata["ramp_teardowns"]
    assert td["platform"] == "f" and td["instances"] == 8 and td["destroy_failures"] == 0
    assert td["after_step"] == steps[-1]["step"] and td["teardown_s"] >= 0
    assert backend.live == {}
    assert density_results(steps, sink.searches)["f"]["max_density"] == 8


def test_ramp_stopped_by_a_limit_destroys_every_level():
    sink, backend = run(
        RAMP.replace(
            "platforms:",
            "density: {factor: 2, max: 64, mode: ramp, slo: {ready_p95: 100ms}}\nplatforms:",
        ),
        total=64 * 2**30,
    )
    # N=8's new ones boot in 100-130 ms (5-8 running): over the SLO, the ramp ends there.
    assert [st["n"] for st in sink.steps] == [1, 2, 4, 8]
    assert sink.steps[-1]["limit"] == "slo"
    assert sink.metadata["ramp_teardowns"][0]["instances"] == 8
    assert backend.live == {}
    assert density_results(sink.steps, sink.searches)["f"]["max_density"] == 4


def test_ramp_refused_by_the_guard_and_a_failed_ramp_leave_nothing(monkeypatch):
    # The guard counts only the instances a level adds (the others are in MemAvailable).
    sink, backend = run(
        RAMP.replace(
            "platforms:",
            "density: {factor: 2, max: 64, mode: ramp, memory_reserve: 1GiB}\nplatforms:",
        )
    )
    assert [(st["n"], st["status"]) for st in sink.steps][-2:] == [(8, "ran"), (16, "refused")]
    assert "N=8 needs" in sink.steps[-1]["limit_detail"]  # the 8 it would add
    assert backend.live == {}

    # A level that breaks (an engine error, a bug) takes the earlier levels down with it.
    class Boom(Exception):
        pass

    from bench.runner.measurer import Measurer

    after = Measurer.after

    def boom(self, backend, launches, before, n):
        if n == 4:
            raise Boom
        return after(self, backend, launches, before, n)

    monkeypatch.setattr(Measurer, "after", boom)
    _, _, backend = run_raising(
        RAMP.replace("platforms:", "density: {max: 8, mode: ramp}\nplatforms:"), Boom
    )
    assert backend.created == 4 and backend.live == {}


def test_an_interrupted_ramp_destroys_every_level(monkeypatch):
    """Ctrl-C while the N=4 level waits for its new instances (SIGINT raises in the main
    thread, in the wait): the N=1 and N=2 levels' instances go too."""
    from bench.runner.executor import StepExecutor

    original = StepExecutor.wait
    seen = []

    def wait(self, step, timeout, on_done):
        # The instances of earlier levels (this level's launches may still be in flight).
        mine = {x.inst.name for x in step.launches}
        seen.append(len([name for name in step.backend.live if name not in mine]))
        if len(seen) == 3:
            raise KeyboardInterrupt
        return original(self, step, timeout, on_done)

    monkeypatch.setattr(StepExecutor, "wait", wait)
    _, _, backend = run_raising(
        RAMP.replace("platforms:", "density: {max: 8, mode: ramp}\nplatforms:"), KeyboardInterrupt
    )
    assert seen == [0, 1, 2]  # N=1 and N=2 were up when it came
    assert backend.created == 4 and backend.live == {}


def test_restart_is_the_default_mode():
    sink, backend = run(RAMP.replace("platforms:", "density: {max: 4}\nplatforms:"))
    assert sink.searches["f"]["mode"] == "restart"
    assert [(st["n"], st["added"]) for st in sink.steps] == [(1, 1), (2, 2), (4, 4)]
    assert all(st["teardown_s"] is not None for st in sink.steps)
    assert backend.created == 7


def test_a_wedged_engine_costs_one_call_timeout_at_teardown_not_one_per_instance():
    """Every destroy call hangs 60 s, then fails (dockerd's libnetwork deadlock: its
    calls time out). The first 16 in flight fail after 60 s; the other 48 of the ramp's
    64 and the retry are not tried, and the run stops with one line saying what is left.
    Before, every instance cost a timeout twice: 64 / 16 x 60 s x 2 = 8 min here, and
    half an hour per try for the 2048 containers of scenarios/density.yaml."""
    from bench.model.errors import EngineUnavailable
    from bench.runner.executor import STALLED_DESTROY_S

    text = RAMP.replace("platforms:", "density: {max: 64, mode: ramp}\nplatforms:").replace(
        "boot_per_instance: 10ms}", "boot_per_instance: 10ms, hang_destroy: 60s}"
    )
    error, sink, backend = run_raising(text, EngineUnavailable, total=64 * 2**30)
    msg = str(error)
    assert "\n" not in msg
    assert "the fake engine of platform 'f' stopped destroying instances" in msg
    assert "failed after 60 s (fake engine: the destroy call timed out)" in msg
    assert "64 instance(s) of this run are left" in msg
    assert "bench clean --run run-d" in msg
    assert backend.destroy_calls == 16
    # Every level was recorded; the teardown too, with what would not go.
    assert [st["n"] for st in sink.steps] == [1, 2, 4, 8, 16, 32, 64]
    (td,) = sink.metadata["ramp_teardowns"]
    assert td["instances"] == 64 and td["destroy_failures"] == 64
    assert STALLED_DESTROY_S <= td["teardown_s"] < 2 * 60


def test_a_slow_destroy_that_succeeds_is_not_a_wedged_engine(monkeypatch):
    """Only a call that fails after STALLED_DESTROY_S marks the engine: a restart-mode
    search whose destroys fail at once goes on to its last N (the retry and `bench
    clean` are for those)."""
    from bench.backends.fake import FakeBackend

    original = FakeBackend.destroy
    failed: list[str] = []

    def destroy(self, inst):
        if inst.name.endswith("-0") and inst.name not in failed:  # fails at once, once
            failed.append(inst.name)
            raise RuntimeError("busy")
        original(self, inst)

    monkeypatch.setattr(FakeBackend, "destroy", destroy)
    sink, backend = run(RAMP.replace("platforms:", "density: {max: 4}\nplatforms:"))
    assert [st["n"] for st in sink.steps] == [1, 2, 4]
    assert len(failed) == 3 and backend.live == {}  # the retry destroyed them


def test_a_wedged_engine_stops_the_run_after_the_step_it_wedged_in():
    """Fixed counts: N=2's teardown wedges; the step is recorded, N=4 never starts."""
    from bench.model.errors import EngineUnavailable

    text = (
        HEAD + "warmup: 0\ncounts: [2, 4]\nplatforms:\n"
        "  - {name: f, backend: fake, hang_destroy: 45s}\n"
    )
    error, sink, backend = run_raising(text, EngineUnavailable, total=64 * 2**30)
    assert "failed after 45 s" in str(error) and "2 instance(s)" in str(error)
    (step,) = sink.steps
    assert step["n"] == 2 and step["destroy_failures"] == 2
    assert backend.destroy_calls == 2 and backend.created == 2


def test_records_reach_the_sink_as_records_with_the_limit_in_the_step_record():
    """The recorder hands the sink the typed records themselves (no dict in between),
    and a search's limit is in the step record the sink gets, not added after."""
    from bench.model.records import Sample, StepRecord, Warmup
    from bench.model.results import as_stored

    class RecordSink:
        def __init__(self):
            self.samples, self.steps, self.metadata = [], [], {}

        def add_samples(self, samples):
            self.samples += samples

        def add_step(self, step):
            self.steps.append(step)

        def update(self, **fields):
            self.metadata.update(fields)

    runner, _, _ = fake_runner(
        HEAD + "warmup: 1\ndensity: {factor: 2, max: 64, slo: {ready_p95: 600ms}}\n"
        "platforms:\n  - {name: f, backend: fake, boot: 50ms, boot_per_instance: 50ms}\n",
        "run-d",
        total=64 * 2**30,
    )
    sink = runner.sink = runner._recorder.sink = RecordSink()
    results = runner.run()
    assert sink.samples and all(type(s) is Sample for s in sink.samples)
    assert sink.steps and all(type(st) is StepRecord for st in sink.steps)
    assert [st.limit for st in sink.steps] == [None] * 4 + ["slo"]
    # What the runner returns is what the sink got: one record per step, no copy after.
    assert [r.record for r in results] == sink.steps
    assert [r.index for r in results] == [st.step for st in sink.steps]
    # The warm-up goes to the metadata as its typed part, stored as the same JSON.
    assert isinstance(sink.metadata["warmup"], Warmup)
    assert as_stored(sink.metadata["warmup"]) == {
        "instances": 1,
        "platforms": {"f": {"ready": 1, "ready_s": [pytest.approx(0.1)]}},  # 50 + 1 x 50 ms
    }
