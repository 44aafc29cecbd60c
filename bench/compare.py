"""`bench compare BASELINE... CURRENT`: is the current run slower than its history?

The unit of evidence is a RUN, never an instance. Every sample of a run shares the
host's level of that day (run-to-run drift of several percent on one machine), and the
N instances of a step share contention, so p-values over instance samples are far too
small: instance-level tests gave 20% false alarms once drift was in the model
(issue 10, benchmarks/gate.py). So each run is summarised per (platform, N) by its
mean log value (the mean over its steps of each step's mean log value) and:

- with SEVERAL baseline runs, their spread estimates the run-to-run drift and the
  current run is tested against their distribution (bench.verdict.prediction_test,
  t with runs - 1 degrees of freedom);
- with ONE baseline run, that spread cannot be seen: the change is tested against an
  assumed drift of bench.verdict.ASSUMED_DRIFT per run (drift_test). Only a change
  larger than drift could plausibly make is significant, and the minimum detectable
  effect is large, so at a 10% threshold one baseline gives "inconclusive" (or a
  regression for a gross slow-down), never "no regression". The output says to pass
  several baseline runs, or to use `bench ab` for a change that can run side by side.

Several (platform, N) groups are one family: their p-values are Holm-adjusted (valid
whatever their dependence; groups of a run share its drift), and each group's MDE and
interval are computed at alpha / groups. The verdict rule (regression, inconclusive,
no regression) is bench.verdict.decide, shared with `bench ab`.

Exit code: 1 when any group is a regression; else 6 (inconclusive) when any group
lacks the evidence to rule out a threshold-sized slow-down; else 0. Usage errors
(paths, no common group, a bad --metric) stay 2.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import comparability
from bench import verdict as v
from bench.errors import ExitCode, UsageError
from bench.records import Sample, metrics, unit_of

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


def check_metric(metric: str, samples: list[dict[str, Any]]) -> None:
    """A metric bench.records declares for samples, and that these runs measured."""
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

    samples: int  # ready instances with a value of the metric
    failures: int
    steps: int
    mean_log: float | None  # mean over steps of the step's mean log value
    se: float  # its within-run standard error, steps as the unit


def level_of(rows: list[dict[str, Any]], metric: str) -> Level:
    by_step: dict[Any, list[float]] = {}
    for s in rows:
        x = s.get(metric)
        if s.get("ok") and _is_number(x) and math.isfinite(x) and x > 0:
            # Samples of schema-1 or hand-written runs may lack `step`: (N, repeat) is one.
            key = s.get("step") if s.get("step") is not None else ("r", s.get("repeat", 0))
            by_step.setdefault(key, []).append(math.log(x))
    failures = sum(1 for s in rows if not s.get("ok"))
    samples = sum(len(xs) for xs in by_step.values())
    if not by_step:
        return Level(0, failures, 0, None, math.nan)
    means = [sum(xs) / len(xs) for xs in by_step.values()]
    k = len(means)
    mean = sum(means) / k
    if k >= 2:
        se = _sd(means) / math.sqrt(k)
    else:  # one step: its instances are all there is (they understate the error)
        xs = next(iter(by_step.values()))
        se = _sd(xs) / math.sqrt(len(xs)) if len(xs) >= 2 else 0.0
    return Level(samples, failures, k, mean, se)


# --- several runs ----------------------------------------------------------------------


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

    @property
    def method(self) -> str:
        if self.test is None:
            return "-"
        if self.baseline_runs == 1:
            return f"one baseline, drift assumed {v.ASSUMED_DRIFT:.0%}"
        return f"{self.baseline_runs} baseline runs"


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
        if all(g.baseline_runs == 1 for g in self.inconclusive):
            more = "pass several baseline runs, or use `bench ab` for a side-by-side change"
        else:
            more = "pass more baseline runs (the table's notes say how many)"
        return f"{len(self.inconclusive)} group(s) inconclusive ({groups}): {more}"

    def to_dict(self) -> dict[str, Any]:
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
                "(t prediction test; one baseline: z test with an assumed drift of "
                f"{v.ASSUMED_DRIFT:.0%}), one-sided, Holm-adjusted over groups"
            ),
            "regressions": len(self.regressions),
            "inconclusive": len(self.inconclusive),
            "exit_code": int(self.exit_code),
            "warnings": self.warnings,
            "groups": [_group_dict(g) for g in self.groups],
        }

    def to_json(self) -> str:
        return json.dumps(v.json_ready(self.to_dict()), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        from tabulate import tabulate

        fmt = _formatter(self.metric)
        headers = [
            "platform",
            "N",
            "baseline",
            "current",
            "change",
            "interval",
            "run spread",
            f"MDE ({v.POWER:.0%} power)",
            "p (Holm)",
            "runs",
            "samples",
            "failures",
            "verdict",
        ]
        rows = []
        for g in self.groups:
            t = g.test
            rows.append(
                [
                    g.platform,
                    g.n,
                    fmt(g.baseline_geomean) if g.baseline_geomean else "-",
                    fmt(g.current_geomean) if g.current_geomean else "-",
                    v.pct(t.change) if t else "-",
                    f"{v.pct(t.ci_low)} … {v.pct(t.ci_high)}" if t else "-",
                    (f"{t.spread:.1%}" + (" (assumed)" if g.baseline_runs == 1 else ""))
                    if t
                    else "-",
                    v.pct(t.mde) if t else "-",
                    f"{g.p_slower_adjusted:.2g}" if g.p_slower_adjusted is not None else "-",
                    f"{g.baseline_runs} → 1",
                    f"{g.baseline_samples} → {g.current_samples}",
                    f"{g.baseline_failures} → {g.current_failures}",
                    f"**{g.verdict.upper()}**" if g.verdict == REGRESSION else g.verdict,
                ]
            )
        table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
        k = len(self.regressions)
        outcome = f"**{k} regression{'s' if k != 1 else ''}**" if k else "no regression"
        if self.inconclusive:
            outcome += f" ({len(self.inconclusive)} inconclusive)"
        worse = "slower" if unit_of(self.metric) == "s" else "larger"
        level = 1 - self.alpha / max(1, len(self.groups))
        lines = [
            f"### bench compare: `{self.metric}`",
            "",
            f"{len(self.baselines)} baseline run(s) `{'`, `'.join(self.baselines)}` → "
            f"current `{self.current}`",
            "",
            table,
            "",
            f"{outcome}. Runs are the unit: baseline and current are geometric means; the "
            f"interval is at {level:.1%} (alpha / groups). A regression is p < "
            f"{self.alpha:g} after Holm's correction and a change {worse} than "
            f"{v.REGRESSION_FRACTION:g} × {self.threshold:.0%}; inconclusive when the "
            f"minimum detectable effect is above {self.threshold:.0%}.",
        ]
        for g in self.groups:
            if g.advice:  # why inconclusive, or a regression by failed instances
                lines += ["", f"{g.platform} N={g.n}: {g.advice}"]
        if self.warnings:
            lines += ["", *[f"> warning: {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"


def compare_runs(
    baselines: Any,
    current: Any,
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare `current` (a `bench.results.Run`) with one or several baseline runs,
    (platform, N) by (platform, N) of the current run."""
    base_runs: list[Any] = [baselines] if hasattr(baselines, "samples") else list(baselines)
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
    base_groups = [_groups(r.samples) for r in base_runs]
    cur_groups = _groups(current.samples)
    common = [k for k in cur_groups if any(k in g for g in base_groups)]
    if not common:
        raise UsageError(
            f"{current.run_id} has no (platform, N) in common with the baseline run(s) "
            f"(baseline: {_keys({k: 0 for g in base_groups for k in g})}; current: "
            f"{_keys(cur_groups)}): compare runs of the same scenario"
        )
    alpha_each = alpha / len(common)
    rows: list[tuple[tuple[str, int], list[Level], Level, v.Test | None]] = []
    for key in common:
        levels = [level_of(g[key], metric) for g in base_groups if key in g]
        cur = level_of(cur_groups[key], metric)
        have = [lv for lv in levels if lv.mean_log is not None]
        test = None
        if cur.mean_log is not None and have:
            if len(have) == 1:
                se = math.sqrt(_nan0(have[0].se) ** 2 + _nan0(cur.se) ** 2)
                test = v.drift_test(have[0].mean_log, cur.mean_log, se, alpha_each)
            else:
                test = v.prediction_test([lv.mean_log for lv in have], cur.mean_log, alpha_each)
        rows.append((key, levels, cur, test))
    tested = [t for *_, t in rows if t is not None]
    adj_slower = iter(v.holm([t.p_slower for t in tested]))
    adj_faster = iter(v.holm([t.p_faster for t in tested]))
    result = Comparison(ids, current.run_id, metric, threshold, alpha, groups=[])
    for key, levels, cur, test in rows:
        have = [lv for lv in levels if lv.mean_log is not None]
        p_s = p_f = None
        if test is None:
            decision = INCONCLUSIVE
        else:
            p_s, p_f = next(adj_slower), next(adj_faster)
            decision = v.decide(test, threshold, alpha, p_slower=p_s, p_faster=p_f)
        g = GroupComparison(
            platform=key[0],
            n=key[1],
            kind=cur_groups[key][0].get("kind"),
            baseline_runs=len(have),
            baseline_samples=sum(lv.samples for lv in levels),
            current_samples=cur.samples,
            baseline_failures=sum(lv.failures for lv in levels),
            current_failures=cur.failures,
            test=test,
            p_slower_adjusted=p_s,
            verdict=decision,
            baseline_geomean=math.exp(sum(lv.mean_log for lv in have) / len(have))
            if have
            else None,
            current_geomean=math.exp(cur.mean_log) if cur.mean_log is not None else None,
        )
        if decision == INCONCLUSIVE:
            g.advice = _advice(g, threshold, alpha_each)
        worst = max((_failed_share(lv) for lv in levels), default=0.0)
        if cur.failures and _failed_share(cur) > worst:
            # An instance that never becomes ready is worse than any slow-down.
            g.verdict = REGRESSION
            g.advice = (
                f"{cur.failures} of {cur.failures + cur.samples} instances failed, a larger "
                f"share than in any baseline run ({worst:.0%} at most): a regression whatever "
                "the ready times of the others; see their errors in samples.jsonl"
            )
        result.groups.append(g)
    result.warnings = run_warnings(base_runs, current, common, base_groups, cur_groups)
    return result


