"""Noisy neighbours (issue 23 §2): the scenario key, the measurement through the
runner's seam on the fake backend (whose aggressors slow its victim by a set factor per
stressor, deterministically), the slowdown arithmetic, and the isolation table in the
report. No engine."""

from __future__ import annotations

import pytest

from bench.measurements import neighbours as nb
from bench.model.errors import ScenarioError
from bench.model.records import NeighbourRun, Sample, StepRecord
from bench.plan.scenario import parse_scenario
from bench.report import neighbours as report_nb
from tests.helpers import run_fake

FAKE = """name: nb
repeat: 3
warmup: 0
settle: 0s
neighbours:
  aggressors: 2
  kinds: [cpu, stream, io]
  victim: cpu
  duration: 2s
platforms:
  - name: runc
    backend: fake
    kind: container
    work_rate: 1000
    neighbour_slowdown: {cpu: 0.25, stream: 1.0, hdd: 0.0}
  - {name: microvm, backend: fake, kind: microvm, accel: tcg, work_rate: 20,
     neighbour_slowdown: {cpu: 0.5}}
"""


def _run():
    _, sink, backends = run_fake(FAKE)
    return sink, backends


def test_each_step_starts_a_victim_and_its_aggressors_and_stores_raw_runs():
    sink, _ = _run()
    assert len(sink.steps) == 6  # 2 platforms x 3 repeats
    for step in sink.steps:
        StepRecord.model_validate(step)
        assert step["n"] == 3  # the victim and 2 aggressors
        runs = [NeighbourRun.model_validate(r) for r in step["extras"]["neighbours"]]
        assert [r.aggressor for r in runs] == ["alone", "cpu", "stream", "io"]
        assert [r.aggressors for r in runs] == [0, 2, 2, 2]
        assert all(r.victim.error is None and not r.aggressor_errors for r in runs)
    values = {
        r["aggressor"]: r["victim"]["figures"][0]["value"]
        for r in sink.steps[0]["extras"]["neighbours"]
    }
    # Two aggressors: 1 + 2 x factor.
    assert values == {"alone": 1000.0, "cpu": 1000 / 1.5, "stream": 1000 / 3, "io": 1000.0}
    assert len(sink.samples) == 18
    for s in sink.samples:
        Sample.model_validate(s)


def test_slowdown_per_kind_with_spread_and_the_emulated_marking():
    sink, _ = _run()
    section = report_nb.build("nb", sink.steps)
    assert section is not None and section.failures == []
    rows = {(r.platform, r.aggressor): r for r in section.rows}
    assert rows["runc", "cpu"].median == pytest.approx(1.5)
    assert rows["runc", "stream"].median == pytest.approx(3.0)
    assert rows["runc", "io"].median == pytest.approx(1.0)
    assert rows["runc", "stream"].n == 3
    assert not rows["runc", "cpu"].emulated
    assert rows["microvm", "cpu"].emulated and rows["microvm", "cpu"].median == pytest.approx(2.0)
    # Containers before VMs, kinds in the scenario's order.
    assert [(r.platform, r.aggressor) for r in section.rows][:3] == [
        ("runc", "cpu"),
        ("runc", "stream"),
        ("runc", "io"),
    ]
    worst = report_nb.worst(section)
    assert worst["runc"].startswith("worst neighbour slowdown 3.00x (stream")
    assert worst["microvm"].endswith("emulated)")


def test_slowdown_arithmetic_follows_the_figures_direction():
    assert report_nb.slowdown(1000, 500, "lower") == 2.0  # a rate halved
    assert report_nb.slowdown(100, 300, "higher") == 3.0  # a latency tripled
    assert report_nb.slowdown(1000, 2000, "lower") == 0.5  # faster with neighbours
    assert report_nb.slowdown(0, 10, "lower") is None


def test_spread_is_the_repeats_min_and_max():
    def step(alone, contended):
        def run(name, value):
            return {
                "workload": "cpu",
                "tool": "stress-ng",
                "argv": [],
                "duration_s": 1,
                "figures": [
                    {
                        "figure": "cpu.bogo_ops_per_s",
                        "value": value,
                        "unit": "ops/s",
                        "worse": "lower",
                    }
                ],
            }

        return {
            "platform": "p",
            "kind": "container",
            "extras": {
                "neighbours": [
                    {"aggressor": "alone", "aggressors": 0, "victim": run("cpu", alone)},
                    {"aggressor": "cpu", "aggressors": 1, "victim": run("cpu", contended)},
                ]
            },
        }

    section = report_nb.build("r", [step(100, 50), step(100, 80), step(90, 30)])
    assert section is not None
    (row,) = section.rows
    assert (row.median, row.low, row.high, row.n) == (2.0, 1.25, 3.0, 3)
    assert report_nb.display_rows(section)[0]["slowdown"] == "2.00x"


