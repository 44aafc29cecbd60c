"""`bench compare BASELINE... CURRENT`: is the current run slower than its history?

The unit of evidence is a RUN, never an instance. Every sample of a run shares the
host's level of that day (run-to-run drift of several percent on one machine), and the
N instances of a step share contention, so p-values over instance samples are far too
small: instance-level tests gave 20% false alarms once drift was in the model
(issue 10, benchmarks/gate.py). So each run is summarised per (platform, N) by its
mean log value (the mean over its steps of each step's mean log value) and:

- with SEVERAL baseline runs, their spread estimates the run-to-run drift and the
  current run is tested against their distribution (a t prediction test, runs - 1
  degrees of freedom: bench.judge.verdict.LevelTest);
- with ONE baseline run, that spread cannot be seen: the change is tested against an
  assumed drift of bench.judge.verdict.ASSUMED_DRIFT per run (a z test). Only a change
  larger than drift could plausibly make is significant, and the minimum detectable
  effect is large, so at a 10% threshold one baseline gives "inconclusive" (or a
  regression for a gross slow-down), never "no regression". The output says to pass
  several baseline runs, or to use `bench ab` for a change that can run side by side;
- with baselines of ONE SESSION (recorded back to back, the current run later:
  `one_session`), their spread shows the drift within a session only (issue 21: 2%
  against 7% between sessions, 15% false alarms with 5 such baselines): warned, and
  the session's level is treated as one draw of the assumed drift, as for one
  baseline (benchmarks/compare_noise.py: 0% false alarms, at the cost of power);
- a current run of FEWER STEPS than the baselines knows its level less precisely than
  their spread shows: the difference of within-run variances (from the step variance
  pooled over the runs) is added (`_design_var`).

Several (platform, N) groups are one family: their p-values are Holm-adjusted (valid
whatever their dependence; groups of a run share its drift). A group's one-sided bound
is computed at the Holm level its p is judged at (above 0 exactly when p (Holm) <
alpha); its MDE at alpha / groups, the half-threshold floor included (what the whole
rule detects at 95% power). The verdict rule (regression, inconclusive, no regression)
is bench.judge.verdict.decide, shared with `bench ab`. Failed instances are a test of their
own, as in `bench ab`: per group, failed against ok units of the current run against
the baselines' pooled (one-sided Fisher exact, a step lost whole once, `interrupted`
left out; bench.judge.verdict.failure_units), Holm over the groups; a group that fails it is
a regression labelled "failures", whatever its times.

Exit code: 1 when any group is a regression; else 6 (inconclusive) when any group
lacks the evidence to rule out a threshold-sized slow-down; else 0. Usage errors
(paths, no common group, a bad --metric) stay 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias, TypeGuard, cast

from bench.judge import comparability
from bench.judge import verdict as v
from bench.model.errors import ExitCode, UsageError
from bench.model.records import Sample, metrics, number

if TYPE_CHECKING:
    from bench.model.results import Run

# A stored sample row as read (JSON: bench.model.records.Sample's fields).
SampleRow: TypeAlias = Mapping[str, object]
# Sample rows by (platform, N).
Groups: TypeAlias = dict[tuple[str, int], list[SampleRow]]

DEFAULT_ALPHA = v.DEFAULT_ALPHA
DEFAULT_THRESHOLD = v.DEFAULT_THRESHOLD
DEFAULT_METRIC = "ready_s"

REGRESSION = v.REGRESSION
INCONCLUSIVE = v.INCONCLUSIVE
WITHIN_THRESHOLD = v.WITHIN_THRESHOLD
FASTER = v.FASTER
NO_CHANGE = v.NO_CHANGE

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_threshold(text: str) -> float:
    """A fraction from "10%" (the percent sign is required: 0.1 vs 10 is too easy to mix up)."""
    m = _PERCENT_RE.match(text)
    if not m:
        raise UsageError(f"--threshold {text!r}: write a percentage such as 10%")
    return float(m.group(1)) / 100


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha {alpha}: use a probability between 0 and 1, e.g. 0.01")


def check_metric(metric: str, samples: Sequence[SampleRow]) -> None:
    """A metric bench.model.records declares for samples, and that these runs measured."""
    declared = metrics(Sample)
    measured = [m for m in declared if any(_is_number(s.get(m)) for s in samples)]
    if metric not in measured:
        what = "not a sample metric" if metric not in declared else "not measured in these runs"
        raise UsageError(
            f"--metric {metric!r} is {what}; "
            f"use one of: {', '.join(measured) or 'none (no samples)'}"
        )
    if declared[metric].worse != "higher":
        raise UsageError(f"--metric {metric!r}: only higher-is-worse metrics can be gated")


# --- one run, one group ----------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One run's (platform, N): its mean log value and how precisely the run knows it."""

    samples: int  # ready instances with a usable value of the metric
    failures: int
    steps: int
    mean_log: float | None  # mean over steps of the step's mean log value
    se: float  # its within-run standard error, steps as the unit
    step_var: float = math.nan  # variance of the step means (NaN below two steps)
    unusable: int = 0  # ok samples whose metric is null, NaN or not above 0
    failed_units: int = 0  # failures for the failure test (a step lost whole once)
    units: int = 0