def _failed_share(lv: Level) -> float:
    total = lv.failures + lv.samples
    return lv.failures / total if total else 0.0


def _advice(g: GroupComparison, threshold: float, alpha_each: float) -> str:
    t = g.test
    if t is None:
        side = "the current run" if g.current_samples == 0 else "any baseline run"
        return f"no ready sample in {side}: nothing to compare"
    if g.baseline_runs == 1:
        return (
            "one baseline run cannot show the run-to-run drift; assuming "
            f"{v.ASSUMED_DRIFT:.0%} per run, a slow-down below {v.pct(t.mde)} cannot be told "
            "from drift. Pass several baseline runs (a CI history), or use `bench ab` for a "
            "change you can run side by side"
        )
    need = v.runs_needed(t.spread, threshold, alpha_each)
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
    baselines: list[Any],
    current: Any,
    common: list[tuple[str, int]],
    base_groups: list[dict[tuple[str, int], list[dict[str, Any]]]],
    cur_groups: dict[tuple[str, int], list[dict[str, Any]]],
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
        load, cores = host.get("load_avg_1m"), host.get("cpu_cores") or 1
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
                f"{who} has failed instances ({where}): they are left out of the "
                "statistics; look at their errors in samples.jsonl"
            )
    return out


def _groups(samples: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Samples by (platform, N). Never pooled across hosts: a platform a run measured
    on several hosts (`bench run --host A --host B`) is one group per host, named
    platform@host, matched with the same host's group in the other runs."""
    hosts: dict[str, set[Any]] = {}
    for s in samples:
        hosts.setdefault(s["platform"], set()).add(s.get("host"))
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for s in samples:
        name = s["platform"]
        if len(hosts[name]) > 1:
            name = f"{name}@{s.get('host')}"
        out.setdefault((name, s["n"]), []).append(s)
    # Platforms in the order they ran, N ascending within each.
    order = {p: i for i, p in enumerate(dict.fromkeys(p for p, _ in out))}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))


