"""The runner's logic against the fake backend, on a virtual clock: no engine,
nothing measured, and times are exact (a 120 s timeout takes no wall time)."""

import time
from pathlib import Path

import pytest

from tests.helpers import run_fake


def exactly(x):
    # Virtual times are sums of the scenario's durations: exact up to float rounding.
    return pytest.approx(x, abs=1e-9)


def run(yaml_text: str, **host_args):
    # A fake host: the real one's memory moves with whatever else the machine runs.
    return run_fake(yaml_text, **{"total": 64 * 2**30, **host_args})


def scenario(platform_extra: str = "", top: str = "") -> str:
    return (
        "name: t\ntimeout: 2s\nsettle: 0s\ncounts: [3]\nrepeat: 2\n"
        + top
        + "platforms:\n  - name: f\n    backend: fake\n"
        + platform_extra
    )


def test_every_instance_measured_and_destroyed():
    results, sink, backends = run(scenario("    boot: 20ms\n"))
    assert len(sink.samples) == 6 and len(sink.steps) == 2
    for s in sink.samples:
        assert s["ok"] and s["error"] is None
        assert s["queued_s"] == 0 and s["create_s"] == 0 and s["start_s"] == 0
        assert s["ready_s"] == exactly(0.02) and s["ready_at_s"] == exactly(0.02)
        assert s["guest_kernel"].startswith("fake-")
        # A container shares the host's kernel: its "uptime" is the host's, not stored
        # as the guest's own (the marker's raw fields keep it).
        assert s["guest_uptime_s"] is None and s["marker_fields"]["uptime"] == "0.5"
        assert s["host"] == "fakehost"
    assert {s["name"] for s in sink.samples} == {
        f"bench-run-test-f-s{step}-{i}" for step in range(2) for i in range(3)
    }
    assert backends["f"].live == {}
    for r in sink.steps:
        assert r["failures"] == 0 and r["host"] == "fakehost" and r["status"] == "ran"
        assert r["all_ready_s"] == exactly(0.02) and r["wait_s"] == exactly(0.02)
        assert r["launch_rate_per_s"] == pytest.approx(3 / 0.02)
        # The host view: 100 MiB per live instance on the fake host.
        assert r["host_drop_per_instance_bytes"] == 100 * 2**20
        assert r["destroy_failures"] == 0


def test_silent_instance_times_out_at_its_deadline_in_no_wall_time():
    t0 = time.monotonic()
    _, sink, backends = run(scenario("    silent: [1]\n").replace("timeout: 2s", "timeout: 120s"))
    assert time.monotonic() - t0 < 5  # 2 x 120 s of virtual time
    failed = [s for s in sink.samples if not s["ok"]]
    assert len(failed) == 2  # one per repeat
    assert all(s["error"] == "no BENCH_READY within 120s" for s in failed)
    assert all(s["failure"] == "timeout" and s["ready_s"] is None for s in failed)
    # The wait ends exactly at the silent instance's deadline.
    assert all(st["wait_s"] == exactly(120) for st in sink.steps)
    assert all(st["all_ready_s"] is None and st["failures"] == 1 for st in sink.steps)
    assert backends["f"].live == {}


def test_crash_is_reported_at_once_with_console_tail():
    _, sink, _ = run(scenario("    crash: [0]\n    boot: 30ms\n"))
    # A crashed instance ends its wait at once: the step waits only for the others'
    # boot (30 ms), never for the 2 s timeout.
    assert all(st["wait_s"] == exactly(0.03) for st in sink.steps)
    failed = [s for s in sink.samples if not s["ok"]]
    assert [s["index"] for s in failed] == [0, 0]
    assert all(s["error"] == "fake instance exited before BENCH_READY" for s in failed)
    assert all(s["failure"] == "exited" for s in failed)
    assert all(s["console_tail"] == "fake: exiting" for s in failed)