def level_of(rows: Sequence[SampleRow], metric: str) -> Level:
    by_step: dict[object, list[float]] = {}
    unusable = 0
    for s in rows:
        x = s.get(metric)
        if not s.get("ok"):
            continue
        if _is_number(x) and math.isfinite(x) and x > 0:
            # Samples of schema-1 or hand-written runs may lack `step`: (N, repeat) is one.
            key = s.get("step") if s.get("step") is not None else ("r", s.get("repeat", 0))
            by_step.setdefault(key, []).append(math.log(x))
        else:
            unusable += 1
    failures = sum(1 for s in rows if not s.get("ok"))
    failed_units, units = v.failure_units(rows)
    samples = sum(len(xs) for xs in by_step.values())
    if not by_step:
        return Level(0, failures, 0, None, math.nan, math.nan, unusable, failed_units, units)
    means = [sum(xs) / len(xs) for xs in by_step.values()]
    k = len(means)
    mean = sum(means) / k
    step_var = _sd(means) ** 2 if k >= 2 else math.nan
    if k >= 2:
        se = math.sqrt(step_var / k)
    else:  # one step: its instances are all there is (they understate the error)
        xs = next(iter(by_step.values()))
        se = _sd(xs) / math.sqrt(len(xs)) if len(xs) >= 2 else 0.0
    return Level(samples, failures, k, mean, se, step_var, unusable, failed_units, units)


def _design_var(levels: list[Level], current: Level) -> tuple[float, float]:
    """(variance of the current level from its own steps, mean of the baselines'), both
    from the step variance pooled over every run of the group (the same under "no
    change"). A current run of fewer steps than the baselines knows its level less
    precisely than their spread shows; the difference is added to the test's variance.
    Falls back to each run's own standard error when no run has two steps."""
    runs = [*levels, current]
    dof = sum(lv.steps - 1 for lv in runs if lv.steps >= 2)
    if dof == 0:
        return _nan0(current.se) ** 2, sum(_nan0(lv.se) ** 2 for lv in levels) / len(levels)
    pooled = sum((lv.steps - 1) * lv.step_var for lv in runs if lv.steps >= 2) / dof
    return pooled / current.steps, sum(pooled / lv.steps for lv in levels) / len(levels)


# --- sessions: baselines recorded back to back -------------------------------------------

# Runs that start within this long after the one before ended are one session (a
# loop of `bench run`s, as a first CI history is often made). Minutes apart a machine's
# level moves by ~2%, between sessions by ~7% (issue 21's figures): a spread seen within
# one session is not the drift a later run faces.
SESSION_GAP_S = 30 * 60


