"""The analysis of an A/B run (`bench ab`, `bench ab --analyse RUN_DIR`): step pairs,
one paired test over all of them, a verdict with an exit code.

Which steps pair up is stored in the run's metadata, written by the ab runner:

    metadata["ab"] = {
        "baseline": "A",            # platform name of the baseline (A)
        "candidate": "B",           # platform name of the candidate (B)
        "pairs": [[0, 1], [3, 2]],  # [baseline step, candidate step] (Sample.step /
                                    # StepRecord.step), in the order they ran; the
                                    # execution order within a pair is the step order
    }

Without "pairs" (a plain run of two platforms), a baseline step pairs with the
candidate step of the same (N, repeat). The unit of analysis is the pair; see
bench.verdict for the statistics and the verdict rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import verdict as v
from bench.errors import ExitCode, UsageError


@dataclass(frozen=True)
class Pair:
    n: int
    baseline_step: int | None
    candidate_step: int | None
    baseline_values: tuple[float, ...]  # the metric of the step's ready instances
    candidate_values: tuple[float, ...]

    @property
    def log_ratio(self) -> float | None:
        """mean(log B) - mean(log A); None when a side has no ready instance."""
        if not self.baseline_values or not self.candidate_values:
            return None
        return _mean_log(self.candidate_values) - _mean_log(self.baseline_values)


@dataclass
class AbResult:
    run_id: str
    baseline: str
    candidate: str
    metric: str
    threshold: float
    alpha: float
    pairs: list[Pair]
    test: v.Test
    verdict: str
    extra_pairs: int | None  # more pairs for a conclusive run (None: unknown or none)
    counts: list[int]  # the N values the pairs cover
    warnings: list[str] = field(default_factory=list)
    # Failed instances in the paired steps: (baseline, candidate). A candidate that
    # fails more instances is a regression whatever its ready times say.
    failures: tuple[int, int] = (0, 0)

    @property
    def used(self) -> list[Pair]:
        return [p for p in self.pairs if p.log_ratio is not None]

    @property
    def exit_code(self) -> ExitCode:
        if self.verdict == v.REGRESSION:
            return ExitCode.REGRESSION
        if self.verdict == v.INCONCLUSIVE:
            return ExitCode.INCONCLUSIVE
        return ExitCode.OK

    @property
    def extra_repeats(self) -> int | None:
        """More repeats of the scenario: each repeat gives one pair per N."""
        if self.extra_pairs is None:
            return None
        return math.ceil(self.extra_pairs / max(1, len(self.counts)))

    def advice(self) -> str | None:
        """Why the run is inconclusive and what would make it conclusive."""
        if self.verdict != v.INCONCLUSIVE:
            return None
        t = self.test
        if len(self.used) < v.MIN_PAIRS:
            why = f"only {len(self.used)} usable pairs (at least {v.MIN_PAIRS} needed)"
        else:
            why = (
                f"the smallest slow-down these {t.n} pairs can detect ({v.pct(t.mde)} at "
                f"{v.POWER:.0%} power) is above the {self.threshold:.0%} threshold"
            )
        if self.extra_repeats is None:
            more = "raise `repeat` in the scenario (the pairs' spread is unknown or too large)"
        else:
            more = (
                f"about {self.extra_pairs} more pairs would make it conclusive: raise "
                f"`repeat` by {self.extra_repeats} ({len(self.counts)} pair(s) per repeat)"
            )
        return f"inconclusive: {why}; {more}"

    def failure_verdict(self) -> str:
        fa, fb = self.failures
        return (
            f"**regression:** {self.candidate} failed {fb} instance(s) in the paired steps "
            f"against {fa} for {self.baseline}: an instance that never becomes ready is "
            "worse than any slow-down, whatever the ready times of the others"
        )

    def to_dict(self) -> dict[str, Any]:
        t = self.test
        per_n = {}
        for n in self.counts:
            ds = [p.log_ratio for p in self.used if p.n == n]
            per_n[str(n)] = {
                "pairs": len(ds),
                "change": v.relative(sum(ds) / len(ds)) if ds else None,
            }
        return {
            "run_id": self.run_id,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "power": v.POWER,
            "regression_fraction": v.REGRESSION_FRACTION,
            "test": "paired t-test, one-sided, unit = step pair (mean log B - mean log A)",
            "ci": f"pair-level percentile bootstrap of the change, {1 - self.alpha:.0%}",
            "pairs": t.n,
            "pairs_dropped": len(self.pairs) - len(self.used),
            "change": t.change,
            "ci_low": t.ci_low,
            "ci_high": t.ci_high,
            "p_slower": t.p_slower,
            "p_faster": t.p_faster,
            "pair_sd_log": t.spread,
            "mde": t.mde,
            "verdict": self.verdict,
            "extra_pairs": self.extra_pairs if self.verdict == v.INCONCLUSIVE else None,
            "extra_repeats": self.extra_repeats if self.verdict == v.INCONCLUSIVE else None,
            "exit_code": int(self.exit_code),
            "failures": {"baseline": self.failures[0], "candidate": self.failures[1]},
            "per_n": per_n,
            "warnings": self.warnings,
        }

    def to_json(self) -> str:
        return json.dumps(v.json_ready(self.to_dict()), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        from tabulate import tabulate

        t = self.test
        level = f"{1 - self.alpha:.0%}"
        rows = [
            [
                f"{self.candidate} vs {self.baseline}",
                ", ".join(str(n) for n in self.counts),
                t.n,
                v.pct(t.change),
                f"{v.pct(t.ci_low)} … {v.pct(t.ci_high)}",
                f"{t.p_slower:.2g}",
                v.pct(t.mde),
                f"**{self.verdict.upper()}**" if self.verdict == v.REGRESSION else self.verdict,
            ]
        ]
        headers = ["candidate vs baseline", "N", "pairs", "change", f"{level} CI", "p (slower)"]
        headers += [f"MDE ({v.POWER:.0%} power)", "verdict"]
        table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
        lines = [
            f"### bench ab: `{self.metric}`",
            "",
            f"run `{self.run_id}`: candidate `{self.candidate}`, baseline `{self.baseline}`",
            "",
            table,
            "",
            f"A regression is p < {self.alpha:g} (paired t-test over step pairs, one-sided) "
            f"and a change above {v.REGRESSION_FRACTION:g} × {self.threshold:.0%}; "
            f"inconclusive when the MDE is above {self.threshold:.0%} or there are fewer "
            f"than {v.MIN_PAIRS} pairs.",
        ]
        if self.failures[1] > self.failures[0]:
            lines += ["", self.failure_verdict()]
        if (advice := self.advice()) is not None:
            lines += ["", advice]
        if self.warnings:
            lines += ["", *[f"> warning: {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"


def analyse_ab(
    run: Any,
    threshold: float = v.DEFAULT_THRESHOLD,
    alpha: float = v.DEFAULT_ALPHA,
    metric: str = "ready_s",
    baseline: str | None = None,
    candidate: str | None = None,
) -> AbResult:
    """The verdict on a stored A/B run (a `bench.results.Run`).

    `baseline`/`candidate` default to metadata["ab"]; given, they also let a plain run
    of two platforms be analysed (pairs by (N, repeat))."""
    from bench.compare import check_alpha, check_metric

    check_alpha(alpha)
    if threshold < 0:
        raise UsageError(f"--threshold {threshold:.0%}: use a percentage of zero or more")
    check_metric(metric, run.samples)
    spec = dict(run.metadata.get("ab") or {})
    a = baseline or spec.get("baseline")
    b = candidate or spec.get("candidate")
    if not a or not b:
        raise UsageError(
            f"{run.run_id}: not an A/B run (no metadata 'ab'): name its --baseline and "
            "--candidate platforms"
        )
    platforms = {s["platform"] for s in run.samples}
    for role, name in (("baseline", a), ("candidate", b)):
        if name not in platforms:
            raise UsageError(
                f"{run.run_id}: {role} platform {name!r} has no samples "
                f"(platforms: {', '.join(sorted(platforms)) or 'none'})"
            )
    pairs = (
        _stored_pairs(run, spec["pairs"], a, b, metric)
        if spec.get("pairs") and a == spec.get("baseline") and b == spec.get("candidate")
        else _pairs_by_repeat(run, a, b, metric)
    )
    if not pairs:
        raise UsageError(f"{run.run_id}: no step of {a!r} pairs with a step of {b!r}")
    ratios = [p.log_ratio for p in pairs if p.log_ratio is not None]
    test = v.paired_test(ratios, alpha)
    enough = len(ratios) >= v.MIN_PAIRS
    decision = v.decide(test, threshold, alpha, enough=enough)
    failures = _failures(run, pairs)
    if failures[1] > failures[0]:
        decision = v.REGRESSION
    needed = v.pairs_needed(test.spread, threshold, alpha) if len(ratios) >= 2 else None
    if needed is None and len(ratios) < 2:
        needed = v.MIN_PAIRS
    extra = max(needed - len(ratios), 1) if needed else None
    counts = sorted({p.n for p in pairs})
    return AbResult(
        run_id=run.run_id,
        baseline=a,
        candidate=b,
        metric=metric,
        threshold=threshold,
        alpha=alpha,
        pairs=pairs,
        test=test,
        verdict=decision,
        extra_pairs=extra,
        counts=counts,
        warnings=_warnings(run, pairs, a, b),
        failures=failures,
    )


def _failures(run: Any, pairs: list[Pair]) -> tuple[int, int]:
    """Failed instances of the paired baseline steps and of the paired candidate steps."""
    a_steps = {p.baseline_step for p in pairs}
    b_steps = {p.candidate_step for p in pairs}
    failed = [s.get("step") for s in run.samples if not s.get("ok")]
    return sum(1 for x in failed if x in a_steps), sum(1 for x in failed if x in b_steps)


def _stored_pairs(
    run: Any, stored: Sequence[Sequence[int]], a: str, b: str, metric: str
) -> list[Pair]:
    by_step: dict[int, list[dict[str, Any]]] = {}
    for s in run.samples:
        if s.get("step") is not None:
            by_step.setdefault(s["step"], []).append(s)
    out = []
    for entry in stored:
        sa, sb = int(entry[0]), int(entry[1])
        rows_a, rows_b = by_step.get(sa, []), by_step.get(sb, [])
        for step, rows, name in ((sa, rows_a, a), (sb, rows_b, b)):
            wrong = {r["platform"] for r in rows} - {name}
            if wrong:
                raise UsageError(
                    f"{run.run_id}: metadata 'ab' pairs step {step} as {name!r}, but its "
                    f"samples are of {', '.join(sorted(wrong))}"
                )
        ns = {r["n"] for r in rows_a + rows_b}
        if len(ns) > 1:
            raise UsageError(f"{run.run_id}: steps {sa} and {sb} are paired but differ in N")
        n = ns.pop() if ns else _step_n(run, sa, sb)
        out.append(Pair(n, sa, sb, _values(rows_a, metric), _values(rows_b, metric)))
    return out


def _pairs_by_repeat(run: Any, a: str, b: str, metric: str) -> list[Pair]:
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for s in run.samples:
        if s["platform"] in (a, b):
            groups.setdefault((s["platform"], s["n"], s.get("repeat", 0)), []).append(s)
    out = []
    for (platform, n, repeat), rows_a in groups.items():
        if platform != a or (b, n, repeat) not in groups:
            continue
        rows_b = groups[(b, n, repeat)]
        out.append(
            Pair(
                n,
                rows_a[0].get("step"),
                rows_b[0].get("step"),
                _values(rows_a, metric),
                _values(rows_b, metric),
            )
        )
    return out


def _step_n(run: Any, *steps: int) -> int:
    for st in run.steps:
        if st.get("step") in steps:
            return int(st["n"])
    return 0


def _values(rows: list[dict[str, Any]], metric: str) -> tuple[float, ...]:
    out = []
    for r in rows:
        x = r.get(metric)
        if r.get("ok") and isinstance(x, int | float) and math.isfinite(x) and x > 0:
            out.append(float(x))
    return tuple(out)


def _mean_log(xs: Sequence[float]) -> float:
    return sum(math.log(x) for x in xs) / len(xs)


def _warnings(run: Any, pairs: list[Pair], a: str, b: str) -> list[str]:
    out = []
    dropped = [p for p in pairs if p.log_ratio is None]
    if dropped:
        out.append(
            f"{len(dropped)} pair(s) left out: a step had no ready instance (steps "
            f"{', '.join(f'{p.baseline_step}/{p.candidate_step}' for p in dropped[:5])})"
        )
    for name in (a, b):
        failed = sum(1 for s in run.samples if s["platform"] == name and not s.get("ok"))
        if failed:
            out.append(
                f"{name} has {failed} failed instance(s): left out of the statistics; "
                "look at their errors in samples.jsonl"
            )
    if run.status != "complete":
        out.append(f"run {run.run_id} is {run.status}: some pairs may be missing")
    return out