def test_a_failed_aggressor_or_victim_is_named_not_counted():
    steps = [
        {
            "platform": "p",
            "kind": "container",
            "extras": {
                "neighbours": [
                    {
                        "aggressor": "alone",
                        "aggressors": 0,
                        "victim": {
                            "workload": "cpu",
                            "tool": "stress-ng",
                            "argv": [],
                            "duration_s": 1,
                            "error": "stress-ng exited with 1: boom",
                        },
                    },
                ]
            },
        }
    ]
    section = report_nb.build("r", steps)
    assert section is not None and section.rows == []
    assert section.failures == ["p alone: stress-ng exited with 1: boom"]
    assert report_nb.build("r", [{"platform": "p", "extras": {}}]) is None


@pytest.mark.parametrize(
    "block,message",
    [
        ("neighbours: {kinds: [cpu, disk]}", "unknown aggressor kind 'disk'"),
        ("neighbours: {kinds: [cpu, cpu]}", "an aggressor kind is given twice"),
        ("neighbours: {victim: nope}", "unknown victim workload 'nope'"),
        ("neighbours: {aggressors: 0}", "greater than or equal to 1"),
        ("neighbours: {duration: 90s}", "a workload runs 1s to 30s"),
        ("neighbours: {}\ncounts: [1, 2]", "neighbours set each step's count"),
    ],
)
def test_neighbour_keys_are_refused_in_one_line(block, message):
    text = f"name: x\n{block}\nplatforms: [{{name: f, backend: fake}}]\n"
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_step_count_is_the_aggressors_plus_the_victim():
    sc = parse_scenario(
        "name: x\nneighbours: {aggressors: 3}\nplatforms: [{name: f, backend: fake}]\n"
    )
    assert [s.n for s in sc.plan()] == [4]
    assert sc.neighbours is not None and sc.neighbours.kinds == ["cpu", "stream", "io", "fork"]


def test_the_aggressor_command_is_marked_bounded_and_quiet():
    argv = nb.aggressor_command("io", 7)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2].startswith(nb.MARK)
    assert "timeout -s KILL 27 stress-ng --hdd 1 --hdd-bytes 64M -t 7s --quiet" in argv[2]
    # The network kind loads the stack over the aggressor's own loopback (no network).
    assert "stress-ng --sock 1 -t 7s --quiet" in nb.aggressor_command("net", 7)[2]


def test_the_report_shows_the_isolation_table_and_the_worst_slowdown(tmp_path):
    from bench.model.results import RunWriter
    from bench.report import build_report

    sink, _ = _run()
    run_id = "nb-20261206-000000-n0n0"
    writer = RunWriter(tmp_path / "results" / run_id, run_id)
    writer.start({"scenario": {"name": "nb", "platforms": [{"name": "runc"}, {"name": "microvm"}]}})
    writer.add_samples([Sample.model_validate(s) for s in sink.samples])
    for step in sink.steps:
        writer.add_step(StepRecord.model_validate(step))
    writer.finish("complete")
    out = tmp_path / "report"
    build_report([writer.dir], out)
    summary = (out / "summary.md").read_text()
    assert "## Isolation: noisy neighbours: " + run_id in summary
    (line,) = [x for x in summary.splitlines() if x.startswith("| runc") and "stream" in x]
    assert "3.00x" in line and "3.00-3.00" in line
    assert "(emulated)" in summary
    classic = (out / "containers-vs-vms.md").read_text()
    (row,) = [x for x in classic.splitlines() if x.startswith("| isolation")]
    assert "worst neighbour slowdown 3.00x (stream" in row
    html = (out / "report.html").read_text()
    assert "Isolation: noisy neighbours" in html
    assert (out / "neighbours.png").stat().st_size > 0
    assert "victim&#x27;s median slowdown per aggressor kind" in html or "median slowdown" in html