def _when(run: Run, key: str) -> float | None:
    from datetime import datetime

    text = run.metadata.get(key)
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def one_session(baselines: list[Run], current: Run) -> str | None:
    """When the baseline runs (two or more) ran back to back in one session and the
    current run later, a sentence saying so; else None (also when a run lacks times)."""
    if len(baselines) < 2:
        return None
    spans = []
    for run in [*baselines, current]:
        start = _when(run, "started_at")
        end = _when(run, "finished_at") or start
        if start is None or end is None:
            return None
        spans.append((start, end))
    base = sorted(spans[:-1])
    gaps = [b[0] - a[1] for a, b in zip(base, base[1:], strict=False)]
    if max(gaps) > SESSION_GAP_S or spans[-1][0] - base[-1][1] <= SESSION_GAP_S:
        return None
    minutes = (base[-1][1] - base[0][0]) / 60
    return (
        f"the {len(baselines)} baseline runs ran back to back (one session of "
        f"{minutes:.0f} min, no gap over {SESSION_GAP_S // 60} min): their spread shows "
        "the drift within a session, not between sessions, so the verdict assumes a "
        f"between-run drift of {v.ASSUMED_DRIFT:.0%} as with one baseline; record "
        "baselines in separate sessions (a CI history), or use `bench ab`"
    )


# --- several runs ----------------------------------------------------------------------


@dataclass
class Failures:
    """Failed units of one group, pooled over the baseline runs, against the current
    run's: one-sided Fisher exact test (bench.judge.verdict.failure_test, as `bench ab`)."""

    baseline: int
    baseline_units: int
    current: int
    current_units: int
    p: float
    p_holm: float = 1.0
    regression: bool = False

    def why(self) -> str:
        counts = (
            f"{self.current} of {self.current_units} instances failed in the current run "
            f"against {self.baseline} of {self.baseline_units} in the baseline runs (a step "
            f"lost whole counted once; Fisher exact, one-sided, p (Holm) = {self.p_holm:.2g})"
        )
        if self.regression:
            return (
                f"{counts}: a regression whatever the ready times of the others (an "
                "instance that never becomes ready is worse than any slow-down); see their "
                "errors in samples.jsonl"
            )
        if self.current_units and self.current / self.current_units > (
            self.baseline / self.baseline_units if self.baseline_units else 0.0
        ):
            return f"{counts}: not significant, no verdict from failures"
        return "no larger share of failures than the baseline runs"


@dataclass
class GroupComparison:
    """One (platform, N) of the current run, against the baseline runs that have it."""

    platform: str
    n: int
    kind: str | None
    baseline_runs: int  # baseline runs with at least one ready sample in the group
    baseline_samples: int
    current_samples: int
    baseline_failures: int
    current_failures: int
    test: v.Test | None  # None: no ready sample on one side
    p_slower_adjusted: float | None  # Holm over the groups
    verdict: str
    baseline_geomean: float | None = None  # exp(mean of the baseline runs' levels)
    current_geomean: float | None = None
    advice: str | None = None  # why inconclusive, and what would make it conclusive
    failures: Failures | None = None
    fired: list[str] = field(default_factory=list)  # "time", "failures"
    drift_assumed: bool = False  # one baseline, or baselines of one session
    design_var: float = 0.0  # variance added for a current run of fewer steps
    unusable: int = 0  # ok samples without a usable value, all runs

    @property
    def method(self) -> str:
        if self.test is None:
            return "-"
        if self.baseline_runs == 1:
            return f"one baseline, drift assumed {v.ASSUMED_DRIFT:.0%}"
        if self.drift_assumed:
            return f"{self.baseline_runs} baseline runs of one session, drift assumed"
        return f"{self.baseline_runs} baseline runs"

    @property
    def label(self) -> str:
        if self.verdict == REGRESSION:
            return f"**REGRESSION ({', '.join(self.fired)})**"
        return self.verdict


