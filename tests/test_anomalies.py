"""Phase anomaly notes (bench.judge.anomalies): one slow create on the fake backend, the
engine-bound VM boot seen on a freshly installed libvirtd, healthy runs left alone,
and the notes where users read them (`bench run`, `bench report`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import bench.backends
from bench import cli
from bench.backends.fake import FakeBackend, FakeEngine
from bench.judge.anomalies import anomaly_notes, find_anomalies, phases
from bench.model.results import load_run
from bench.report import build_report
from tests.conftest import REPO
from tests.helpers import run_fake
from tests.test_report import write_run


def fake_scenario(platform: str, counts="[4]", repeat=1) -> str:
    return (
        f"name: t\ntimeout: 120s\nsettle: 0s\ncounts: {counts}\nrepeat: {repeat}\n"
        f"platforms:\n  - {platform}\n"
    )


def vm_sample(index, create_s, ready_s, uptime_s, n=6, **extra):
    """A stored VM sample shaped like the libvirt backend's."""
    return {
        "platform": "vm",
        "backend": "libvirt",
        "kind": "vm",
        "n": n,
        "index": index,
        "ok": True,
        "create_s": create_s,
        "start_s": create_s + 0.002,
        "ready_s": ready_s,
        "guest_uptime_s": uptime_s,
        **extra,
    }


# The first run on a freshly installed libvirtd (issue 10): every VM's create call took
# about 43 s, its guest booted in 2.5 s by its own clock, ready at about 49 s.
FRESH_LIBVIRTD = [vm_sample(i, 43.1 + 0.1 * i, 49.0 + 0.2 * i, 2.5) for i in range(6)]
# The same VM later: create 0.3 s, ready 5.5-9.5 s, uptime about 2.5 s.
HEALTHY_VM = [vm_sample(i, 0.3, 5.5 + 0.8 * i, 2.4 + 0.05 * i) for i in range(6)]
# Containers: create ~15 ms, ready 0.15-0.4 s; their "uptime" is the host's (180 s).
HEALTHY_CONTAINERS = [
    {
        "platform": "container",
        "backend": "docker",
        "kind": "container",
        "n": n,
        "ok": True,
        "create_s": c,
        "start_s": c + 0.13 + 0.02 * (i % 5),
        "ready_s": c + 0.13 + 0.02 * (i % 5) + 0.01 * (i % 3),
        "guest_uptime_s": 180.0 + i,
    }
    for i, (n, c) in enumerate(
        [(1, 0.009), (1, 0.066)] + [(16, 0.012 + 0.002 * (i % 9)) for i in range(16)]
    )
]


def test_one_slow_create_in_a_step_is_flagged_naming_create_s_and_the_platform():
    _, sink, _ = run_fake(
        fake_scenario(
            "{name: quick, backend: fake, boot: 10ms, slow_create: [2], slow_create_delay: 2s}"
        )
    )
    creates = {s["index"]: s["create_s"] for s in sink.samples}
    assert creates[2] == pytest.approx(2.0) and creates[0] == pytest.approx(0.0)
    (note,) = anomaly_notes(sink.samples)
    assert note.startswith("quick: create_s was more than 5x its median in 1 of 4 instances")
    assert "at N=4 (2 s against a median of 0 s)" in note
    assert "re-run" in note


def test_a_normal_fake_run_is_not_flagged():
    # Contention makes the large step's boots 5x slower than the small one's: not an anomaly.
    _, sink, _ = run_fake(
        fake_scenario(
            "{name: quick, backend: fake, boot: 100ms, boot_per_instance: 200ms, "
            "create_delay: 15ms}",
            counts="[1, 4, 8]",
            repeat=2,
        )
    )
    assert max(s["ready_s"] for s in sink.samples) > 5 * min(s["ready_s"] for s in sink.samples)
    assert anomaly_notes(sink.samples) == []


def test_a_fake_vm_whose_engine_is_slow_is_flagged_and_a_healthy_one_is_not():
    slow = "{name: vm, backend: fake, kind: vm, create_delay: 43s, boot: 6s, uptime: 2.5s}"
    _, sink, _ = run_fake(fake_scenario(slow, counts="[1, 2]"))
    assert {s["kind"] for s in sink.samples} == {"vm"}
    assert {s["guest_uptime_s"] for s in sink.samples} == {2.5}
    (note,) = anomaly_notes(sink.samples)
    assert note.startswith("vm: time the guest cannot explain (ready_s - guest_uptime_s)")
    assert "dominated 3 of 3 instances at N=1, 2" in note
    assert "most of it (median 43 s) in create_s" in note

    healthy = "{name: vm, backend: fake, kind: vm, create_delay: 300ms, boot: 6s, uptime: 2.5s}"
    _, sink, _ = run_fake(fake_scenario(healthy, counts="[1, 2]"))
    assert anomaly_notes(sink.samples) == []


def test_the_fresh_libvirtd_case_is_caught_by_rule_2_only():
    (a,) = find_anomalies(FRESH_LIBVIRTD)
    # Rule 1 is blind here: every create is slow, so the median is too.
    assert a.rule == "unexplained" and a.phase == "create"
    assert (a.flagged, a.instances, a.ns) == (6, 6, (6,))
    assert a.message() == (
        "vm: time the guest cannot explain (ready_s - guest_uptime_s) dominated 6 of 6 "
        "instances at N=6 (median 47 s; the guest itself booted in 2.5 s), most of it "
        "(median 43.4 s) in create_s: the engine, not the guest, was slow (a freshly started "
        "libvirtd is known to do this); re-run, and look at the engine's logs"
    )


