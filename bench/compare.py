"""`bench compare`: did a metric get significantly worse between two stored runs?

Two layers:
- pure statistics on lists of floats (`shift_test`, `verdict`, `min_samples`), testable
  without files or engines;
- `compare_runs`, which groups two runs' successful samples by (platform, N), applies
  the statistics to each group and collects the warnings a reader needs (different
  hosts, engine versions, accel, failed instances).

The test is Mann-Whitney U, one-sided ("current greater than baseline"): the gate asks
one directional question, "did it get slower?". A two-sided test at the same alpha
spends half of it on speed-ups, which never fail a build, so it detects fewer real
slow-downs at the same false-alarm rate. Speed-ups are labelled with the mirrored
one-sided test, which never changes the exit code. A regression needs both: p < alpha
AND a change of the medians above the threshold, so a tiny but very consistent
slow-down does not fail CI, and a large but noisy one does not either.

The confidence interval of the relative change of medians is a percentile bootstrap
(seeded, so the same runs always print the same interval) at level 1 - alpha.

Caveat: the N instances of one step start together and share contention, so samples
from one step are not fully independent; prefer several repeats of small N to one
large N when the aim is a regression gate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import comparability
from bench.errors import ExitCode, UsageError
from bench.records import Sample, metrics, unit_of

DEFAULT_ALPHA = 0.01
DEFAULT_THRESHOLD = 0.10
DEFAULT_METRIC = "ready_s"
BOOTSTRAP_RESAMPLES = 4000
# Enough samples per run to detect a ~10% shift of a typical container start reliably.
RECOMMENDED_SAMPLES = 20

REGRESSION = "regression"
IMPROVEMENT = "improvement"
WITHIN_THRESHOLD = "within threshold"
NO_CHANGE = "no significant change"
TOO_FEW = "too few samples"

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


# --- pure statistics -------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """How `current` moved against `baseline`: medians, relative change, CI, p-values."""

    n_baseline: int
    n_current: int
    baseline_median: float
    current_median: float
    change: float  # current_median / baseline_median - 1 (0.3 = 30% slower)
    ci_low: float  # bootstrap interval of `change`, level 1 - alpha
    ci_high: float
    p_slower: float  # one-sided Mann-Whitney U: current tends to be greater
    p_faster: float  # the mirrored test: current tends to be smaller


def parse_threshold(text: str) -> float:
    """A fraction from "10%" (the percent sign is required: 0.1 vs 10 is too easy to mix up)."""
    m = _PERCENT_RE.match(text)
    if not m:
        raise UsageError(f"--threshold {text!r}: write a percentage such as 10%")
    return float(m.group(1)) / 100


def min_samples(alpha: float) -> int:
    """Fewest samples per run with which the one-sided test can reach p < alpha at all.

    With n samples on each side and no ties, the smallest p-value Mann-Whitney U can
    give is 1 / C(2n, n) (every current sample above every baseline sample).
    """
    check_alpha(alpha)
    n = 1
    while 1 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha {alpha}: use a probability between 0 and 1, e.g. 0.01")


def shift_test(
    baseline: Sequence[float],
    current: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Shift:
    """Compare two samples of a higher-is-worse metric (times, bytes)."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    b = np.asarray(baseline, dtype=float)
    c = np.asarray(current, dtype=float)
    if len(b) == 0 or len(c) == 0:
        raise ValueError("both samples need at least one value")
    mb, mc = float(np.median(b)), float(np.median(c))
    slower = mannwhitneyu(c, b, alternative="greater")
    faster = mannwhitneyu(c, b, alternative="less")
    low, high = _bootstrap_change(b, c, alpha, resamples, seed)
    return Shift(
        n_baseline=len(b),
        n_current=len(c),
        baseline_median=mb,
        current_median=mc,
        change=_relative(mc, mb),
        ci_low=low,
        ci_high=high,
        p_slower=float(slower.pvalue),
        p_faster=float(faster.pvalue),
    )


def verdict(shift: Shift, threshold: float, alpha: float) -> str:
    """regression, improvement, within threshold (significant but small) or no change."""
    if shift.p_slower < alpha:
        return REGRESSION if shift.change > threshold else WITHIN_THRESHOLD
    if shift.p_faster < alpha:
        return IMPROVEMENT if shift.change < -threshold else WITHIN_THRESHOLD
    return NO_CHANGE


def _relative(new: float, old: float) -> float:
    if old == 0:
        return 0.0 if new == 0 else math.inf
    return new / old - 1