def test_launch_failure_is_a_failed_sample():
    _, sink, backends = run(scenario("    fail_launch: [2]\n"))
    failed = [s for s in sink.samples if not s["ok"]]
    assert [s["index"] for s in failed] == [2, 2]
    assert all(s["error"] == "launch failed: fake launch failure" for s in failed)
    assert all(s["failure"] == "launch" and s["create_s"] is None for s in failed)
    assert backends["f"].live == {}


def test_on_failure_stop_ends_the_run():
    results, sink, _ = run(scenario("    crash: [0]\n", top="on_failure: stop\n"))
    assert len(results) == 1 and len(sink.steps) == 1


def test_on_failure_continue_runs_every_step():
    results, sink, _ = run(scenario("    crash: [0]\n"))
    assert len(results) == 2 and len(sink.steps) == 2


def test_concurrency_bounds_launches_and_is_visible_as_queueing():
    text = (
        "name: t\ntimeout: 5s\nsettle: 0s\ncounts: [8]\nlaunch: {concurrency: 2}\n"
        "platforms:\n  - {name: f, backend: fake, boot: 10ms, create_delay: 50ms}\n"
    )
    _, sink, backends = run(text)
    assert all(s["ok"] for s in sink.samples)
    assert backends["f"].peak_in_flight == 2
    # 8 launches, 2 at a time, 50 ms each: launch calls start in rounds of two.
    queued = sorted(s["queued_s"] for s in sink.samples)
    assert queued == [exactly(x) for x in (0, 0, 0.05, 0.05, 0.1, 0.1, 0.15, 0.15)]
    # Each instance's times count from its own launch call, not from the step start.
    assert all(s["create_s"] == exactly(0.05) for s in sink.samples)
    assert all(s["ready_s"] == exactly(0.06) for s in sink.samples)
    (step,) = sink.steps
    assert step["all_ready_s"] == exactly(0.21)


def test_contention_model_runs_on_the_clock():
    # Each instance boots 10 ms + 10 ms per instance already running (created).
    text = (
        "name: t\ntimeout: 5s\nsettle: 0s\ncounts: [4]\nlaunch: {concurrency: 1}\n"
        "platforms:\n  - {name: f, backend: fake, boot: 10ms, boot_per_instance: 10ms}\n"
    )
    _, sink, _ = run(text)
    assert sorted(s["ready_s"] for s in sink.samples) == [
        exactly(x) for x in (0.02, 0.03, 0.04, 0.05)
    ]


def test_settle_is_virtual_time():
    t0 = time.monotonic()
    _, sink, _ = run(scenario("", top="").replace("settle: 0s", "settle: 60s"))
    assert time.monotonic() - t0 < 5
    assert all(st["settle_s"] == 60 for st in sink.steps)


def test_guard_reads_the_backends_host():
    # The host given to the backend decides: 2 GiB, 1.5 GiB reserve, 3 x 256 MiB.
    _, sink, backends = run(
        scenario("    memory: 256MiB\n", top="memory_reserve: 1536MiB\n"), total=2 * 2**30
    )
    (refused,) = sink.steps
    assert refused["status"] == "refused" and refused["host"] == "fakehost"
    assert refused["mem_available_before_bytes"] == 2 * 2**30
    # One warm-up instance fits above the reserve (256 MiB of 512); N=3 does not.
    assert backends["f"].created == 1 and sink.samples == []