def _keys(groups: dict[tuple[str, int], Any]) -> str:
    return ", ".join(f"{p} N={n}" for p, n in groups) or "no samples"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _nan0(x: float) -> float:
    return 0.0 if not math.isfinite(x) else x


def _sd(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _accels(groups: dict[tuple[str, int], Any], platform: str) -> list[str]:
    """The accels the platform's samples report (a VM may fall back from KVM to TCG)."""
    found = {s.get("accel") for (p, _), ss in groups.items() if p == platform for s in ss}
    return sorted(a for a in found if a)


def _group_dict(g: GroupComparison) -> dict[str, Any]:
    t = g.test
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
        "baseline_geomean": g.baseline_geomean,
        "current_geomean": g.current_geomean,
        "change": t.change if t else None,
        "ci_low": t.ci_low if t else None,
        "ci_high": t.ci_high if t else None,
        "run_spread": t.spread if t else None,
        "spread_assumed": g.baseline_runs == 1,
        "mde": t.mde if t else None,
        "p_slower": t.p_slower if t else None,
        "p_slower_holm": g.p_slower_adjusted,
        "verdict": g.verdict,
        "advice": g.advice,
    }


def _formatter(metric: str) -> Any:
    from bench.units import format_bytes, format_seconds

    # More digits than elsewhere: levels a few percent apart must not print the same.
    unit = unit_of(metric)
    if unit == "bytes":
        return lambda x: format_bytes(x, decimals=2)
    if unit == "s":
        return lambda x: format_seconds(x, digits=4)
    return lambda x: f"{x:.4g} {unit or ''}".rstrip()
