"""The judgements the benchmarks print (issue 14): a missed target must read as missed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import density  # noqa: E402  (benchmarks/ is not a package)
import engine_memory  # noqa: E402
import overhead  # noqa: E402

from bench.plan.scenario import parse_scenario  # noqa: E402


def _ramp(levels: list[int], destroy_failures: int, status: str = "complete"):
    steps, samples, prev = [], [], 0
    for i, n in enumerate(levels):
        steps.append({"step": i, "platform": "container", "n": n, "status": "ran"})
        samples += [
            {"step": i, "platform": "container", "ok": True, "ready_s": 1.0 + j / n}
            for j in range(n - prev)
        ]
        prev = n
    meta = {
        "status": status,
        "ramp_teardowns": [
            {
                "platform": "container",
                "instances": levels[-1],
                "teardown_s": 200.0,
                "destroy_failures": destroy_failures,
            },
        ],
    }
    return steps, samples, meta


def _met(checks) -> dict[str, bool]:
    return {name: ok for name, _, _, ok in checks}


def test_a_complete_ramp_within_the_time_meets_every_target():
    steps, samples, meta = _ramp([512, 1024, 2048], 0)
    checks, ran = density.search_checks(steps, samples, meta, 590.0, "ramp")
    assert all(_met(checks).values()), checks
    assert len(ran) == 3


def test_a_teardown_stopped_by_a_wedged_engine_misses_even_within_the_time():
    # The run of 2026-11-30 12:17: every level to 2048, then dockerd deadlocked with 1434
    # left; its 9.9 min must not read as a met target.
    steps, samples, meta = _ramp([512, 1024, 2048], 1434, status="failed")
    checks, _ = density.search_checks(steps, samples, meta, 594.0, "ramp")
    met = _met(checks)
    assert met["container N reached"] and met["every container ready"]
    assert not met["every container destroyed at the end"]
    wall = next(c for c in checks if c[0].startswith("container search wall time"))
    assert not wall[3] and "teardown not finished" in wall[1]
    destroyed = next(c for c in checks if c[0] == "every container destroyed at the end")
    assert "1434 left" in destroyed[1]


def test_too_slow_or_short_of_2048_misses():
    steps, samples, meta = _ramp([512, 1024, 2048], 0)
    assert not _met(density.search_checks(steps, samples, meta, 640.0, "ramp")[0])[
        "container search wall time (run start to its last teardown)"
    ]
    steps, samples, meta = _ramp([512, 1024], 0)
    assert not _met(density.search_checks(steps, samples, meta, 300.0, "ramp")[0])[
        "container N reached"
    ]


def test_restart_mode_counts_each_steps_leftovers():
    steps, samples, _ = _ramp([1024, 2048], 0)
    meta = {"status": "complete"}
    assert _met(density.search_checks(steps, samples, meta, 500.0, "restart")[0])[
        "every container destroyed at the end"
    ]
    steps[0]["destroy_failures"] = 3
    assert not _met(density.search_checks(steps, samples, meta, 500.0, "restart")[0])[
        "every container destroyed at the end"
    ]


@pytest.mark.parametrize(("warmup", "expected"), [(None, 1), (0, 0), (2, 2)])
def test_the_overhead_scenario_sets_the_warm_up_it_is_asked_for(warmup, expected):
    sc = parse_scenario(overhead.containers_scenario(32, warmup=warmup))
    assert sc.warmup == expected
    assert sc.settle == 0.0 and sc.counts == [32] and sc.launch.concurrency == 8


class _Api:
    def __init__(self, error: Exception | None):
        self.error, self.calls = error, 0

    def remove_container(self, cid, force):
        self.calls += 1
        if self.error is not None:
            raise self.error


def test_the_bare_loops_removal_stops_at_a_wedged_dockerd(monkeypatch):
    # bench's rule, in the loop that must not import bench: a removal that fails after
    # STALLED_S means the engine hangs; the rest are not tried and the measuring stops.
    monkeypatch.setattr(overhead, "STALLED_S", 0.0)
    api = _Api(TimeoutError("Read timed out"))
    with pytest.raises(overhead.EngineWedged, match="moby/moby#42545") as e:
        overhead.remove_all(api, [f"c{i}" for i in range(64)], workers=1)
    assert e.value.left == 64 and api.calls == 1


def test_the_bare_loops_removal_counts_what_would_not_go(monkeypatch):
    import docker.errors

    monkeypatch.setattr(overhead, "STALLED_S", 3600.0)  # quick failures: not a wedge
    assert overhead.remove_all(_Api(RuntimeError("409 conflict")), ["a", "b", "c"]) == 3
    assert overhead.remove_all(_Api(docker.errors.NotFound("gone")), ["a", "b"]) == 0
    assert overhead.remove_all(_Api(None), ["a"]) == 0


# perf's own output (perf 6.1, `perf report --stdio -g none`), cut from a real profile.
PERF_BY_COMM = """\
# Samples: 24K of event 'cpu-clock:ppp'
#
# Overhead  Command
# ........  ...............
#
    23.14%  runc
    21.29%  containerd-shim
    20.96%  exe
    18.96%  runc:[2:INIT]
     6.18%  dockerd
     2.48%  kdamond.0
     1.68%  runc:[1:CHILD]
     1.07%  python