def test_each_platform_is_measured_on_its_own_backends_host():
    from bench.backends.fake import FakeBackend
    from bench.machines.clock import FakeClock
    from bench.plan.scenario import LoadedScenario, parse_scenario
    from bench.runner import Runner
    from tests.helpers import FakeHost, MemorySink

    text = (
        "name: t\nsettle: 0s\ncounts: [2]\nplatforms:\n"
        "  - {name: a, backend: fake}\n  - {name: b, backend: fake}\n"
    )
    sc = parse_scenario(text)
    clock = FakeClock()
    backends = {}
    hosts = {
        "a": FakeHost(lambda: backends["a"].live, total=8 * 2**30, key="lab1"),
        "b": FakeHost(lambda: backends["b"].live, total=4 * 2**30, key="lab2", per_instance=0),
    }
    for p in sc.platforms:
        backends[p.name] = FakeBackend(p, host=hosts[p.name], clock=clock)
    sink = MemorySink(sc)
    Runner(LoadedScenario(sc, None, text), "r", backends, sink, clock=clock).run()
    by = {st["platform"]: st for st in sink.steps}
    assert by["a"]["host"] == "lab1" and by["b"]["host"] == "lab2"
    assert by["a"]["mem_available_before_bytes"] == 8 * 2**30
    assert by["b"]["mem_available_before_bytes"] == 4 * 2**30
    assert by["a"]["host_drop_bytes"] == 2 * 100 * 2**20 and by["b"]["host_drop_bytes"] == 0
    assert {(s["platform"], s["host"]) for s in sink.samples} == {("a", "lab1"), ("b", "lab2")}


def test_backend_facts_never_overwrite_what_the_runner_measured(monkeypatch):
    from bench.backends.fake import FakeBackend
    from bench.model.records import Sample, fields_of

    def sample(self, inst, host):
        # A backend reporting keys that collide with core fields, and one of its own.
        return {"ok": False, "ready_s": 99.0, "engine_mem_bytes": 7, "balloon_x_bytes": 1}

    monkeypatch.setattr(FakeBackend, "sample", sample)
    _, sink, _ = run(scenario("    boot: 20ms\n"))
    for s in sink.samples:
        assert s["ok"] is True and s["ready_s"] == exactly(0.02)
        assert s["engine_mem_bytes"] == 7  # a field backends may fill
        extras = {k: v for k, v in s["extras"].items() if k != "boundary"}  # built in
        assert extras == {"ok": False, "ready_s": 99.0, "balloon_x_bytes": 1}
        # Every key the runner wrote is one bench.model.records declares.
        assert set(s) == set(fields_of(Sample))


def test_warm_up_runs_first_is_never_counted_and_is_kept_in_the_metadata():
    text = scenario("    boot: 20ms\n", top="warmup: 2\n")
    _, sink, backends = run(text)
    assert backends["f"].created == 2 + 6  # the warm-up instances, then 2 steps of 3
    assert len(sink.samples) == 6 and not any("-w-" in s["name"] for s in sink.samples)
    assert sink.metadata["warmup"] == {
        "instances": 2,
        "platforms": {"f": {"ready": 2, "ready_s": [exactly(0.02), exactly(0.02)]}},
    }
    assert backends["f"].live == {}
    _, sink, backends = run(text.replace("warmup: 2", "warmup: 0"))
    assert backends["f"].created == 6 and "warmup" not in sink.metadata


def test_ab_runs_counterbalanced_pairs_with_every_n_spread_through_the_run():
    text = (
        "name: t\ntimeout: 2s\nsettle: 0s\ncounts: [1, 4]\nrepeat: 3\n"
        "platforms:\n"
        "  - {name: a, backend: fake, boot: 20ms}\n"
        "  - {name: b, backend: fake, boot: 30ms}\n"
        "  - {name: other, backend: fake}\n"
    )
    _, sink, backends = run(text, ab=("a", "b"))
    order = [(st["platform"], st["n"]) for st in sink.steps]
    # Per N: AB, BA, BA (then AB); neighbouring N alternate within a repeat.
    assert order == [
        ("a", 1), ("b", 1), ("b", 4), ("a", 4),
        ("b", 1), ("a", 1), ("a", 4), ("b", 4),
        ("b", 1), ("a", 1), ("a", 4), ("b", 4),
    ]  # fmt: skip
    ab = sink.metadata["ab"]
    assert (ab["baseline"], ab["candidate"]) == ("a", "b")
    steps = {st["step"]: st for st in sink.steps}
    assert len(ab["pairs"]) == 6
    for a_step, b_step in ab["pairs"]:
        assert steps[a_step]["platform"] == "a" and steps[b_step]["platform"] == "b"
        assert steps[a_step]["n"] == steps[b_step]["n"]
    assert backends["other"].created == 0  # only the two platforms run
    assert set(sink.metadata["warmup"]["platforms"]) == {"a", "b"}