def _bootstrap_change(
    b: Any, c: Any, alpha: float, resamples: int, seed: int
) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    # In chunks, so a run of thousands of samples does not allocate gigabytes.
    chunk = max(1, 2_000_000 // max(len(b), len(c)))
    changes = []
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        mb = np.median(b[rng.integers(0, len(b), (k, len(b)))], axis=1)
        mc = np.median(c[rng.integers(0, len(c), (k, len(c)))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            changes.append(mc / mb - 1)
    all_changes = np.concatenate(changes)
    low, high = np.nanquantile(all_changes, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# --- two runs --------------------------------------------------------------------


@dataclass
class GroupComparison:
    """One (platform, N) present in both runs."""

    platform: str
    n: int
    kind: str | None
    baseline_samples: int  # successful samples with a value of the metric
    current_samples: int
    baseline_failures: int
    current_failures: int
    shift: Shift | None  # None when there are too few samples to decide
    verdict: str


@dataclass
class Comparison:
    baseline: str
    current: str
    metric: str
    threshold: float
    alpha: float
    groups: list[GroupComparison]
    warnings: list[str] = field(default_factory=list)

    @property
    def needed(self) -> int:
        return min_samples(self.alpha)

    @property
    def regressions(self) -> list[GroupComparison]:
        return [g for g in self.groups if g.verdict == REGRESSION]

    @property
    def undecided(self) -> list[GroupComparison]:
        return [g for g in self.groups if g.verdict == TOO_FEW]

    @property
    def exit_code(self) -> ExitCode:
        """1 on any regression; else 2 when a group could not be decided; else 0."""
        if self.regressions:
            return ExitCode.REGRESSION
        if self.undecided:
            return ExitCode.USAGE
        return ExitCode.OK

    def undecided_message(self) -> str:
        parts = [
            f"{g.platform} N={g.n} ({g.baseline_samples} vs {g.current_samples})"
            for g in self.undecided
        ]
        return (
            f"too few successful samples to decide for {', '.join(parts)}: "
            f"at least {self.needed} per run are needed to reach p < {self.alpha:g} "
            f"(≥{RECOMMENDED_SAMPLES} to detect a {self.threshold:.0%} change reliably); "
            "raise `repeat` in the scenario (a step of N gives N samples)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "current": self.current,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "test": "Mann-Whitney U, one-sided (current greater than baseline)",
            "ci": f"percentile bootstrap of the change of medians, {1 - self.alpha:.0%}",
            "min_samples": self.needed,
            "regressions": len(self.regressions),
            "exit_code": int(self.exit_code),
            "warnings": self.warnings,
            "groups": [_group_dict(g) for g in self.groups],
        }

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        from tabulate import tabulate

        fmt = _formatter(self.metric)
        level = f"{1 - self.alpha:.0%}"
        headers = [
            "platform",
            "N",
            "baseline median",
            "current median",
            "change",
            f"{level} CI of change",
            "p (slower)",
            "samples",
            "failures",
            "verdict",
        ]
        rows = []
        for g in self.groups:
            s = g.shift
            rows.append(
                [
                    g.platform,
                    g.n,
                    fmt(s.baseline_median) if s else "-",
                    fmt(s.current_median) if s else "-",
                    _pct(s.change) if s else "-",
                    f"{_pct(s.ci_low)} … {_pct(s.ci_high)}" if s else "-",
                    f"{s.p_slower:.2g}" if s else "-",
                    f"{g.baseline_samples} → {g.current_samples}",
                    f"{g.baseline_failures} → {g.current_failures}",
                    f"**{g.verdict.upper()}**" if g.verdict == REGRESSION else g.verdict,
                ]
            )
        table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
        k = len(self.regressions)
        outcome = f"**{k} regression{'s' if k != 1 else ''}**" if k else "no regression"
        if self.undecided:
            outcome += f" ({len(self.undecided)} undecided: too few samples, at least "
            outcome += f"{self.needed} per run needed)"
        lines = [
            f"### bench compare: `{self.metric}`",
            "",
            f"baseline `{self.baseline}` → current `{self.current}`",
            "",
            table,
            "",
            f"{outcome}: a regression is p < {self.alpha:g} (Mann-Whitney U, one-sided) "
            f"and a median {'slower' if unit_of(self.metric) == 's' else 'larger'} by more "
            f"than {self.threshold:.0%}.",
        ]
        if self.warnings:
            lines += ["", *[f"> warning: {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"


def compare_runs(
    baseline: Any,
    current: Any,
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare two `bench.results.Run`s, (platform, N) by (platform, N)."""
    check_alpha(alpha)
    if threshold < 0:
        raise UsageError(f"--threshold {threshold:.0%}: use a percentage of zero or more")
    _check_metric(metric, baseline.samples + current.samples)
    base_groups = _groups(baseline.samples)
    cur_groups = _groups(current.samples)
    common = [k for k in base_groups if k in cur_groups]
    if not common:
        raise UsageError(
            f"{baseline.run_id} and {current.run_id} have no (platform, N) in common "
            f"(baseline: {_keys(base_groups)}; current: {_keys(cur_groups)}): "
            "compare two runs of the same scenario"
        )
    needed = min_samples(alpha)
    result = Comparison(baseline.run_id, current.run_id, metric, threshold, alpha, groups=[])
    for key in common:
        b_vals, b_fail, kind = _values(base_groups[key], metric)
        c_vals, c_fail, _ = _values(cur_groups[key], metric)
        shift = None
        decision = TOO_FEW
        if len(b_vals) >= needed and len(c_vals) >= needed:
            shift = shift_test(b_vals, c_vals, alpha)
            decision = verdict(shift, threshold, alpha)
        result.groups.append(
            GroupComparison(
                key[0], key[1], kind, len(b_vals), len(c_vals), b_fail, c_fail, shift, decision
            )
        )
    result.warnings = run_warnings(baseline, current, common, base_groups, cur_groups)
    return result


def run_warnings(
    baseline: Any,
    current: Any,
    common: list[tuple[str, int]],
    base_groups: dict[tuple[str, int], list[dict[str, Any]]],
    cur_groups: dict[tuple[str, int], list[dict[str, Any]]],
) -> list[str]:
    """What makes the two runs less than like for like, each with what to do about it."""
    platforms = list(dict.fromkeys(p for p, _ in common))
    accels = (
        {p: _accels(base_groups, p) for p in platforms},
        {p: _accels(cur_groups, p) for p in platforms},
    )
    found = comparability.run_mismatches(baseline.metadata, current.metadata, platforms, accels)
    out = comparability.warnings(found)
    for label, run in (("baseline", baseline), ("current", current)):
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
    for label, groups in (("baseline", base_groups), ("current", cur_groups)):
        failed = [(k, sum(1 for s in groups[k] if not s.get("ok"))) for k in common]
        failed = [(k, f) for k, f in failed if f]
        if failed:
            where = ", ".join(f"{p} N={n}: {f}" for (p, n), f in failed)
            out.append(
                f"{label} has failed instances ({where}): they are left out of the "
                "statistics; look at their errors in samples.jsonl"
            )
    return out


def _groups(samples: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for s in samples:
        out.setdefault((s["platform"], s["n"]), []).append(s)
    # Platforms in the order they ran, N ascending within each.
    order = {p: i for i, p in enumerate(dict.fromkeys(p for p, _ in out))}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))


def _keys(groups: dict[tuple[str, int], Any]) -> str:
    return ", ".join(f"{p} N={n}" for p, n in groups) or "no samples"


def _values(group: list[dict[str, Any]], metric: str) -> tuple[list[float], int, str | None]:
    values = [
        float(s[metric])
        for s in group
        if s.get("ok") and _is_number(s.get(metric)) and math.isfinite(s[metric])
    ]
    failures = sum(1 for s in group if not s.get("ok"))
    return values, failures, group[0].get("kind")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_metric(metric: str, samples: list[dict[str, Any]]) -> None:
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


def _accels(groups: dict[tuple[str, int], Any], platform: str) -> list[str]:
    """The accels the platform's samples report (a VM may fall back from KVM to TCG)."""
    found = {s.get("accel") for (p, _), ss in groups.items() if p == platform for s in ss}
    return sorted(a for a in found if a)


def _group_dict(g: GroupComparison) -> dict[str, Any]:
    s = g.shift
    return {
        "platform": g.platform,
        "n": g.n,
        "kind": g.kind,
        "baseline_samples": g.baseline_samples,
        "current_samples": g.current_samples,
        "baseline_failures": g.baseline_failures,
        "current_failures": g.current_failures,
        "baseline_median": s.baseline_median if s else None,
        "current_median": s.current_median if s else None,
        "change": s.change if s else None,
        "ci_low": s.ci_low if s else None,
        "ci_high": s.ci_high if s else None,
        "p_slower": s.p_slower if s else None,
        "p_faster": s.p_faster if s else None,
        "verdict": g.verdict,
    }


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:+.1%}"


def _formatter(metric: str) -> Any:
    from bench.units import format_bytes, format_seconds

    # More digits than elsewhere: medians a few percent apart must not print the same.
    if metric.endswith("_bytes"):
        return lambda v: format_bytes(v, decimals=2)
    return lambda v: format_seconds(v, digits=4)
