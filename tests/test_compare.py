"""`bench compare`: the run-level comparison on in-memory runs (no files, no engines).
The statistics themselves are tested in test_verdict.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.judge.compare import (
    INCONCLUSIVE,
    REGRESSION,
    compare_runs,
    parse_threshold,
)
from bench.model.errors import ExitCode, UsageError
from bench.model.results import Run
from bench.report.render_json import verdict_json
from bench.report.render_markdown import compare_markdown

ALPHA = 0.01
THRESHOLD = 0.10


def startup_times(rng, n, median=0.15, spread=0.12):
    """Container-like ready times: log-normal around `median` seconds."""
    return rng.lognormal(math.log(median), spread, n)


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("2.5%", 0.025), (" 0% ", 0.0)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "0.1", "ten%", "-5%", ""])
def test_parse_threshold_needs_a_percent_sign(text):
    with pytest.raises(UsageError, match="percentage such as 10%"):
        parse_threshold(text)


# --- two runs ------------------------------------------------------------------------


def make_run(
    run_id,
    groups,
    host=None,
    engines=None,
    accel=None,
    failures=0,
    status="complete",
    scenario=None,
):
    """A Run in memory. groups: {(platform, n): list of ready_s}."""
    samples = []
    for (platform, n), values in groups.items():
        kind = "vm" if platform.startswith("vm") else "container"
        for i, v in enumerate(values):
            samples.append(
                {
                    "run_id": run_id,
                    "platform": platform,
                    "backend": "libvirt" if kind == "vm" else "docker",
                    "kind": kind,
                    "n": n,
                    "repeat": i // n,
                    "index": i % n,
                    "ok": True,
                    "error": None,
                    "ready_s": float(v),
                    "create_s": 0.01,
                    "accel": accel if kind == "vm" else None,
                }
            )
        for _ in range(failures):
            samples.append({**samples[-1], "ok": False, "ready_s": None, "error": "timeout"})
    metadata = {
        "schema_version": 1,
        "run_id": run_id,
        "status": status,
        "host": host or {"hostname": "lab1", "cpu_model": "EPYC", "kernel": "6.1"},
        "engines": engines or {"container": {"docker_version": "20.10"}},
        "scenario": scenario or {"name": "ci", "repeat": 20, "platforms": []},
    }
    return Run(Path("/nonexistent") / run_id, metadata, samples, [])


def test_one_baseline_same_is_inconclusive_and_a_gross_delay_is_a_regression():
    rng = np.random.default_rng(11)
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    same = make_run("c", {("container", 1): startup_times(rng, 20)})
    result = compare_runs(base, same)
    # One run cannot show the run-to-run drift: it cannot rule out a 10% slow-down.
    assert result.exit_code == ExitCode.INCONCLUSIVE
    assert result.warnings == []
    assert "bench ab" in result.inconclusive_message()
    # The container's readiness delayed by 200 ms (x2.3): more than drift could make.
    delayed = make_run("d", {("container", 1): startup_times(rng, 20) + 0.2})
    result = compare_runs(base, delayed)
    assert result.exit_code == ExitCode.REGRESSION
    [g] = result.regressions
    assert (g.platform, g.n) == ("container", 1)
    assert g.test.change > 1.0


def test_a_current_group_whose_instances_failed_is_a_regression():
    rng = np.random.default_rng(1)
    bases = [make_run(f"b{i}", {("container", 1): startup_times(rng, 20)}) for i in range(5)]
    cur = make_run("c", {("container", 1): startup_times(rng, 20)})
    for s in cur.samples:
        s.update(ok=False, ready_s=None)
    cur.samples.append({**cur.samples[0], "ok": True, "ready_s": 0.1, "n": 4})
    result = compare_runs(bases, cur)
    [g] = [g for g in result.groups if g.n == 1]
    assert g.verdict == REGRESSION and g.test is None
    assert "20 of 20 instances failed" in g.advice
    assert result.exit_code == ExitCode.REGRESSION
    assert "20 of 20 instances failed" in compare_markdown(result)


def test_a_group_without_ready_baseline_samples_is_inconclusive():
    rng = np.random.default_rng(1)
    bases = [make_run(f"b{i}", {("container", 1): startup_times(rng, 20)}) for i in range(5)]
    for b in bases:
        for s in b.samples:
            s.update(ok=False, ready_s=None)
    cur = make_run("c", {("container", 1): startup_times(rng, 20)})
    result = compare_runs(bases, cur)
    [g] = result.groups
    assert g.verdict == INCONCLUSIVE and g.test is None
    assert "no ready sample in any baseline run" in g.advice
    assert result.exit_code == ExitCode.INCONCLUSIVE


def test_the_current_run_cannot_be_its_own_baseline():
    rng = np.random.default_rng(1)
    run = make_run("c", {("container", 1): startup_times(rng, 20)})
    with pytest.raises(UsageError, match="both a baseline and the current run"):
        compare_runs([run], run)


def test_a_regression_wins_over_an_inconclusive_group():
    rng = np.random.default_rng(2)
    base = make_run("b", {("container", 1): startup_times(rng, 20), ("vm", 1): [4.0, 4.1]})
    cur = make_run("c", {("container", 1): startup_times(rng, 20) * 3, ("vm", 1): [4.0, 4.2]})
    result = compare_runs(base, cur)
    assert [g.verdict for g in result.groups] == [REGRESSION, INCONCLUSIVE]
    assert result.exit_code == ExitCode.REGRESSION


def test_no_common_platform_and_n_is_a_usage_error():
    base = make_run("b", {("container", 1): [0.1] * 10})
    cur = make_run("c", {("container", 2): [0.1] * 10})
    with pytest.raises(UsageError, match="no \\(platform, N\\) in common"):
        compare_runs(base, cur)


def test_unknown_metric_is_a_usage_error_listing_the_known_ones():
    base = make_run("b", {("container", 1): [0.1] * 10})
    cur = make_run("c", {("container", 1): [0.1] * 10})
    with pytest.raises(UsageError, match="use one of: create_s, ready_s"):
        compare_runs(base, cur, metric="boot_time")


def test_another_metric_can_be_compared():
    runs = [make_run(f"r{i}", {("container", 1): [0.1] * 10}) for i in range(4)]
    result = compare_runs(runs[:3], runs[3], metric="create_s")
    assert result.exit_code == ExitCode.OK and result.metric == "create_s"


def test_failed_instances_are_left_out_counted_and_warned_about():
    rng = np.random.default_rng(5)
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    cur = make_run("c", {("container", 1): startup_times(rng, 20)}, failures=3)
    result = compare_runs(base, cur)
    [g] = result.groups
    assert (g.baseline_samples, g.current_samples) == (20, 20)
    assert (g.baseline_failures, g.current_failures) == (0, 3)
    assert any("current has failed instances (container N=1: 3)" in w for w in result.warnings)


def test_warns_when_a_run_ran_on_a_busy_host():
    rng = np.random.default_rng(8)
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    cur = make_run("c", {("container", 1): startup_times(rng, 20)})
    base.metadata["host"].update(cpu_cores=2, load_avg_1m=0.4)
    cur.metadata["host"].update(cpu_cores=2, load_avg_1m=7.5)
    # The run's own instances load the host during its steps: that is not "busy".
    base.steps.append({"platform": "container", "n": 1, "load_avg_1m": 3.0})
    [w] = compare_runs(base, cur).warnings
    assert w.startswith("current run c: the host was busy when it started (load 7.5 on 2")


def test_warns_when_hosts_engines_accel_or_settings_differ():
    rng = np.random.default_rng(6)
    vals = {("container", 1): startup_times(rng, 20), ("vm", 1): startup_times(rng, 20, 4.0)}
    base = make_run(
        "b",
        vals,
        accel="kvm",
        engines={"container": {"docker_version": "20.10"}, "vm": {"qemu_version": "7.2"}},
        scenario={"name": "ci", "platforms": [{"name": "container", "command": None}]},
    )
    cur = make_run(
        "c",
        vals,
        host={"hostname": "lab2", "cpu_model": "EPYC", "kernel": "6.8"},
        accel="tcg",
        engines={"container": {"docker_version": "24.0"}, "vm": {"qemu_version": "7.2"}},
        scenario={
            "name": "ci",
            "platforms": [{"name": "container", "command": ["sh", "-c", "sleep 0.2"]}],
        },
        status="interrupted",
    )
    warnings = "\n".join(compare_runs(base, cur).warnings)
    assert "different hosts (hostname lab1 → lab2; kernel 6.1 → 6.8)" in warnings
    assert "'container': engine versions differ (docker_version 20.10 → 24.0)" in warnings
    assert "'vm': accel differs (kvm → tcg)" in warnings
    assert "'container': scenario settings differ (command None →" in warnings
    assert "current run c is interrupted" in warnings
    assert "'vm': engine versions" not in warnings


def test_markdown_and_json_outputs():
    rng = np.random.default_rng(8)
    bases = [
        make_run(
            f"b{i}", {("container", 1): startup_times(rng, 20) * math.exp(rng.normal(0, 0.01))}
        )
        for i in range(5)
    ]
    cur = make_run("c", {("container", 1): startup_times(rng, 20) + 0.2})
    result = compare_runs(bases, cur, threshold=0.2, alpha=0.05)
    md = compare_markdown(result)
    assert "| platform" in md and "MDE (95% power)" in md and "p (Holm)" in md
    assert "**REGRESSION (time)**" in md and "**1 regression**" in md
    assert "0.5 × 20%" in md and "5 baseline run(s)" in md
    assert verdict_json(result).endswith("}\n")  # a shell prompt after it starts on its own line
    data = json.loads(verdict_json(result))
    assert data["exit_code"] == 1 and data["regressions"] == 1
    assert data["threshold"] == 0.2 and data["alpha"] == 0.05
    assert data["baselines"] == ["b0", "b1", "b2", "b3", "b4"] and data["current"] == "c"
    [g] = data["groups"]
    assert g["verdict"] == REGRESSION and g["p_slower_holm"] < 0.05
    assert g["baseline_runs"] == 5 and g["baseline_samples"] == 100
    assert g["ci_low"] <= g["change"] <= g["ci_high"]
    assert g["current_geomean"] > g["baseline_geomean"] and not g["spread_assumed"]


def test_inconclusive_group_has_nulls_in_json():
    base = make_run("b", {("container", 1): [0.1, 0.2]})
    cur = make_run("c", {("container", 1): [0.1, 0.2]})
    for s in base.samples:  # no ready baseline sample: nothing to compare against
        s.update(ok=True, ready_s=None)
    cur.samples.append({**cur.samples[0], "create_s": 0.01, "ready_s": None})
    data = json.loads(verdict_json(compare_runs(base, cur)))
    assert data["exit_code"] == 6 and data["inconclusive"] == 1
    assert data["groups"][0]["change"] is None and data["groups"][0]["verdict"] == INCONCLUSIVE


def _cli(*args: str):
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run(
        [sys.executable, "-m", "bench", "compare", *args], capture_output=True, text=True, cwd=REPO
    )


def test_compare_json_on_the_command_line_ends_with_a_newline(tmp_path):
    """A real (schema 1) run against a copy of itself under another run id."""
    import shutil

    from tests.conftest import REPO

    real = REPO / "tests/data/schema1-quickstart"
    copy = tmp_path / "again"
    shutil.copytree(real, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["run_id"] = "quickstart-again"
    (copy / "metadata.json").write_text(json.dumps(meta))
    p = _cli(str(real), str(copy), "--json")
    assert p.returncode in (0, 6), p.stderr  # one baseline run: no regression claimed
    assert p.stdout.endswith("}\n")
    assert json.loads(p.stdout)["current"] == "quickstart-again"


def test_a_run_against_itself_is_refused_up_front_in_one_line():
    from tests.conftest import REPO

    run = str(REPO / "tests/data/schema1-quickstart")
    p = _cli(run, run)
    assert p.returncode == ExitCode.USAGE
    assert p.stdout == ""  # no table first
    assert p.stderr.count("\n") == 1 and "both a baseline and the current run" in p.stderr


def on_hosts(run, slow_host=None, delay=0.0):
    """The run's samples measured on two hosts, lab1 and lab2 (`bench run --host`);
    `slow_host`'s readiness delayed by `delay`."""
    samples = [
        {**s, "host": h, "ready_s": s["ready_s"] + (delay if h == slow_host else 0.0)}
        for h in ("lab1", "lab2")
        for s in run.samples
    ]
    return Run(run.dir, run.metadata, samples, [])


def test_compare_never_pools_samples_of_two_hosts():
    rng = np.random.default_rng(5)
    base = on_hosts(make_run("b", {("container", 1): startup_times(rng, 20)}))
    # lab2 slowed down by 200 ms, lab1 as before: pooled, half the samples would hide
    # it in a wider spread; per host, lab2 is a regression of its own and lab1 is not.
    cur = on_hosts(
        make_run("c", {("container", 1): startup_times(rng, 20)}), slow_host="lab2", delay=0.2
    )
    result = compare_runs(base, cur)
    groups = {(g.platform, g.n): g for g in result.groups}
    assert set(groups) == {("container@lab1", 1), ("container@lab2", 1)}
    assert all(g.current_samples == 20 for g in groups.values())
    assert [g.platform for g in result.regressions] == ["container@lab2"]
