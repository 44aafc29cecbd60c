"""The runner's logic against the fake backend (no engine, nothing measured)."""

import time

from bench.backends import make_backend
from bench.runner import Runner
from bench.scenario import LoadedScenario, parse_scenario
from tests.helpers import FakeHost, MemorySink


def run(yaml_text: str):
    sc = parse_scenario(yaml_text)
    loaded = LoadedScenario(sc, path=None, text=yaml_text)
    backends = {p.name: make_backend(p) for p in sc.platforms}
    (backend,) = backends.values()
    sink = MemorySink(sc)
    # A fake host too: the real one's memory moves with whatever else the machine runs.
    host = FakeHost(lambda: backend.live, total=64 * 2**30)
    results = Runner(loaded, "run-test", backends, sink, host=host).run()
    return results, sink, backends


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
        assert 0 <= s["create_s"] <= s["start_s"] <= s["ready_s"]
        assert s["ready_s"] >= 0.02
        assert s["guest_kernel"].startswith("fake-") and s["guest_uptime_s"] == 0.5
    assert {s["name"] for s in sink.samples} == {
        f"bench-run-test-f-s{step}-{i}" for step in range(2) for i in range(3)
    }
    assert backends["f"].live == {}
    assert all(r["failures"] == 0 and r["all_ready_s"] > 0 for r in sink.steps)


def test_silent_instance_times_out_and_run_goes_on():
    t0 = time.monotonic()
    _, sink, backends = run(scenario("    silent: [1]\n"))
    assert time.monotonic() - t0 < 10
    failed = [s for s in sink.samples if not s["ok"]]
    assert len(failed) == 2  # one per repeat
    assert all(s["error"] == "no BENCH_READY within 2s" for s in failed)
    assert all(s["ready_s"] is None for s in failed)
    assert backends["f"].live == {}


def test_crash_is_reported_at_once_with_console_tail():
    _, sink, _ = run(scenario("    crash: [0]\n"))
    # A crashed instance ends the wait immediately; it does not sit out the 2 s timeout.
    assert all(st["wait_s"] < 1.0 for st in sink.steps)
    failed = [s for s in sink.samples if not s["ok"]]
    assert failed and all(s["error"] == "fake instance exited before BENCH_READY" for s in failed)
    assert all(s["console_tail"] == "fake: exiting" for s in failed)


def test_launch_failure_is_a_failed_sample():
    _, sink, backends = run(scenario("    fail_launch: [2]\n"))
    failed = [s for s in sink.samples if not s["ok"]]
    assert [s["index"] for s in failed] == [2, 2]
    assert all(s["error"] == "launch failed: fake launch failure" for s in failed)
    assert backends["f"].live == {}


def test_on_failure_stop_ends_the_run():
    results, sink, _ = run(scenario("    crash: [0]\n", top="on_failure: stop\n"))
    assert len(results) == 1 and len(sink.steps) == 1


def test_concurrency_bounds_launches_and_is_visible_as_queueing():
    text = (
        "name: t\ntimeout: 5s\nsettle: 0s\ncounts: [8]\nlaunch: {concurrency: 2}\n"
        "platforms:\n  - {name: f, backend: fake, boot: 10ms, create_delay: 50ms}\n"
    )
    _, sink, backends = run(text)
    assert all(s["ok"] for s in sink.samples)
    assert backends["f"].peak_in_flight == 2
    queued = sorted(s["queued_s"] for s in sink.samples)
    assert queued[0] < queued[-1] / 2
    # 8 launches, 2 at a time, 50 ms each: the last two wait for three rounds.
    assert queued[-1] >= 0.15
    # ready_s counts from each instance's own launch call, not from the step start.
    assert all(s["ready_s"] < 0.5 for s in sink.samples)