def test_healthy_vms_and_containers_are_not_flagged():
    assert find_anomalies(HEALTHY_VM) == []
    assert find_anomalies(HEALTHY_CONTAINERS) == []
    assert find_anomalies(HEALTHY_VM + HEALTHY_CONTAINERS) == []


def test_a_containers_uptime_is_the_hosts_and_never_explains_anything():
    (c,) = HEALTHY_CONTAINERS[:1]
    assert "host" not in phases(c)
    assert set(phases(HEALTHY_VM[0])) == {"create", "start", "boot", "host"}


def test_one_slow_vm_among_healthy_ones_is_flagged_with_its_phase():
    # A create 3 s slower than the others: rule 1 (rule 2's floor is not reached).
    samples = [*HEALTHY_VM[:5], vm_sample(5, 3.3, 8.5, 2.5)]
    (note,) = anomaly_notes(samples)
    assert note.startswith("vm: create_s was more than 5x its median in 1 of 6 instances")
    assert "(3.3 s against a median of 300 ms)" in note
    # Its guest booted in 2.5 s and it was ready after 49 s, its create fast: rule 2,
    # naming the rest of the boot, and rule 1 does not report it twice.
    samples = [*HEALTHY_VM[:5], vm_sample(5, 0.3, 9.0 + 40, 2.5)]
    (note,) = anomaly_notes(samples)
    assert "dominated 1 of 6 instances" in note
    assert (
        "in the rest of the boot before the guest's clock starts (QEMU start, firmware, "
        "kernel decompression" in note
    )
    assert "the host side, not the guest, was slow" in note


def test_jitter_below_the_floor_is_not_flagged():
    # 1 ms against 6 ms: 6x, but scheduling noise.
    samples = [
        {"platform": "c", "kind": "container", "n": 4, "create_s": x, "ok": True}
        for x in (0.001, 0.001, 0.001, 0.006)
    ]
    assert find_anomalies(samples) == []
    samples[3]["create_s"] = 0.6
    (a,) = find_anomalies(samples)
    assert (a.rule, a.phase, a.flagged) == ("outlier", "create", 1)


def test_the_stored_schema1_quickstart_run():
    # A real run (TCG, a development machine): every VM's create took 44-88 s while its
    # guest booted in 1.5-2 s; the containers were healthy.
    run = load_run(REPO / "tests" / "data" / "schema1-quickstart")
    (note,) = anomaly_notes(run.samples)
    assert note.startswith(
        "vm: time the guest cannot explain (ready_s - guest_uptime_s) dominated 6 of 6 "
        "instances at N=1, 2"
    )
    assert "in create_s: the engine, not the guest, was slow" in note


def test_bench_run_prints_the_note(tmp_path: Path, monkeypatch):
    # The fake through the CLI runs on the real clock: keep the slow create short.
    monkeypatch.setattr(bench.backends, "BACKENDS", {"fake": "bench.backends.fake:FakeBackend"})
    monkeypatch.setattr(FakeBackend, "engine", FakeEngine())
    cli._backend_params.cache_clear()  # the CLI's options come from the registry
    monkeypatch.setattr(cli, "_backend_params", cli._backend_params.__wrapped__)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        fake_scenario(
            "{name: quick, backend: fake, boot: 10ms, slow_create: [1], slow_create_delay: 600ms}"
        ).replace("timeout: 120s", "timeout: 10s")
    )
    p = CliRunner().invoke(cli.app, ["run", str(scenario), "--out", str(tmp_path / "results")])
    assert p.exit_code == 0, p.output
    output = " ".join(p.output.split())
    assert "note: quick: create_s was more than 5x its median in 1 of 4 instances" in output


def test_bench_report_of_a_run_with_the_anomaly_writes_the_note(tmp_path: Path):
    run = write_run(tmp_path / "results", "fresh-20261129-000000-aaaa", FRESH_LIBVIRTD, [])
    out = tmp_path / "report"
    p = CliRunner().invoke(cli.app, ["report", str(run), "--out", str(out)])
    assert p.exit_code == 0, p.output
    assert "note: vm: time the guest cannot explain" in " ".join(p.output.split())
    md = (out / "summary.md").read_text()
    assert "> **Anomaly:** vm: time the guest cannot explain" in md
    html = (out / "report.html").read_text()
    assert '<div class="anomaly"><b>Phase anomalies</b>' in html
    assert "most of it (median 43.4 s) in create_s" in html


def test_a_report_without_anomalies_has_no_box(tmp_path: Path):
    run = write_run(tmp_path / "results", "ok-20261129-000000-aaaa", HEALTHY_VM, [])
    report = build_report([run], tmp_path / "report")
    assert not any("guest cannot explain" in n for n in report.notes)
    assert "Phase anomalies" not in (tmp_path / "report" / "report.html").read_text()
    assert "Anomaly" not in (tmp_path / "report" / "summary.md").read_text()