"""
PERF_BY_SYM = """\
# Children      Self  Symbol
    24.54%     0.09%  [k] seq_read_iter
    22.96%     1.78%  [k] show_mountinfo
    20.60%     0.00%  [.] 0x000000000046c541
"""


def test_engine_cost_groups_perf_by_what_each_process_is_in_the_engine():
    import engine_cost

    split = engine_cost.split_by_process(PERF_BY_COMM)
    assert split["runc init (in the container)"] == pytest.approx(18.96 + 1.68)
    assert split["dockerd's libnetwork-setkey hook (per start)"] == pytest.approx(20.96)
    assert split["other (kernel threads, the rest)"] == pytest.approx(2.48)
    assert sum(split.values()) == pytest.approx(95.76)  # header lines are not counted
    assert engine_cost.mountinfo_share(PERF_BY_SYM) == pytest.approx(22.96)
    assert engine_cost.mountinfo_share(PERF_BY_COMM) == 0.0


def test_overhead_exit_says_missed_stopped_or_met():
    met = ("N=32 whole process", "4.6 s / 4.3 s", "1.09", "<= 1.10", True)
    info = ("N=64 end to end", "8.7 s / 7.7 s", "for information", "", None)
    stopped = (overhead.STOPPED, "dockerd deadlocked removing 256 containers", "", "", None)
    missed = ("N=64 median ready_s", "776 ms / 705 ms", "1.06", "<= 1.05", False)
    assert overhead.exit_code([met, info]) == 0
    assert overhead.exit_code([met, stopped]) == overhead.WEDGED_EXIT == 3
    assert overhead.exit_code([met, missed, stopped]) == 1


def test_the_vmm_overhead_against_firecracker_reads_met_or_not_met():
    mib = 2**20
    verdict = engine_memory.firecracker_verdict(
        {
            "runc": {"kind": "container", "vmm": None},
            "fc": {"kind": "microvm", "vmm": 4.9 * mib},
            "microvm": {"kind": "microvm", "vmm": 88.9 * mib},
            "vm": {"kind": "vm", "vmm": None},
        }
    )
    assert verdict == "fc 4.9 MiB (met); microvm 88.9 MiB (NOT met); vm: not measured"
    assert engine_memory.firecracker_verdict({}) == "no VM platform in the run"


def test_the_latency_and_volume_verdicts_need_the_whole_interval_on_one_side():
    import latency  # noqa: E402  (benchmarks/ is not a package)

    assert latency.verdict("x", (1.3, 1.1, 1.6), "above") == "met: x"
    assert latency.verdict("x", (1.3, 0.9, 1.6), "above") == "not decided: x straddles 1"
    assert latency.verdict("x", (0.8, 0.7, 0.9), "above") == "missed: x"
    assert latency.verdict("x", (0.8, 0.7, 0.9), "below") == "met: x"
    assert latency.verdict("x", (1.02, 0.95, 1.08), "same") == "met: x"
    assert latency.verdict("x", (1.2, 1.05, 1.4), "same").startswith("not decided")
    assert latency.verdict("x", (1.3, 1.15, 1.4), "same") == "missed: x"
    assert latency.verdict("x", (1.3, None, None), "above") == "not decided: x, too few repeats"
    assert latency.verdict("not measured", (None, None, None), "above") == "not measured"


def test_an_undecided_few_percent_check_says_how_many_repeats_would_decide_it():
    import dataclasses

    import workloads  # noqa: E402  (benchmarks/ is not a package)

    from bench.report.workloads import WorkloadRow

    native = WorkloadRow(
        "native", "native", "cpu", "cpu.bogo_ops_per_s", "ops/s", "lower", 3,
        1222.0, 1096.0, 1497.0, 0.13, False, None, None, None, None, 100.0,
    )  # fmt: skip
    runc = dataclasses.replace(
        native, platform="runc", kind="docker", cv=0.20, ratio=1.05, ratio_low=0.62,
        ratio_high=1.39,
    )  # fmt: skip
    # sqrt(0.2^2 + 0.13^2) = 0.239; (1.96 * 0.239 / 0.05)^2 = 87.6; x pi/2 = 137.6
    assert workloads.repeats_to_resolve(runc, native) == 138
    text = workloads.within_few_percent(runc, native)
    assert text.startswith("not decided: ratio 1.05 (0.62-1.39) straddles 0.95-1.05")
    assert "(20% and native's 13%) about 138 repeats per platform" in text
    # Tighter spreads need fewer: 5% and 5% -> 7.1%; (1.96 * 0.0707 / 0.05)^2 x pi/2 = 12.1
    tight = dataclasses.replace(runc, cv=0.05, ratio_low=0.99, ratio_high=1.11)
    assert workloads.repeats_to_resolve(tight, dataclasses.replace(native, cv=0.05)) == 13
    assert workloads.within_few_percent(
        dataclasses.replace(runc, ratio_low=0.97, ratio_high=1.04)
    ) == ("met: ratio 1.05 (0.97-1.04)")
    assert workloads.repeats_to_resolve(runc, None) is None


def test_the_isolation_reading_is_made_of_the_runs_own_figures():
    import neighbours  # noqa: E402  (benchmarks/ is not a package)

    from bench.report.neighbours import NeighbourRow, NeighboursSection

    def row(platform, kind, aggressor, median, low, high, emulated=False):
        return NeighbourRow(
            platform, kind, "cpu", "cpu.bogo_ops_per_s", aggressor, 1, 3, median, low, high,
            emulated,
        )  # fmt: skip

    rows = [
        row("runc", "container", "cpu", 0.91, 0.62, 1.65),
        row("runsc", "sandbox", "fork", 4.4, 1.66, 5.99),
        row("microvm", "microvm", "io", 1.45, 0.81, 1.53, emulated=True),
    ]
    section = NeighboursSection("r", rows, [])
    text = " ".join(neighbours.reading(section, 2.3, 2))
    assert "at or above 1.25x, whatever the host's noise: runsc fork 4.40x." in text
    assert "Medians below 1 (1 of 3 rows: runc cpu 0.91x)" in text
    assert "1-min load 2.3 on 2 cores" in text and "every VM figure is emulated" in text
    net = NeighboursSection("r", [row("runc", "container", "net", 1.5, 1.3, 2)], [])
    verdict = neighbours.judge(net, "net", "poorly")
    assert verdict == "met (every repeat >= 1.25x): runc 1.50x (1.30-2.00)"
    quiet = " ".join(neighbours.reading(NeighboursSection("r", rows[1:2], []), 0.1, 2))
    assert "Medians below 1" not in quiet and "emulated" not in quiet


def test_the_workloads_reading_is_made_of_the_runs_own_figures():
    import dataclasses

    import workloads  # noqa: E402  (benchmarks/ is not a package)

    from bench.report.workloads import WorkloadRow, WorkloadsSection

    base = WorkloadRow(
        "native", "native", "syscall", "get.bogo_ops_per_s", "ops/s", "lower", 3,
        10000.0, 9000.0, 11000.0, 0.1, False, None, None, None, None, 100.0,
    )  # fmt: skip
    rows = [
        base,
        dataclasses.replace(base, platform="runc", kind="docker", median=6000.0),
        dataclasses.replace(base, platform="runsc", kind="docker", median=200.0),
        dataclasses.replace(
            base,
            platform="runsc",
            kind="docker",
            workload="randread-volume",
            figure="read_iops",
            ratio=1.4,
            cpu_share_pct=129.0,
        ),  # fmt: skip
    ]
    text = " ".join(workloads.reading(WorkloadsSection("r", "native", rows, [])))
    assert "gVisor's system calls ran at 0.03 of runc's (agrees with gVisor's guide" in text
    assert "O_DIRECT I/O comes out *above* native (randread-volume 1.40x)" in text
    assert "runsc's `cpu share` is gVisor's own accounting" in text
    assert "context switches" not in text  # not in the run: nothing said about it
    assert workloads.reading(WorkloadsSection("r", "native", rows[:2], [])) == []
