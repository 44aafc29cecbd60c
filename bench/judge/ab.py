"""The analysis of an A/B run (`bench ab`, `bench ab --analyse RUN_DIR`): step pairs,
gate by gate, a verdict with an exit code.

Which steps pair up is stored in the run's metadata, written by the ab runner:

    metadata["ab"] = {
        "baseline": "A",            # platform name of the baseline (A)
        "candidate": "B",           # platform name of the candidate (B)
        "pairs": [[0, 1], [3, 2]],  # [baseline step, candidate step] (Sample.step /
                                    # StepRecord.step), in the order they ran; the
                                    # execution order within a pair is the step order
    }

Without "pairs" (a plain run of two platforms), a baseline step pairs with the
candidate step of the same (N, repeat), and only when every such pair ran next to each
other (said in one loud warning); a plain `bench run` runs one platform's steps after
the other's, and its "pairs" would measure the drift between them: refused. Stored
pairs are checked the same way, and a step in two pairs is refused.

The gates (issue 21), each a one-sided test, the timing ones one Holm family:
- center, per N: Wilcoxon signed-rank over the pairs' log ratios (bench.judge.verdict.
  rank_test), a regression when p (Holm) < alpha and the change is above
  REGRESSION_FRACTION x threshold;
- p95, per N: a quantile test, the candidate's share of values above the p95 of both
  sides pooled against the baseline's, pair-wise permutation (bench.judge.verdict.tail_test),
  a regression when p (Holm) < alpha and the candidate's pooled p95 is slower than the
  baseline's by more than the threshold;
- failures, over the paired steps: one-sided Fisher exact test of failed/ok by side at
  alpha (a step lost whole is one event, `interrupted` instances are left out).
The run is a regression when any gate fires; else inconclusive when the rule's MDE
(the smallest uniform slow-down it detects at 95% power: the best N's center gate at
the first Holm level) is above the threshold; else no regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict

from bench.judge import verdict as v
from bench.model.errors import ExitCode, UsageError
from bench.model.records import int_field, str_field

if TYPE_CHECKING:
    from bench.judge.compare import SampleRow
    from bench.model.results import Run

# Gate names, as in the table and in --json "fired".
CENTER = "center"
TAIL = "p95"
FAILURES = "failures"


def step_level(values: Sequence[float]) -> float:
    """A step's level: the MEDIAN of its instances' logs (at N=1 the value, at N=2 the
    mean of both). One instance 5x slower moves a step mean of 4 logs by log(5)/4 =
    0.4, twice the pairs' spread; the median does not move. Chosen on gate.py's models
    (benchmarks/results.md, "center, mean log" against "center, median log"): the same
    false alarms, power at +10% under heavy tails 90% against 70%, and under light
    tails a point or two less."""
    import statistics

    return statistics.median(math.log(x) for x in values)


class CarryOver(TypedDict):
    """AB pairs against BA pairs (_carry_over): their changes and the test's p."""

    ab_pairs: int
    ba_pairs: int
    ab_change: float
    ba_change: float
    p: float
    flagged: bool


@dataclass(frozen=True)
class Pair:
    n: int
    baseline_step: int | None
    candidate_step: int | None
    baseline_values: tuple[float, ...]  # the metric of the step's ready instances
    candidate_values: tuple[float, ...]

    @property
    def log_ratio(self) -> float | None:
        """level(B) - level(A); None when a side has no usable value."""
        if not self.baseline_values or not self.candidate_values:
            return None
        return step_level(self.candidate_values) - step_level(self.baseline_values)

    @property
    def baseline_first(self) -> bool | None:
        if self.baseline_step is None or self.candidate_step is None:
            return None
        return self.baseline_step < self.candidate_step


