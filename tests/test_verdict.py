"""The statistics of the verdicts: `bench ab` (step pairs) and `bench compare` with one or
several baseline runs, on synthetic numbers and in-memory runs (no files, no engines)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.judge import verdict as v
from bench.judge.ab import analyse_ab
from bench.judge.compare import compare_runs
from bench.model.errors import ExitCode, UsageError
from bench.model.results import Run
from bench.report.render_json import verdict_json
from bench.report.render_markdown import ab_markdown
from bench.runner.policy import ab_order
from tests.test_compare import make_run, startup_times

# --- pure statistics -----------------------------------------------------------------


def test_holm_adjusts_by_rank_and_stays_monotone():
    assert v.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert v.holm([0.5]) == [0.5]
    assert v.holm([0.9, 0.001]) == pytest.approx([0.9, 0.002])


def test_mde_shrinks_with_more_pairs_and_pairs_needed_is_the_first_conclusive():
    sd = 0.2
    mdes = [v.paired_mde(sd, n) for n in (6, 12, 24, 48, 96)]
    assert all(a > b for a, b in zip(mdes, mdes[1:], strict=False))
    assert v.paired_mde(sd, 1) == math.inf
    need = v.pairs_needed(sd, 0.10)
    assert v.paired_mde(sd, need) <= 0.10 < v.paired_mde(sd, need - 1)
    # The normal approximation: ((2.33 + 1.64) x 0.2 / log 1.1)^2 = 69.5, t adds a little.
    assert 70 <= need <= 76
    assert v.pairs_needed(math.nan, 0.10) is None


def test_paired_test_false_alarms_stay_below_alpha():
    rng = np.random.default_rng(20261130)
    trials = 1000
    alarms = 0
    for _ in range(trials):
        t = v.paired_test(rng.normal(0, 0.15, 60), resamples=200)
        alarms += v.decide(t, 0.10, 0.01) == v.REGRESSION
    bound = 0.01 * trials + 3 * math.sqrt(trials * 0.01 * 0.99)
    assert alarms <= bound


def test_a_significant_change_below_half_the_threshold_is_not_a_regression():
    rng = np.random.default_rng(4)
    small = v.paired_test(math.log(1.03) + rng.normal(0, 0.02, 200))
    assert small.p_slower < 0.01
    assert v.decide(small, 0.10, 0.01) == v.WITHIN_THRESHOLD
    larger = v.paired_test(math.log(1.07) + rng.normal(0, 0.02, 200))
    assert v.decide(larger, 0.10, 0.01) == v.REGRESSION  # 7% > 0.5 x 10%
    assert larger.ci_low < 0.07 < larger.ci_high


def test_a_one_baseline_drift_test_is_not_made_significant_by_many_samples():
    # +15% with a within-run standard error of nearly zero (thousands of samples):
    # still not significant, because two runs differ by drift the test cannot see.
    t = v.drift_test(math.log(0.3), math.log(0.3 * 1.15), within_se=1e-4)
    assert t.p_slower > 0.05
    assert v.decide(t, 0.10, 0.01) == v.INCONCLUSIVE
    assert t.mde > 0.5
    # A gross slow-down (x3) no drift of 10% could make is a regression.
    gross = v.drift_test(math.log(0.3), math.log(0.9), within_se=0.02)
    assert v.decide(gross, 0.10, 0.01) == v.REGRESSION


def test_prediction_test_against_baseline_runs():
    levels = [0.0, 0.02, -0.02, 0.01, -0.01]
    t = v.prediction_test(levels, 0.0)
    assert t.n == 5 and t.p_slower == pytest.approx(0.5)
    s = float(np.std(levels, ddof=1))
    assert t.spread == pytest.approx(s)
    far = v.prediction_test(levels, math.log(1.3))
    assert far.p_slower < 0.001 and far.change == pytest.approx(0.3)
    with pytest.raises(ValueError):
        v.prediction_test([0.0], 0.1)
    # More baselines are needed when they spread more; none at all when the spread
    # alone hides the threshold.
    assert v.runs_needed(0.01, 0.10) < v.runs_needed(0.02, 0.10)
    assert v.runs_needed(0.07, 0.10) is None


# --- bench ab on a run -------------------------------------------------------------------


def make_ab_run(
    rng, pairs_per_n, effect=0.0, counts=(1, 4), cv=0.15, icc=0.4, pairs=True, failed_b=0
):
    """An A/B run in memory, steps in the runner's counterbalanced order (ab_order).

    `failed_b`: in that many of B's steps (the first ones) the first instance never
    became ready (at N=1 the whole step: one event either way).
    """
    total = math.sqrt(math.log1p(cv**2))
    sd_step, sd_inst = math.sqrt(icc) * total, math.sqrt(1 - icc) * total
    samples, stored, step = [], [], 0
    for n, repeat, a_first in ab_order(list(counts), pairs_per_n):
        ids = {}
        for platform in ("A", "B") if a_first else ("B", "A"):
            level = math.log(0.3) + rng.normal(0, sd_step)
            fails = platform == "B" and failed_b > 0
            failed_b -= fails
            for k, x in enumerate(np.exp(level + rng.normal(0, sd_inst, n))):
                ready = x * (1 + effect) if platform == "B" else x
                ok = not (fails and k == 0)
                samples.append(
                    {
                        "step": step,
                        "platform": platform,
                        "n": n,
                        "repeat": repeat,
                        "index": k,
                        "ok": ok,
                        "ready_s": float(ready) if ok else None,
                    }
                )
            ids[platform] = step
            step += 1
        stored.append([ids["A"], ids["B"]])
    spec = {"baseline": "A", "candidate": "B"}
    if pairs:
        spec["pairs"] = stored
    metadata = {"schema_version": 2, "run_id": "ab", "status": "complete", "ab": spec}
    return Run(Path("/nonexistent/ab"), metadata, samples, [])


def test_ab_a_clear_regression_exits_1():
    run = make_ab_run(np.random.default_rng(1), 40, effect=0.30)
    result = analyse_ab(run)
    assert result.exit_code == ExitCode.REGRESSION and result.verdict == v.REGRESSION
    assert result.test.n == 80
    assert result.test.ci_low < 0.30 < result.test.ci_high
    md = ab_markdown(result)
    assert "**REGRESSION (center)**" in md and "candidate `B`, baseline `A`" in md
    assert {"center N=1", "center N=4"} <= set(result.fired)
    data = json.loads(verdict_json(result))
    assert data["exit_code"] == 1 and data["pairs"] == 80 and set(data["per_n"]) == {"1", "4"}
    assert "center N=4" in data["fired"] and len(data["gates"]) == 4


def test_ab_a_over_a_exits_0():
    # Quiet enough that 50 pairs per N rule out 10%: conclusive, and nothing changed.
    run = make_ab_run(np.random.default_rng(2), 50, cv=0.08)
    result = analyse_ab(run)
    assert result.test.mde < 0.10
    assert result.exit_code == ExitCode.OK, ab_markdown(result)
    assert abs(result.test.change) < 0.05


def test_ab_pairs_by_repeat_when_the_run_stored_none():
    run = make_ab_run(np.random.default_rng(3), 30, pairs=False)
    result = analyse_ab(run)
    assert result.test.n == 60
    assert all(p.baseline_step != p.candidate_step for p in result.pairs)


def test_ab_a_candidate_that_fails_significantly_more_is_a_regression_whatever_its_times():
    run = make_ab_run(np.random.default_rng(5), 50, cv=0.08, failed_b=15)
    result = analyse_ab(run)
    f = result.failures
    assert (f.baseline, f.candidate) == (0, 15) and f.p < 0.01 and f.regression
    assert result.exit_code == ExitCode.REGRESSION and result.fired == ["failures"]
    assert "**REGRESSION (failures)**" in ab_markdown(result)
    data = json.loads(verdict_json(result))["failures"]
    assert (data["baseline"], data["candidate"], data["regression"]) == (0, 15, True)
    assert data["why"].startswith("B failed 15 of")


def test_ab_three_extra_failed_instances_do_not_decide_the_verdict():
    run = make_ab_run(np.random.default_rng(5), 50, cv=0.08, failed_b=3)
    result = analyse_ab(run)
    assert result.failures.candidate == 3 and not result.failures.regression
    assert result.exit_code == ExitCode.OK, ab_markdown(result)
    assert "not significant" in ab_markdown(result)


def test_ab_too_few_pairs_is_inconclusive_and_says_how_many_more_repeats():
    run = make_ab_run(np.random.default_rng(4), 2, effect=0.05)
    result = analyse_ab(run)
    assert result.test.n == 4 < v.MIN_PAIRS
    assert result.exit_code == ExitCode.INCONCLUSIVE == 6
    # A signed-rank test at alpha 0.01 / 4 gates needs 9 pairs per N (2^-9 < 0.0025).
    assert result.extra_repeats == 7
    assert result.extra_pairs == 2 * result.extra_repeats
    advice = result.advice()
    assert "2 usable pairs per N are too few" in advice
    assert f"raise `repeat` by {result.extra_repeats}" in advice
    assert json.loads(verdict_json(result))["extra_repeats"] == result.extra_repeats


def test_ab_noisy_pairs_are_inconclusive_when_the_mde_is_above_the_threshold():
    run = make_ab_run(np.random.default_rng(5), 8, cv=0.40)
    result = analyse_ab(run)
    assert result.test.n == 16 and result.mde > 0.10
    assert result.verdict == v.INCONCLUSIVE
    # The extra repeats bring the rule's MDE (at this spread) to the threshold.
    from bench.judge.ab import CENTER, _rule_mde

    centers = [g for g in result.gates if g.kind == CENTER]
    level = 0.01 / len(result.gates)
    assert _rule_mde(centers, level, 0.10, result.extra_repeats) <= 0.10
    assert _rule_mde(centers, level, 0.10, result.extra_repeats - 1) > 0.10


def test_ab_needs_to_know_which_platform_is_which():
    run = make_ab_run(np.random.default_rng(6), 5)
    plain = Run(run.dir, {"run_id": "x", "status": "complete"}, run.samples, [])
    with pytest.raises(UsageError, match="not an A/B run"):
        analyse_ab(plain)
    named = analyse_ab(plain, baseline="A", candidate="B")
    assert named.test.n == 10 and named.warnings[0].startswith("NO RECORDED A/B PAIRS")
    with pytest.raises(UsageError, match="'C' has no samples"):
        analyse_ab(plain, baseline="A", candidate="C")
    bad = dict(run.metadata["ab"], pairs=[[1, 0]])  # candidate's step given as A's
    wrong = Run(run.dir, {**run.metadata, "ab": bad}, run.samples, [])
    with pytest.raises(UsageError, match="pairs step"):
        analyse_ab(wrong)


# --- bench compare: one or several baseline runs ----------------------------------------


def drifted_runs(rng, k, shift=0.0, drift=0.01, prefix="b", spread=0.12):
    return [
        make_run(
            f"{prefix}{i}",
            {
                ("container", 1): startup_times(rng, 20, spread=spread)
                * math.exp(rng.normal(0, drift))
            },
        )
        for i in range(k)
    ] + [
        make_run(
            "current",
            {
                ("container", 1): startup_times(rng, 20, spread=spread)
                * math.exp(rng.normal(0, drift))
                * (1 + shift)
            },
        )
    ]


def test_compare_with_five_baselines_detects_a_large_shift():
    rng = np.random.default_rng(10)
    *bases, cur = drifted_runs(rng, 5, shift=0.5)
    result = compare_runs(bases, cur)
    assert result.exit_code == ExitCode.REGRESSION
    [g] = result.groups
    assert g.baseline_runs == 5 and g.method == "5 baseline runs"
    assert 0.3 < g.test.change < 0.7


def test_compare_with_five_quiet_baselines_and_no_change_exits_0():
    rng = np.random.default_rng(11)
    *bases, cur = drifted_runs(rng, 5, drift=0.005, spread=0.03)
    result = compare_runs(bases, cur)
    [g] = result.groups
    assert g.test.mde < 0.10
    assert result.exit_code == ExitCode.OK


def test_compare_with_one_baseline_never_calls_a_modest_change_a_regression():
    # 2000 samples per run, +15%: instance samples alone give p ~ 0, but one run
    # cannot tell a change from run-to-run drift.
    rng = np.random.default_rng(12)
    base = make_run("b", {("container", 1): startup_times(rng, 2000)})
    cur = make_run("c", {("container", 1): startup_times(rng, 2000) * 1.15})
    result = compare_runs(base, cur)
    assert result.exit_code == ExitCode.INCONCLUSIVE
    [g] = result.groups
    assert g.verdict == v.INCONCLUSIVE and g.method.startswith("one baseline")
    assert "bench ab" in g.advice and "several baseline runs" in g.advice
    assert g.test.change == pytest.approx(0.15, abs=0.03)


def test_compare_holm_corrects_over_groups():
    rng = np.random.default_rng(13)
    groups = {("container", n): None for n in (1, 2, 4, 8)}
    runs = []
    for i in range(6):
        level = math.exp(rng.normal(0, 0.01))
        runs.append(
            make_run(f"r{i}", {k: startup_times(rng, 20) * level for k in groups}),
        )
    result = compare_runs(runs[:5], runs[5])
    raw = [g.test.p_slower for g in result.groups]
    adjusted = [g.p_slower_adjusted for g in result.groups]
    assert adjusted == pytest.approx(v.holm(raw))
    assert all(a >= r for a, r in zip(adjusted, raw, strict=True))
    # The MDE is computed at alpha / groups.
    assert all(g.test.alpha == pytest.approx(0.01 / 4) for g in result.groups)


def test_compare_refuses_a_baseline_given_twice():
    rng = np.random.default_rng(14)
    base = make_run("b", {("container", 1): startup_times(rng, 20)})
    cur = make_run("c", {("container", 1): startup_times(rng, 20)})
    with pytest.raises(UsageError, match="more than once"):
        compare_runs([base, base], cur)


# --- bench compare's LevelTest, runs_needed with the floor, failure units -----------------


def test_level_test_bounds_invert_its_p_and_its_mde_includes_the_floor():
    for df in (None, 4):
        t = v.LevelTest(5, math.log(1.08), 0.03, df, 0.03)
        for level in (0.01, 0.005, 0.0025):
            assert (t.lower(level) > 0) == (t.p_slower < level)
            assert (t.upper(level) < 0) == (t.p_faster < level)
        # A tight scale: the half-threshold floor, not the test, sets the MDE.
        tight = v.LevelTest(20, 0.0, 0.005, df, 0.005)
        mde = tight.mde(0.005, floor=0.05)
        assert mde > 0.05 and mde == pytest.approx(
            math.expm1(math.log1p(0.05) + tight._dist().ppf(0.95) * 0.005)
        )
    assert v.LevelTest(1, 0.0, math.inf, None, 0.1).mde(0.01, 0.05) == math.inf
    flat = v.LevelTest(3, 0.01, 0.0, 2, 0.0)
    assert (flat.p_slower, flat.p_faster) == (0.0, 1.0)


def test_runs_needed_matches_the_level_test_mde():
    spread, threshold, alpha = 0.02, 0.10, 0.005
    k = v.runs_needed(spread, threshold, alpha, floor=0.05)

    def mde(k):
        return v.LevelTest(k, 0.0, spread * math.sqrt(1 + 1 / k), k - 1, spread).mde(alpha, 0.05)

    assert mde(k) <= threshold < mde(k - 1)
    # A current run of another design (added variance) needs more baseline runs.
    assert v.runs_needed(spread, threshold, alpha, floor=0.05, added=0.0001) > k
    assert v.runs_needed(0.07, 0.10, floor=0.05) is None


def test_failure_units_count_a_step_lost_whole_once_and_leave_out_interrupted():
    rows = [{"step": 0, "ok": False}] * 4  # lost whole: one event, one unit
    rows += [{"step": 1, "ok": False}, *[{"step": 1, "ok": True}] * 3]  # one of four
    rows += [{"step": 2, "ok": False, "failure": "interrupted"}] * 4  # not the platform's
    rows += [{"n": 1, "repeat": 0, "ok": False}, {"n": 1, "repeat": 1, "ok": True}]  # no step
    assert v.failure_units(rows) == (1 + 1 + 1, 1 + 4 + 2)