@dataclass
class Comparison:
    baselines: list[str]
    current: str
    metric: str
    threshold: float
    alpha: float
    groups: list[GroupComparison]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[GroupComparison]:
        return [g for g in self.groups if g.verdict == REGRESSION]

    @property
    def inconclusive(self) -> list[GroupComparison]:
        return [g for g in self.groups if g.verdict == INCONCLUSIVE]

    @property
    def exit_code(self) -> ExitCode:
        """1 on any regression; else 6 when a group could not be decided; else 0."""
        if self.regressions:
            return ExitCode.REGRESSION
        if self.inconclusive:
            return ExitCode.INCONCLUSIVE
        return ExitCode.OK

    def inconclusive_message(self) -> str:
        """One line for stderr: the Markdown already gives each group's advice."""
        groups = ", ".join(f"{g.platform} N={g.n}" for g in self.inconclusive)
        tested = [g for g in self.inconclusive if g.test is not None]
        if tested and all(g.drift_assumed for g in tested):
            more = (
                "pass several baseline runs recorded in separate sessions, or use `bench ab` "
                "for a side-by-side change"
            )
        else:
            more = "pass more baseline runs (the table's notes say how many)"
        return f"{len(self.inconclusive)} group(s) inconclusive ({groups}): {more}"

    def limits(self) -> str:
        """What this comparison can and cannot see, beside its verdict."""
        mdes = [g.test.mde for g in self.groups if g.test is not None]
        best = v.pct(min(mdes)) if mdes else "n/a"
        return (
            f"Limits: a run against a few others detects, at {v.POWER:.0%} power, only a "
            f"slow-down above the MDE column (here {best} at best): run-to-run drift hides "
            "smaller ones, and under 7% drift a +20% slow-down is inconclusive most of the "
            "time with 1 to 5 baselines (benchmarks/results.md). For a change you can run "
            "side by side use `bench ab` (paired steps cancel the drift); for a CI job's "
            "series of runs, `bench history`."
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "baselines": self.baselines,
            "current": self.current,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "power": v.POWER,
            "regression_fraction": v.REGRESSION_FRACTION,
            "test": (
                "runs as the unit: current run's mean log value against the baseline runs' "
                "(t prediction test; one baseline or baselines of one session: z test with "
                f"an assumed between-run drift of {v.ASSUMED_DRIFT:.0%}; a current run of "
                "fewer steps: its extra within-run variance added), one-sided, Holm over "
                "groups; failures: Fisher exact, one-sided, Holm over groups"
            ),
            "ci": (
                "ci_low: one-sided lower bound of the change at the group's Holm level "
                "(`level`), above 0 exactly when p_slower_holm < alpha; ci_high: the "
                "matching upper bound"
            ),
            "regressions": len(self.regressions),
            "inconclusive": len(self.inconclusive),
            "exit_code": int(self.exit_code),
            "limits": self.limits(),
            "warnings": self.warnings,
            "groups": [_group_dict(g) for g in self.groups],
        }


