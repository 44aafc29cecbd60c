"""`bench compare`: the statistics on synthetic samples, and the run-level comparison on
in-memory runs (no files, no engines)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.compare import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    TOO_FEW,
    WITHIN_THRESHOLD,
    compare_runs,
    min_samples,
    parse_threshold,
    shift_test,
    verdict,
)
from bench.errors import ExitCode, UsageError
from bench.results import Run

ALPHA = 0.01
THRESHOLD = 0.10


def startup_times(rng, n, median=0.15, spread=0.12):
    """Container-like ready times: log-normal around `median` seconds."""
    return rng.lognormal(math.log(median), spread, n)


# --- pure statistics ---------------------------------------------------------------


def test_min_samples_is_the_smallest_size_that_can_reach_alpha():
    # 1 / C(2n, n): n=4 -> 1/70 = 0.014, n=5 -> 1/252 = 0.004
    assert min_samples(0.01) == 5
    assert min_samples(0.05) == 4
    assert min_samples(0.001) == 7
    with pytest.raises(UsageError, match="between 0 and 1"):
        min_samples(1.5)


def test_min_samples_really_cannot_reject_below_it():
    below = min_samples(ALPHA) - 1
    # Completely separated samples: the strongest evidence those sizes can carry.
    s = shift_test(list(range(1, below + 1)), list(range(100, 100 + below)))
    assert s.p_slower >= ALPHA
    at = min_samples(ALPHA)
    s = shift_test(list(range(1, at + 1)), list(range(100, 100 + at)))
    assert s.p_slower < ALPHA


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("2.5%", 0.025), (" 0% ", 0.0)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "0.1", "ten%", "-5%", ""])
def test_parse_threshold_needs_a_percent_sign(text):
    with pytest.raises(UsageError, match="percentage such as 10%"):
        parse_threshold(text)


def test_no_false_alarm_on_identical_distributions():
    rng = np.random.default_rng(20261129)
    trials = 200
    significant = regressions = 0
    for _ in range(trials):
        s = shift_test(startup_times(rng, 20), startup_times(rng, 20), ALPHA, resamples=500)
        significant += s.p_slower < ALPHA
        regressions += verdict(s, THRESHOLD, ALPHA) == REGRESSION
    # Expected alpha * trials = 2 significant results by chance; 3 sigma above is ~6.
    bound = ALPHA * trials + 3 * math.sqrt(trials * ALPHA * (1 - ALPHA))
    assert significant <= bound
    assert regressions <= significant  # the threshold only ever removes alarms
    assert regressions <= bound


def test_a_30_percent_slowdown_is_detected():
    rng = np.random.default_rng(7)
    trials = 50
    detected = 0
    covered = 0
    for _ in range(trials):
        base = startup_times(rng, 20)
        cur = startup_times(rng, 20) * 1.3
        s = shift_test(base, cur, ALPHA, resamples=1000)
        detected += verdict(s, THRESHOLD, ALPHA) == REGRESSION
        covered += s.ci_low <= 0.3 <= s.ci_high
    assert detected >= 0.95 * trials
    assert covered >= 0.9 * trials  # a 99% interval: the true change is nearly always in it


def test_shift_reports_medians_change_and_interval():
    base = [0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16]
    cur = [2 * x for x in base]
    s = shift_test(base, cur)
    assert s.baseline_median == pytest.approx(0.13)
    assert s.current_median == pytest.approx(0.26)
    assert s.change == pytest.approx(1.0)
    assert s.ci_low <= 1.0 <= s.ci_high
    assert s.n_baseline == s.n_current == 7
    # Same seed, same interval: a CI log does not flicker between reruns.
    assert shift_test(base, cur) == s


def test_speedups_and_small_changes_are_not_regressions():
    rng = np.random.default_rng(3)
    base = startup_times(rng, 200, spread=0.05)
    faster = verdict(shift_test(base, startup_times(rng, 200, 0.15 * 0.7, 0.05)), 0.1, ALPHA)
    assert faster == IMPROVEMENT
    # 3% slower on 200 tight samples: significant, but below a 10% threshold.
    slight = shift_test(base, startup_times(rng, 200, 0.15 * 1.03, 0.05))
    assert slight.p_slower < ALPHA
    assert verdict(slight, 0.1, ALPHA) == WITHIN_THRESHOLD
    assert verdict(slight, 0.0, ALPHA) == REGRESSION
    same = shift_test(base, startup_times(rng, 200, spread=0.05))
    assert verdict(same, 0.1, ALPHA) in (NO_CHANGE, WITHIN_THRESHOLD)


def test_a_large_but_noisy_change_is_not_significant():
    # Five wildly spread samples each: the medians differ by 40% but nothing is shown.
    base = [0.1, 1.0, 0.2, 2.0, 0.15]
    cur = [x * 1.4 for x in [2.0, 0.1, 0.2, 1.0, 0.15]]
    s = shift_test(base, cur)
    assert s.change > 0.1
    assert verdict(s, 0.1, ALPHA) == NO_CHANGE


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


def test_same_distribution_exits_0_and_delayed_exits_1():
    rng = np.random.default_rng(11)
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    same = make_run("c", {("container", 1): startup_times(rng, 20)})
    result = compare_runs(base, same)
    assert result.exit_code == ExitCode.OK
    assert result.warnings == []
    # The container's readiness delayed by 200 ms.
    delayed = make_run("d", {("container", 1): startup_times(rng, 20) + 0.2})
    result = compare_runs(base, delayed)
    assert result.exit_code == ExitCode.REGRESSION
    [g] = result.regressions
    assert (g.platform, g.n) == ("container", 1)
    assert g.shift.change > 1.0


def test_too_few_samples_is_a_usage_error_naming_how_many():
    rng = np.random.default_rng(1)
    base = make_run("b", {("container", 1): startup_times(rng, 4), ("container", 4): [0.3] * 8})
    cur = make_run("c", {("container", 1): startup_times(rng, 4), ("container", 4): [0.3] * 8})
    result = compare_runs(base, cur)
    assert [g.verdict for g in result.groups] == [TOO_FEW, NO_CHANGE]
    assert result.exit_code == ExitCode.USAGE
    msg = result.undecided_message()
    assert "container N=1 (4 vs 4)" in msg and "at least 5 per run" in msg
    assert "repeat" in msg


def test_a_regression_wins_over_an_undecided_group():
    rng = np.random.default_rng(2)
    base = make_run("b", {("container", 1): startup_times(rng, 20), ("vm", 1): [4.0, 4.1]})
    cur = make_run("c", {("container", 1): startup_times(rng, 20) * 2, ("vm", 1): [4.0, 4.2]})
    assert compare_runs(base, cur).exit_code == ExitCode.REGRESSION


def test_no_common_platform_and_n_is_a_usage_error():
    base = make_run("b", {("container", 1): [0.1] * 10})
    cur = make_run("c", {("container", 2): [0.1] * 10})
    with pytest.raises(UsageError, match="no \\(platform, N\\) in common"):
        compare_runs(base, cur)


def test_unknown_metric_is_a_usage_error_listing_the_known_ones():
    base = make_run("b", {("container", 1): [0.1] * 10})
    with pytest.raises(UsageError, match="use one of: create_s, ready_s"):
        compare_runs(base, base, metric="boot_time")


def test_another_metric_can_be_compared():
    base = make_run("b", {("container", 1): [0.1] * 10})
    result = compare_runs(base, base, metric="create_s")
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
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    cur = make_run("c", {("container", 1): startup_times(rng, 20) + 0.2})
    result = compare_runs(base, cur, threshold=0.2, alpha=0.05)
    md = result.to_markdown()
    assert "| platform" in md and "95% CI of change" in md
    assert "**REGRESSION**" in md and "**1 regression**" in md
    assert "more than 20%" in md
    data = json.loads(result.to_json())
    assert data["exit_code"] == 1 and data["regressions"] == 1
    assert data["threshold"] == 0.2 and data["alpha"] == 0.05 and data["min_samples"] == 4
    [g] = data["groups"]
    assert g["verdict"] == REGRESSION and g["p_slower"] < 0.05
    assert g["baseline_samples"] == 20 and g["ci_low"] <= g["change"] <= g["ci_high"]


def test_undecided_group_has_nulls_in_json():
    base = make_run("b", {("container", 1): [0.1, 0.2]})
    data = json.loads(compare_runs(base, base).to_json())
    assert data["exit_code"] == 2
    assert data["groups"][0]["change"] is None and data["groups"][0]["verdict"] == TOO_FEW