@dataclass
class Gate:
    """One timing test of the Holm family: the center or the p95 of one N."""

    n: int
    kind: str  # CENTER or TAIL
    test: v.Test  # ci_low: its one-sided bound at `level` (p95: computed when asked)
    p_holm: float
    level: float  # the Holm level it is judged at
    verdict: str
    tail: v.TailTest | None = None

    @cached_property
    def bound(self) -> float:
        """One-sided lower bound of the change at the Holm level: above 0 exactly when
        p (Holm) < alpha."""
        return self.tail.lower(self.level) if self.tail is not None else self.test.ci_low

    def to_dict(self) -> dict[str, object]:
        t = self.test
        return {
            "n": self.n,
            "gate": self.kind,
            "pairs": t.n,
            "change": t.change,
            "bound": self.bound,
            "level": self.level,
            "p": t.p_slower,
            "p_holm": self.p_holm,
            "mde": t.mde if self.kind == CENTER else None,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Failures:
    """Failed instances of the paired steps by side, a step lost whole counting once."""

    baseline: int
    baseline_units: int
    candidate: int
    candidate_units: int
    p: float
    regression: bool

    def why(self, a: str, b: str) -> str:
        if self.regression:
            return (
                f"{b} failed {self.candidate} of {self.candidate_units} against "
                f"{self.baseline} of {self.baseline_units} for {a} (Fisher exact, one-sided, "
                f"p = {self.p:.2g}): an instance that never becomes ready is worse than any "
                "slow-down"
            )
        if self.candidate > self.baseline:
            return (
                f"{b} failed {self.candidate} of {self.candidate_units} against "
                f"{self.baseline} of {self.baseline_units} for {a}: not significant "
                f"(p = {self.p:.2g}), no verdict from failures"
            )
        return "no more failures than the baseline"


@dataclass
class AbResult:
    run_id: str
    baseline: str
    candidate: str
    metric: str
    threshold: float
    alpha: float
    pairs: list[Pair]
    test: v.Test  # all pairs together: descriptive; the verdict is the gates'
    gates: list[Gate]
    failures: Failures
    verdict: str
    mde: float  # of the whole rule (see the module's docstring)
    extra_repeats: int | None
    counts: list[int]
    carry_over: CarryOver | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[Pair]:
        return [p for p in self.pairs if p.log_ratio is not None]

    @property
    def fired(self) -> list[str]:
        """The gates that made the verdict a regression: "center N=4", "p95 N=1", ..."""
        out = [f"{g.kind} N={g.n}" for g in self.gates if g.verdict == v.REGRESSION]
        return out + ([FAILURES] if self.failures.regression else [])

    @property
    def exit_code(self) -> ExitCode:
        if self.verdict == v.REGRESSION:
            return ExitCode.REGRESSION
        if self.verdict == v.INCONCLUSIVE:
            return ExitCode.INCONCLUSIVE
        return ExitCode.OK

    @property
    def extra_pairs(self) -> int | None:
        if self.extra_repeats is None:
            return None
        return self.extra_repeats * len(self.counts)

    def advice(self) -> str | None:
        """Why the run is inconclusive and what would make it conclusive."""
        if self.verdict != v.INCONCLUSIVE:
            return None
        per_n = min((len([p for p in self.used if p.n == n]) for n in self.counts), default=0)
        if not math.isfinite(self.mde):
            why = f"{per_n} usable pairs per N are too few for a test at alpha {self.alpha:g}"
        else:
            why = (
                f"the smallest slow-down this run can detect ({v.pct(self.mde)} at "
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

    def to_dict(self) -> dict[str, object]:
        t = self.test
        per_n = {}
        for n in self.counts:
            ds = [p.log_ratio for p in self.used if p.n == n]
            per_n[str(n)] = {
                "pairs": len(ds),
                "change": next((g.test.change for g in self.gates if g.n == n), None),
            }
        f = self.failures
        inconclusive = self.verdict == v.INCONCLUSIVE
        return {
            "run_id": self.run_id,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "power": v.POWER,
            "regression_fraction": v.REGRESSION_FRACTION,
            "test": (
                "per N: Wilcoxon signed-rank over step pairs (center; level of a step = median "
                "log) and a quantile test (p95: the share of values above both sides' "
                "pooled p95, pair-wise permutation), one-sided, Holm over all of them; "
                "failures: Fisher exact, one-sided, at alpha"
            ),
            "ci": (
                "ci_low / ci_high: one-sided bounds at alpha of the signed-rank test over "
                "all pairs (descriptive); gates[].bound: each gate's own bound at its Holm "
                "level, above 0 exactly when p_holm < alpha"
            ),
            "pairs": t.n,
            "pairs_dropped": len(self.pairs) - len(self.used),
            "change": t.change,
            "ci_low": t.ci_low,
            "ci_high": t.ci_high,
            "p_slower": t.p_slower,
            "p_faster": t.p_faster,
            "mde": self.mde,
            "verdict": self.verdict,
            "fired": self.fired,
            "gates": [g.to_dict() for g in self.gates],
            "extra_pairs": self.extra_pairs if inconclusive else None,
            "extra_repeats": self.extra_repeats if inconclusive else None,
            "exit_code": int(self.exit_code),
            "failures": {
                "baseline": f.baseline,
                "candidate": f.candidate,
                "baseline_units": f.baseline_units,
                "candidate_units": f.candidate_units,
                "p": f.p,
                "regression": f.regression,
                "why": f.why(self.baseline, self.candidate),
            },
            "carry_over": self.carry_over,
            "per_n": per_n,
            "warnings": self.warnings,
        }


def analyse_ab(
    run: Run,
    threshold: float = v.DEFAULT_THRESHOLD,
    alpha: float = v.DEFAULT_ALPHA,
    metric: str = "ready_s",
    baseline: str | None = None,
    candidate: str | None = None,
) -> AbResult:
    """The verdict on a stored A/B run (a `bench.model.results.Run`).

    `baseline`/`candidate` default to metadata["ab"]; given, they also let a plain run
    of two platforms be analysed (pairs by (N, repeat), when they ran next to each
    other)."""
    from bench.judge.compare import check_alpha, check_metric

    check_alpha(alpha)
    if threshold < 0:
        raise UsageError(f"--threshold {threshold:.0%}: use a percentage of zero or more")
    check_metric(metric, run.samples)
    spec = run.ab
    a = baseline or (spec.baseline if spec else None)
    b = candidate or (spec.candidate if spec else None)
    if not a or not b:
        raise UsageError(
            f"{run.run_id}: not an A/B run (no metadata 'ab'): name its --baseline and "
            "--candidate platforms"
        )
    platforms = {str_field(s, "platform") for s in run.samples}
    for role, name in (("baseline", a), ("candidate", b)):
        if name not in platforms:
            raise UsageError(
                f"{run.run_id}: {role} platform {name!r} has no samples "
                f"(platforms: {', '.join(sorted(platforms)) or 'none'})"
            )
    warnings = []
    if spec and spec.pairs and a == spec.baseline and b == spec.candidate:
        pairs = _stored_pairs(run, spec.pairs, a, b, metric)
    else:
        pairs = _pairs_by_repeat(run, a, b, metric)
        warnings.append(
            f"NO RECORDED A/B PAIRS in {run.run_id}: steps of {a!r} and {b!r} paired by "
            "(N, repeat); they ran next to each other, but not in the counterbalanced "
            "order of `bench ab`"
        )
    if not pairs:
        raise UsageError(f"{run.run_id}: no step of {a!r} pairs with a step of {b!r}")
    counts = sorted({p.n for p in pairs})
    gates = _gates(pairs, counts, threshold, alpha)
    failures = _failures(run, pairs, alpha)
    used = [p.log_ratio for p in pairs if p.log_ratio is not None]
    overall = v.rank_test(used)
    centers = [g for g in gates if g.kind == CENTER]
    level = alpha / max(len(gates), 1)
    mde = _rule_mde(centers, level, threshold)
    test = v.Test(
        n=overall.n,
        log_change=overall.log_change,
        spread=overall.se,
        change=overall.change,
        ci_low=overall.lower(alpha),
        ci_high=overall.upper(alpha),
        p_slower=overall.p_slower,
        p_faster=overall.p_faster,
        mde=mde,
        alpha=alpha,
    )
    if failures.regression or any(g.verdict == v.REGRESSION for g in gates):
        decision = v.REGRESSION
    elif mde > threshold:
        decision = v.INCONCLUSIVE
    else:
        labels = {g.verdict for g in centers}
        decision = next((x for x in (v.WITHIN_THRESHOLD, v.FASTER) if x in labels), v.NO_CHANGE)
    warnings += _warnings(run, pairs, a, b, metric, centers, threshold)
    carry = _carry_over(pairs, alpha)
    if carry is not None and carry["flagged"]:
        warnings.append(
            f"carry-over: the change in AB pairs ({v.pct(carry['ab_change'])}) differs from "
            f"BA pairs ({v.pct(carry['ba_change'])}), p = {carry['p']:.2g}: the step run "
            "first affects the one after it (a warm cache, a slow teardown); the verdict "
            "averages both orders"
        )
    return AbResult(
        run_id=run.run_id,
        baseline=a,
        candidate=b,
        metric=metric,
        threshold=threshold,
        alpha=alpha,
        pairs=pairs,
        test=test,
        gates=gates,
        failures=failures,
        verdict=decision,
        mde=mde,
        extra_repeats=_extra_repeats(centers, level, threshold),
        counts=counts,
        carry_over=carry,
        warnings=warnings,
    )


def _gates(pairs: list[Pair], counts: list[int], threshold: float, alpha: float) -> list[Gate]:
    """Center and p95 per N, one Holm family; each gate's bound at its Holm level."""
    tests: list[tuple[int, str, v.RankTest | v.TailTest]] = []
    for n in counts:
        mine = [p for p in pairs if p.n == n and p.log_ratio is not None]
        tests.append(
            (n, CENTER, v.rank_test([p.log_ratio for p in mine if p.log_ratio is not None]))
        )
        logs = [
            ([math.log(x) for x in p.baseline_values], [math.log(x) for x in p.candidate_values])
            for p in mine
        ]
        tests.append((n, TAIL, v.tail_test([x for x, _ in logs], [y for _, y in logs])))
    m = len(tests)
    slower = [t.p_slower for *_, t in tests]
    adjusted, levels = v.holm(slower), v.holm_levels(slower, alpha)
    faster = iter(v.holm([t.p_faster for *_, t in tests if isinstance(t, v.RankTest)]))
    out = []
    for (n, kind, t), p_holm, level in zip(tests, adjusted, levels, strict=True):
        if isinstance(t, v.RankTest):
            floor = v.REGRESSION_FRACTION * threshold
            mde = v.gate_mde([v.rank_se(t, alpha / m)], alpha / m, floor)
            test = v.Test(
                t.n, t.log_change, t.se, t.change, t.lower(level), t.upper(level),
                t.p_slower, t.p_faster, mde, level,
            )  # fmt: skip
            enough = t.n >= v.MIN_PAIRS
            verdict = v.decide(test, threshold, alpha, enough, p_holm, next(faster))
            out.append(Gate(n, kind, test, p_holm, level, verdict))
        else:
            test = v.Test(
                t.n, t.log_change, math.nan, t.change, math.nan, math.nan,
                t.p_slower, 1.0, math.inf, level,
            )  # fmt: skip
            if p_holm < alpha:
                verdict = v.REGRESSION if t.change > threshold else v.WITHIN_THRESHOLD
            else:
                verdict = v.NO_CHANGE
            out.append(Gate(n, kind, test, p_holm, level, verdict, tail=t))
    return out


def _rule_mde(centers: list[Gate], level: float, threshold: float, more: int = 0) -> float:
    """The whole rule's MDE for a slow-down at every N: any N's center gate firing at
    the first Holm level (the p95 gates, which help, are left out: a bound, not a
    guess), with `more` pairs at every N."""
    ses = []
    for g in centers:
        t = g.test
        rank = v.RankTest(t.n, t.log_change, t.spread, 1.0, 1.0, None)
        ses.append(v.rank_se(rank, level, t.n + more))
    return v.gate_mde(ses, level, v.REGRESSION_FRACTION * threshold)


def _extra_repeats(centers: list[Gate], level: float, threshold: float) -> int | None:
    """Repeats (one more pair per N each) that bring the rule's MDE to the threshold at
    the spread seen; None when no number up to 100,000 would do."""
    if not any(math.isfinite(g.test.spread) for g in centers):
        # Too few pairs for a spread: first the pairs a test at `level` needs at all.
        least = max(v.MIN_PAIRS, math.floor(math.log2(1 / level)) + 1)
        return max(least - max((g.test.n for g in centers), default=0), 1)
    lo, more = 0, 1
    while _rule_mde(centers, level, threshold, more) > threshold:
        if more > 100_000:
            return None
        lo, more = more, 2 * more
    while lo + 1 < more:  # the fewest: the MDE falls with every pair
        mid = (lo + more) // 2
        lo, more = (
            (lo, mid) if _rule_mde(centers, level, threshold, mid) <= threshold else (mid, more)
        )
    return more


def _failures(run: Run, pairs: list[Pair], alpha: float) -> Failures:
    """Failed and counted units of the paired steps by side: an instance, or a step
    whose instances all failed (lost at once: one cause, one event). Instances stopped
    by an interruption (failure "interrupted") are left out."""
    sides = []
    for steps in ({p.baseline_step for p in pairs}, {p.candidate_step for p in pairs}):
        sides.append(v.failure_units(s for s in run.samples if s.get("step") in steps))
    (fa, ua), (fb, ub) = sides
    p = v.failure_test(fb, ub, fa, ua)
    return Failures(fa, ua, fb, ub, p, p < alpha)


def _stored_pairs(
    run: Run, stored: Sequence[Sequence[int]], a: str, b: str, metric: str
) -> list[Pair]:
    by_step: dict[int, list[SampleRow]] = {}
    for s in run.samples:
        if isinstance(step := s.get("step"), int):
            by_step.setdefault(step, []).append(s)
    out = []
    seen: set[int] = set()
    for entry in stored:
        sa, sb = int(entry[0]), int(entry[1])
        for step in (sa, sb):
            if step in seen:
                raise UsageError(
                    f"{run.run_id}: metadata 'ab' pairs step {step} more than once: a "
                    "repeated pair would count one measurement twice"
                )
            seen.add(step)
        _check_adjacent(run, sa, sb, "metadata 'ab' pairs")
        rows_a, rows_b = by_step.get(sa, []), by_step.get(sb, [])
        for step, rows, name in ((sa, rows_a, a), (sb, rows_b, b)):
            wrong = {str_field(r, "platform") for r in rows} - {name}
            if wrong:
                raise UsageError(
                    f"{run.run_id}: metadata 'ab' pairs step {step} as {name!r}, but its "
                    f"samples are of {', '.join(sorted(wrong))}"
                )
        ns = {int_field(r, "n") for r in rows_a + rows_b}
        if len(ns) > 1:
            raise UsageError(f"{run.run_id}: steps {sa} and {sb} are paired but differ in N")
        n = ns.pop() if ns else _step_n(run, sa, sb)
        out.append(Pair(n, sa, sb, _values(rows_a, metric), _values(rows_b, metric)))
    return out


def _check_adjacent(run: Run, sa: object, sb: object, what: str) -> tuple[int, int]:
    """Steps are numbered in the order they ran: a pair's two steps must be neighbours,
    or the pair measures the drift between them (A's steps all before B's, as in a
    plain `bench run`, turned a machine's step change into 100% exit 1)."""
    if not isinstance(sa, int) or not isinstance(sb, int) or abs(sa - sb) != 1:
        raise UsageError(
            f"{run.run_id}: {what} steps {sa} and {sb}, which did not run next to each "
            "other: such pairs measure the drift between them; run the two platforms "
            "with `bench ab`"
        )
    return sa, sb


def _pairs_by_repeat(run: Run, a: str, b: str, metric: str) -> list[Pair]:
    groups: dict[tuple[str, int, int], list[SampleRow]] = {}
    for s in run.samples:
        if s["platform"] in (a, b):
            key = (str_field(s, "platform"), int_field(s, "n"), int_field(s, "repeat", 0))
            groups.setdefault(key, []).append(s)
    out = []
    for (platform, n, repeat), rows_a in groups.items():
        if platform != a or (b, n, repeat) not in groups:
            continue
        rows_b = groups[(b, n, repeat)]
        sa, sb = _check_adjacent(
            run,
            rows_a[0].get("step"),
            rows_b[0].get("step"),
            "has no recorded A/B pairs, and (N, repeat) would pair",
        )
        out.append(Pair(n, sa, sb, _values(rows_a, metric), _values(rows_b, metric)))
    return out


def _step_n(run: Run, *steps: int) -> int:
    for st in run.steps:
        if st.get("step") in steps:
            return int_field(st, "n")
    return 0


def _usable(r: Mapping[str, object], metric: str) -> bool:
    return _usable_value(r, metric) is not None


def _usable_value(r: Mapping[str, object], metric: str) -> float | None:
    """The metric's value if it is a finite positive number, else None."""
    x = r.get(metric)
    return float(x) if isinstance(x, int | float) and math.isfinite(x) and x > 0 else None


def _values(rows: Sequence[SampleRow], metric: str) -> tuple[float, ...]:
    return tuple(x for r in rows if r.get("ok") and (x := _usable_value(r, metric)) is not None)


def _carry_over(pairs: list[Pair], alpha: float) -> CarryOver | None:
    """Do AB pairs and BA pairs see the same change? Mann-Whitney on their log ratios
    (two-sided, at alpha). Without carry-over the order is noise; with it (the first
    step warms a cache for the second, or its teardown slows it) the two differ."""
    from scipy import stats

    ab = [p.log_ratio for p in pairs if p.log_ratio is not None and p.baseline_first]
    ba = [p.log_ratio for p in pairs if p.log_ratio is not None and p.baseline_first is False]
    if len(ab) < 3 or len(ba) < 3:
        return None
    p = float(stats.mannwhitneyu(ab, ba, alternative="two-sided").pvalue)
    return {
        "ab_pairs": len(ab),
        "ba_pairs": len(ba),
        "ab_change": v.rank_test(ab).change,
        "ba_change": v.rank_test(ba).change,
        "p": p,
        "flagged": p < alpha,
    }


def _warnings(
    run: Run,
    pairs: list[Pair],
    a: str,
    b: str,
    metric: str,
    centers: list[Gate],
    threshold: float,
) -> list[str]:
    out = []
    dropped = [p for p in pairs if p.log_ratio is None]
    if dropped:
        out.append(
            f"{len(dropped)} pair(s) left out: a step had no usable {metric} (steps "
            f"{', '.join(f'{p.baseline_step}/{p.candidate_step}' for p in dropped[:5])})"
        )
    for name in (a, b):
        mine = [s for s in run.samples if s["platform"] == name]
        failed = sum(1 for s in mine if not s.get("ok"))
        if failed:
            out.append(
                f"{name} has {failed} failed instance(s): left out of the timing gates, "
                "counted by the failures gate; look at their errors in samples.jsonl"
            )
        unusable = [s for s in mine if s.get("ok") and not _usable(s, metric)]
        if unusable:
            steps = sorted({s.get("step") for s in unusable}, key=str)
            out.append(
                f"{name} has {len(unusable)} ok sample(s) with no usable {metric} (null, "
                f"NaN or not above 0): left out (steps {', '.join(map(str, steps[:5]))}"
                f"{', ...' if len(steps) > 5 else ''})"
            )
    blind = [g for g in centers if g.test.mde > threshold]
    if blind and len(blind) < len(centers):
        out.append(
            "a change at "
            + ", ".join(f"N={g.n} alone below {v.pct(g.test.mde)}" for g in blind)
            + " could be missed (too few or too noisy pairs at that N)"
        )
    if run.status != "complete":
        out.append(f"run {run.run_id} is {run.status}: some pairs may be missing")
    return out