def compare_runs(
    baselines: Run | Sequence[Run],
    current: Run,
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare `current` (a `bench.model.results.Run`) with one or several baseline runs,
    (platform, N) by (platform, N) of the current run."""
    base_runs = _check_inputs(baselines, current, metric, threshold, alpha)
    base_groups = [sample_groups(r.samples) for r in base_runs]
    cur_groups = sample_groups(current.samples)
    common = _common_groups(current, base_groups, cur_groups)
    session = one_session(base_runs, current)
    rows = [_group_levels(key, base_groups, cur_groups[key], metric, session) for key in common]
    fails = _failure_tests(rows, alpha)
    holm = _holm_per_group(rows, alpha)
    alpha_each = alpha / len(common)
    ids = [r.run_id for r in base_runs]
    result = Comparison(ids, current.run_id, metric, threshold, alpha, groups=[])
    for row, fail, p in zip(rows, fails, holm, strict=True):
        kind = cast("str | None", cur_groups[row.key][0].get("kind"))
        result.groups.append(_judge_group(row, fail, p, kind, threshold, alpha, alpha_each))
    result.warnings = run_warnings(base_runs, current, common, base_groups, cur_groups, metric)
    if session is not None:
        result.warnings.insert(0, session)
    result.warnings += _fewer_steps_warnings(rows)
    return result


def _check_inputs(
    baselines: Run | Sequence[Run], current: Run, metric: str, threshold: float, alpha: float
) -> list[Run]:
    """The baseline runs as a list, once refused what cannot be compared: none, a bad
    alpha or threshold, the current run among them, one given twice, an unknown metric."""
    base_runs = list(baselines) if isinstance(baselines, Sequence) else [baselines]
    if not base_runs:
        raise UsageError("give at least one baseline run before the current one")
    check_alpha(alpha)
    if threshold < 0:
        raise UsageError(f"--threshold {threshold:.0%}: use a percentage of zero or more")
    ids = [r.run_id for r in base_runs]
    if current.run_id in ids:
        raise UsageError(
            f"run {current.run_id} is both a baseline and the current run: compare a new "
            "run against the ones before it"
        )
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UsageError(
            f"baseline run {', '.join(dupes)} given more than once: a repeated run would "
            "fake a run-to-run spread of zero"
        )
    check_metric(metric, [s for r in [*base_runs, current] for s in r.samples])
    return base_runs


def _common_groups(
    current: Run, base_groups: list[Groups], cur_groups: Groups
) -> list[tuple[str, int]]:
    """The current run's (platform, N) that some baseline run has too; none is an error."""
    common = [k for k in cur_groups if any(k in g for g in base_groups)]
    if not common:
        raise UsageError(
            f"{current.run_id} has no (platform, N) in common with the baseline run(s) "
            f"(baseline: {_keys({k: 0 for g in base_groups for k in g})}; current: "
            f"{_keys(cur_groups)}): compare runs of the same scenario"
        )
    return common


@dataclass
class _GroupLevels:
    """One (platform, N): each baseline run's level, the current run's, and the test of
    the difference (None: no ready sample on one side)."""

    key: tuple[str, int]
    levels: list[Level]  # of every baseline run that has the group
    cur: Level
    test: v.LevelTest | None
    added: float  # variance added for a current run of fewer steps (_design_var)

    @property
    def have(self) -> list[Level]:
        """The baseline levels with a usable value."""
        return [lv for lv in self.levels if lv.mean_log is not None]


def _group_levels(
    key: tuple[str, int],
    base_groups: list[Groups],
    cur_rows: list[SampleRow],
    metric: str,
    session: str | None,
) -> _GroupLevels:
    levels = [level_of(g[key], metric) for g in base_groups if key in g]
    cur = level_of(cur_rows, metric)
    have = [lv for lv in levels if lv.mean_log is not None]
    logs = [lv.mean_log for lv in have if lv.mean_log is not None]  # have's, typed float
    lt, added = None, 0.0
    if cur.mean_log is not None and have:
        k = len(have)
        diff = cur.mean_log - sum(logs) / k
        var_cur, var_base = _design_var(have, cur)
        if k == 1:
            # One run cannot show the drift: assumed, for the baseline and the current.
            scale = math.sqrt(2 * v.ASSUMED_DRIFT**2 + var_cur + var_base)
            lt = v.LevelTest(1, diff, scale, None, v.ASSUMED_DRIFT)
        else:
            s = _sd(logs)
            # The baselines' spread includes their own within-run error; a current
            # run with fewer steps (a larger error) gets the difference on top.
            added = max(0.0, var_cur - var_base)
            within = s**2 * (1 + 1 / k) + added
            if session is not None:
                # The shared session's level is one draw of the between-run drift
                # that the spread cannot show: assumed, for it and the current run.
                scale = math.sqrt(2 * v.ASSUMED_DRIFT**2 + within)
                lt = v.LevelTest(k, diff, scale, None, v.ASSUMED_DRIFT)
            else:
                lt = v.LevelTest(k, diff, math.sqrt(within), k - 1, s)
    return _GroupLevels(key, levels, cur, lt, added)


def _failure_tests(rows: list[_GroupLevels], alpha: float) -> list[Failures]:
    """Each group's failures test (current run against the baselines pooled), Holm over
    the groups."""
    fails = []
    for row in rows:
        levels, cur = row.levels, row.cur
        bf, bu = sum(lv.failed_units for lv in levels), sum(lv.units for lv in levels)
        fails.append(
            Failures(
                bf,
                bu,
                cur.failed_units,
                cur.units,
                v.failure_test(cur.failed_units, cur.units, bf, bu),
            )
        )
    for f, p in zip(fails, v.holm([f.p for f in fails]), strict=True):
        f.p_holm, f.regression = p, p < alpha
    return fails


def _holm_per_group(
    rows: list[_GroupLevels], alpha: float
) -> list[tuple[float, float, float] | None]:
    """Per group: (p slower, p faster) Holm-adjusted over the tested groups, and the
    level its p is judged at; None for a group without a test."""
    tested = [row.test for row in rows if row.test is not None]
    p_slower = [t.p_slower for t in tested]
    adj_slower = iter(v.holm(p_slower))
    adj_faster = iter(v.holm([t.p_faster for t in tested]))
    holm_level = iter(v.holm_levels(p_slower, alpha))
    return [
        None if row.test is None else (next(adj_slower), next(adj_faster), next(holm_level))
        for row in rows
    ]


def _judge_group(
    row: _GroupLevels,
    fail: Failures,
    holm: tuple[float, float, float] | None,
    kind: str | None,
    threshold: float,
    alpha: float,
    alpha_each: float,
) -> GroupComparison:
    """One group's verdict: its times, then its failures, which make a regression
    whatever the times say."""
    levels, cur, lt = row.levels, row.cur, row.test
    have = row.have
    logs = [lv.mean_log for lv in have if lv.mean_log is not None]
    p_s = None
    test = None
    if lt is None or holm is None:
        decision = INCONCLUSIVE
    else:
        p_s, p_f, level = holm
        test = lt.as_test(level, alpha_each, v.REGRESSION_FRACTION * threshold)
        decision = v.decide(test, threshold, alpha, p_slower=p_s, p_faster=p_f)
    g = GroupComparison(
        platform=row.key[0],
        n=row.key[1],
        kind=kind,
        baseline_runs=len(have),
        baseline_samples=sum(lv.samples for lv in levels),
        current_samples=cur.samples,
        baseline_failures=sum(lv.failures for lv in levels),
        current_failures=cur.failures,
        test=test,
        p_slower_adjusted=p_s,
        verdict=decision,
        baseline_geomean=math.exp(sum(logs) / len(logs)) if have else None,
        current_geomean=math.exp(cur.mean_log) if cur.mean_log is not None else None,
        failures=fail,
        drift_assumed=lt is not None and lt.df is None,
        design_var=row.added,
        unusable=sum(lv.unusable for lv in [*levels, cur]),
    )
    if decision == REGRESSION:
        g.fired.append("time")
    if fail.regression:
        g.verdict = REGRESSION
        g.fired.append("failures")
        g.advice = fail.why()
    elif decision == INCONCLUSIVE:
        g.advice = _advice(g, threshold, alpha_each)
    return g


def _fewer_steps_warnings(rows: list[_GroupLevels]) -> list[str]:
    """A current run of clearly fewer steps than every baseline run: said, per group."""
    out = []
    for row in rows:
        steps = [lv.steps for lv in row.have]
        if row.added > 0 and steps and row.cur.steps < 0.9 * min(steps):
            out.append(
                f"{row.key[0]} N={row.key[1]}: the current run has {row.cur.steps} step(s) "
                f"against {min(steps)} or more in each baseline run (another repeat count?): "
                "its level is less precise than theirs, and the test allows for it; runs of "
                "one design compare best"
            )
    return out


def _advice(g: GroupComparison, threshold: float, alpha_each: float) -> str:
    t = g.test
    if t is None:
        side = "the current run" if g.current_samples == 0 else "any baseline run"
        what = "ready sample" if not g.unusable else "ready sample with a usable value"
        return f"no {what} in {side}: nothing to compare"
    if g.baseline_runs == 1:
        return (
            "one baseline run cannot show the run-to-run drift; assuming "
            f"{v.ASSUMED_DRIFT:.0%} per run, a slow-down below {v.pct(t.mde)} cannot be told "
            "from drift. Pass several baseline runs (a CI history), or use `bench ab` for a "
            "change you can run side by side"
        )
    if g.drift_assumed:
        return (
            f"{g.baseline_runs} baseline runs of one session cannot show the drift between "
            f"sessions; assuming {v.ASSUMED_DRIFT:.0%} per run, a slow-down below "
            f"{v.pct(t.mde)} cannot be told from drift. Pass baseline runs recorded in "
            "separate sessions (a CI history), or use `bench ab`"
        )
    floor = v.REGRESSION_FRACTION * threshold
    need = v.runs_needed(t.spread, threshold, alpha_each, floor=floor, added=g.design_var)
    more = (
        f"about {need} baseline runs would make it conclusive"
        if need is not None
        else f"no number of baseline runs would: a run-to-run spread of {t.spread:.1%} "
        f"hides a {threshold:.0%} change; use `bench ab` (paired, on one host)"
    )
    return (
        f"with {g.baseline_runs} baseline runs spread by {t.spread:.1%}, the smallest "
        f"detectable slow-down is {v.pct(t.mde)}, above {threshold:.0%}: {more}"
    )


def run_warnings(
    baselines: list[Run],
    current: Run,
    common: list[tuple[str, int]],
    base_groups: list[dict[tuple[str, int], list[SampleRow]]],
    cur_groups: dict[tuple[str, int], list[SampleRow]],
    metric: str = DEFAULT_METRIC,
) -> list[str]:
    """What makes the runs less than like for like, each with what to do about it."""
    platforms = list(dict.fromkeys(p for p, _ in common))
    accels = [{p: _accels(g, p) for p in platforms} for g in [*base_groups, cur_groups]]
    metas = [r.metadata for r in [*baselines, current]]
    out = comparability.warnings(comparability.mismatches(metas, platforms, accels))
    labelled = [("baseline", r) for r in baselines] + [("current", current)]
    for label, run in labelled:
        # The load when the run started: what else the host was doing. (Loads during
        # steps include the run's own instances, so they say nothing about the host.)
        host = comparability.host_facts(run.metadata)
        load, cores = number(host.get("load_avg_1m")), number(host.get("cpu_cores")) or 1
        if load is not None and load > cores:
            out.append(
                f"{label} run {run.run_id}: the host was busy when it started (load "
                f"{load:.1f} on {cores} cores): its timings may be inflated; run the gate "
                "on an otherwise idle host"
            )
        if run.status != "complete":
            out.append(
                f"{label} run {run.run_id} is {run.status}: some steps may be missing; "
                "re-run it to completion for a fair comparison"
            )
    for (label, run), groups in zip(labelled, [*base_groups, cur_groups], strict=True):
        failed = [(k, sum(1 for s in groups.get(k, []) if not s.get("ok"))) for k in common]
        failed = [(k, f) for k, f in failed if f]
        if failed:
            where = ", ".join(f"{p} N={n}: {f}" for (p, n), f in failed)
            who = label if len(baselines) == 1 or label == "current" else f"{label} {run.run_id}"
            out.append(
                f"{who} has failed instances ({where}): left out of the timing test, "
                "counted by the failures test; look at their errors in samples.jsonl"
            )
        # Nothing dropped silently: an ok sample without a usable value is named.
        unusable = [(k, [s for s in groups.get(k, []) if _unusable(s, metric)]) for k in common]
        unusable = [(k, ss) for k, ss in unusable if ss]
        if unusable:
            who = label if len(baselines) == 1 or label == "current" else f"{label} {run.run_id}"
            where = ", ".join(f"{p} N={n}: {len(ss)}" for (p, n), ss in unusable)
            steps = sorted(
                {
                    cast(int, s["step"])
                    for _, ss in unusable
                    for s in ss
                    if s.get("step") is not None
                }
            )
            at = f"; steps {', '.join(map(str, steps[:5]))}{', ...' if len(steps) > 5 else ''}"
            out.append(
                f"{who} has ok samples with no usable {metric} (null, NaN or not above 0; "
                f"{where}{at if steps else ''}): left out of the statistics"
            )
    return out


def sample_groups(samples: Sequence[SampleRow]) -> Groups:
    """Samples by (platform, N). Never pooled across hosts: a platform a run measured
    on several hosts (`bench run --host A --host B`) is one group per host, named
    platform@host, matched with the same host's group in the other runs."""
    hosts: dict[str, set[object]] = {}
    for s in samples:
        hosts.setdefault(cast(str, s["platform"]), set()).add(s.get("host"))
    out: Groups = {}
    for s in samples:
        name = cast(str, s["platform"])
        if len(hosts[name]) > 1:
            name = f"{name}@{s.get('host')}"
        out.setdefault((name, cast(int, s["n"])), []).append(s)
    # Platforms in the order they ran, N ascending within each.
    order = {p: i for i, p in enumerate(dict.fromkeys(p for p, _ in out))}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))


