"""Density search and the memory guard, on the fake backend and a fake host."""

import pytest

from bench.scenario import parse_scenario
from bench.summary import density_results
from tests.helpers import run_fake


def run(text: str, **host_args):
    _, sink, backends = run_fake(text, "run-d", **host_args)
    (backend,) = backends.values()
    return sink, backend


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