def test_ab_pairs_are_what_the_analysis_reads():
    from bench.judge.ab import analyse_ab
    from bench.model.errors import ExitCode
    from bench.model.results import Run

    text = (
        "name: t\ntimeout: 2s\nsettle: 0s\ncounts: [1, 4]\nrepeat: 10\n"
        "platforms:\n"
        "  - {name: a, backend: fake, boot: 20ms, boot_per_instance: 1ms}\n"
        "  - {name: b, backend: fake, boot: 30ms, boot_per_instance: 1ms}\n"
    )
    _, sink, _ = run(text, ab=("a", "b"))
    stored = Run(Path("t"), {"run_id": "t", **sink.metadata}, sink.samples, sink.steps)
    result = analyse_ab(stored)
    assert len(result.pairs) == 20
    # The candidate boots 10 ms slower on the same virtual clock: a clear regression.
    assert result.exit_code == ExitCode.REGRESSION and result.test.change > 0.2


def _record_teardown(monkeypatch, halt_first: bool, halt_fails: bool = False) -> list:
    """The fake backend's halt and destroy calls, in order, as (call, instance name)."""
    from bench.backends.fake import FakeBackend

    calls: list[tuple[str, str]] = []
    destroy = FakeBackend.destroy

    def halt(self, inst):
        calls.append(("halt", inst.name))
        if halt_fails:
            raise RuntimeError("fake engine: kill refused")

    def recorded_destroy(self, inst):
        calls.append(("destroy", inst.name))
        destroy(self, inst)

    monkeypatch.setattr(FakeBackend, "halt_first", halt_first)
    monkeypatch.setattr(FakeBackend, "halt", halt)
    monkeypatch.setattr(FakeBackend, "destroy", recorded_destroy)
    return calls


def test_a_halt_first_backend_has_every_instance_halted_before_any_is_destroyed(monkeypatch):
    calls = _record_teardown(monkeypatch, halt_first=True)
    _, sink, backends = run(scenario("    boot: 20ms\n", top="warmup: 0\n"))
    assert backends["f"].live == {}
    names = [s["name"] for s in sink.samples]
    for step in range(2):
        mine = [(c, n) for c, n in calls if f"-s{step}-" in n]
        # One pass of halts over the whole step, then one of destroys.
        assert [c for c, _ in mine] == ["halt"] * 3 + ["destroy"] * 3, mine
        assert sorted(n for c, n in mine if c == "halt") == sorted(
            n for n in names if f"-s{step}-" in n
        )
    assert all(r["destroy_failures"] == 0 for r in sink.steps)


def test_a_failed_halt_is_left_to_destroy(monkeypatch):
    calls = _record_teardown(monkeypatch, halt_first=True, halt_fails=True)
    _, sink, backends = run(scenario("    boot: 20ms\n", top="warmup: 0\n"))
    assert backends["f"].live == {}
    assert [c for c, _ in calls].count("destroy") == 6
    assert all(r["destroy_failures"] == 0 for r in sink.steps)
    assert all(s["destroy_error"] is None for s in sink.samples)


def test_a_backend_that_does_not_ask_is_never_halted(monkeypatch):
    calls = _record_teardown(monkeypatch, halt_first=False)
    _, _, backends = run(scenario("    boot: 20ms\n", top="warmup: 0\n"))
    assert backends["f"].live == {}
    assert [c for c, _ in calls] == ["destroy"] * 6