def _keys(groups: Mapping[tuple[str, int], object]) -> str:
    return ", ".join(f"{p} N={n}" for p, n in groups) or "no samples"


def _unusable(s: SampleRow, metric: str) -> bool:
    x = s.get(metric)
    return bool(s.get("ok")) and not (_is_number(x) and math.isfinite(x) and x > 0)


def _is_number(x: object) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _nan0(x: float) -> float:
    return 0.0 if not math.isfinite(x) else x


def _sd(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _accels(groups: Groups, platform: str) -> list[str]:
    """The accels the platform's samples report (a VM may fall back from KVM to TCG)."""
    found = {
        cast("str | None", s.get("accel"))
        for (p, _), ss in groups.items()
        if p == platform
        for s in ss
    }
    return sorted(a for a in found if a)


def _group_dict(g: GroupComparison) -> dict[str, object]:
    t, f = g.test, g.failures
    return {
        "platform": g.platform,
        "n": g.n,
        "kind": g.kind,
        "method": g.method,
        "baseline_runs": g.baseline_runs,
        "baseline_samples": g.baseline_samples,
        "current_samples": g.current_samples,
        "baseline_failures": g.baseline_failures,
        "current_failures": g.current_failures,
        "unusable_samples": g.unusable,
        "baseline_geomean": g.baseline_geomean,
        "current_geomean": g.current_geomean,
        "change": t.change if t else None,
        "ci_low": t.ci_low if t else None,
        "ci_high": t.ci_high if t else None,
        "level": t.alpha if t else None,
        "run_spread": t.spread if t else None,
        "spread_assumed": g.drift_assumed,
        "design_variance_added": g.design_var,
        "mde": t.mde if t else None,
        "p_slower": t.p_slower if t else None,
        "p_slower_holm": g.p_slower_adjusted,
        "verdict": g.verdict,
        "fired": g.fired,
        "failures": None
        if f is None
        else {
            "baseline": f.baseline,
            "baseline_units": f.baseline_units,
            "current": f.current,
            "current_units": f.current_units,
            "p": f.p,
            "p_holm": f.p_holm,
            "regression": f.regression,
            "why": f.why(),
        },
        "advice": g.advice,
    }
