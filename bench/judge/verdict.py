"""The statistics behind bench's verdicts, on plain numbers (no files, no runs).

Everything works on the log of a higher-is-worse metric (ready_s): a slow-down is a
ratio, and a difference of logs is the same whatever the absolute times are, so pairs
or runs of different N can be pooled. A change is reported as exp(mean log ratio) - 1.

Two designs, two units of evidence:

- `bench ab`: the unit is a STEP PAIR, a baseline step and a candidate step run next
  to each other on one host. Its log ratio cancels whatever the two steps share: the
  host's level of the day (run-to-run drift), and most of any slow drift within the
  run. The gates (bench/judge/ab.py): `rank_test` (Wilcoxon signed-rank, Hodges-Lehmann,
  distribution-free bounds) per N, `tail_test` (the p95: values above both sides'
  pooled p95, pair-wise permutation) per N, `failure_test` (Fisher exact); `gate_mde`
  the rule's MDE; `holm_levels` the level each bound is computed at. (`paired_test`,
  the t-test over all pairs that came before, stays for benchmarks/gate.py's "before"
  column.)

- `bench compare`: the unit is a RUN. Each run is summarised by its mean log value;
  the baseline runs' spread estimates the run-to-run drift, and `LevelTest` tests the
  current run against their mean (t, df = runs - 1), or, with one baseline or baselines
  of one session, against an ASSUMED_DRIFT per run (normal): never a change shown by
  instance samples alone. (`prediction_test` and `drift_test` are its earlier forms.)

The verdict (`decide`), for both:
- regression: p < alpha AND the change is above REGRESSION_FRACTION x threshold;
- inconclusive: too little evidence (too few pairs or runs) or an MDE above the
  threshold: a change of the size the gate exists to catch could have been missed;
- otherwise no regression (within threshold, faster, or no significant change).

REGRESSION_FRACTION = 0.5. With a one-sided test at alpha and power P, a design whose
MDE equals the threshold T has a standard error of log(1+T) / (z_alpha + z_P); p < alpha
then already implies an estimate above z_alpha / (z_alpha + z_P) = 2.33 / 3.97 = 0.59 of
T (alpha 0.01, P 0.95). Any fraction up to 0.59 therefore costs no power at a true
change of T in a conclusive run, while refusing to fail a build for a significant but
small change (under T/2). 0.5 is the round value below 0.59, and at --threshold 10% it
is Firecracker's A/B gate (p < 0.01 and more than 5%).

The MDE is the smallest true change the whole rule detects with probability POWER (95%,
the power bench's targets ask for): the estimate must clear both the test's critical
value and log(1 + REGRESSION_FRACTION x threshold), so MDE = max(t_{1-alpha} x se,
log(1 + floor)) + t_{POWER} x se (LevelTest.mde; gate_mde for ab's gates). Without the
floor, a printed MDE below about +7% could not be met (issue 21: printed +3.3%, a true
+4.5% caught 27.5%).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from scipy.stats import rv_continuous
    from scipy.stats._distn_infrastructure import rv_continuous_frozen

    # A permutation test's inputs: values, pair index, is_candidate, flips, statistic.
    TailData = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]

DEFAULT_ALPHA = 0.01
DEFAULT_THRESHOLD = 0.10
POWER = 0.95
REGRESSION_FRACTION = 0.5
# Fewer pairs than this give no usable estimate of their own spread.
MIN_PAIRS = 6
# Between-run drift assumed when only one baseline run is given (log-sd of a run's
# level): the upper end of what this machine showed (groups moving by up to +-5% between
# runs minutes apart; 7-10% in the gate's noise model). Assuming less would let drift
# alone fail builds; a user who wants a real estimate passes several baseline runs.
ASSUMED_DRIFT = 0.10
BOOTSTRAP_RESAMPLES = 2000
# Beyond this many pairs or runs "how many more" is not a useful answer.
_NEEDED_CAP = 100_000

REGRESSION = "regression"
INCONCLUSIVE = "inconclusive"
WITHIN_THRESHOLD = "within threshold"
FASTER = "faster"
NO_CHANGE = "no significant change"


@dataclass(frozen=True)
class Test:
    """A one-sided test of "the candidate is slower", with its interval and MDE.

    `change`, `ci_*` and `mde` are relative (0.10 = 10% slower). `n` counts the units
    (pairs, or baseline runs). `mde` is inf when the spread cannot be estimated."""

    n: int
    log_change: float
    spread: float  # sd of the unit differences (pairs) or of the runs' levels (runs)
    change: float
    ci_low: float
    ci_high: float
    p_slower: float
    p_faster: float
    mde: float
    alpha: float  # the level the MDE was computed at (alpha / groups under Holm)


def relative(log_change: float) -> float:
    return math.expm1(log_change)


def decide(
    test: Test,
    threshold: float,
    alpha: float,
    enough: bool = True,
    p_slower: float | None = None,
    p_faster: float | None = None,
) -> str:
    """The verdict label. `p_*`: adjusted p-values when several groups are tested."""
    ps = test.p_slower if p_slower is None else p_slower
    pf = test.p_faster if p_faster is None else p_faster
    if not enough:
        return INCONCLUSIVE
    if ps < alpha and test.change > REGRESSION_FRACTION * threshold:
        return REGRESSION
    if test.mde > threshold:
        return INCONCLUSIVE
    if ps < alpha:
        return WITHIN_THRESHOLD
    if pf < alpha:
        return FASTER
    return NO_CHANGE


# --- paired: bench ab ------------------------------------------------------------------


def paired_test(
    log_ratios: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    power: float = POWER,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Test:
    """One-sided paired t-test of the step pairs' log ratios (candidate / baseline).

    The interval is a percentile bootstrap over pairs at level 1 - alpha (seeded: the
    same run always prints the same interval)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(log_ratios, dtype=float)
    n = len(d)
    if n == 0:
        nan = math.nan
        return Test(0, nan, nan, nan, nan, nan, 1.0, 1.0, math.inf, alpha)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        p_slower = p_faster = 1.0
    elif sd == 0:
        p_slower, p_faster = float(mean <= 0), float(mean >= 0)
    else:
        t = mean / (sd / math.sqrt(n))
        p_slower = float(stats.t.sf(t, n - 1))
        p_faster = float(stats.t.cdf(t, n - 1))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, (resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Test(
        n=n,
        log_change=mean,
        spread=sd,
        change=relative(mean),
        ci_low=relative(float(low)),
        ci_high=relative(float(high)),
        p_slower=p_slower,
        p_faster=p_faster,
        mde=paired_mde(sd, n, alpha, power),
        alpha=alpha,
    )


def paired_mde(sd: float, n: int, alpha: float = DEFAULT_ALPHA, power: float = POWER) -> float:
    """Smallest relative slow-down n pairs of this spread detect with `power` at alpha."""
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.inf
    k = stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(power, n - 1)
    return relative(k * sd / math.sqrt(n))


def pairs_needed(
    sd: float, threshold: float, alpha: float = DEFAULT_ALPHA, power: float = POWER
) -> int | None:
    """Fewest pairs (at least MIN_PAIRS) whose MDE is at most `threshold`, at this
    spread; None when no number below a hundred thousand would do."""
    if not math.isfinite(sd) or threshold <= 0:
        return None
    n = MIN_PAIRS
    while paired_mde(sd, n, alpha, power) > threshold:
        # Doubling then bisecting: MDE falls monotonically with n.
        if n >= _NEEDED_CAP:
            return None
        n = min(2 * n, _NEEDED_CAP)
    lo = max(MIN_PAIRS, n // 2)
    while lo < n:
        mid = (lo + n) // 2
        if paired_mde(sd, mid, alpha, power) <= threshold:
            n = mid
        else:
            lo = mid + 1
    return n


# --- runs as the unit: bench compare ------------------------------------------------------


def prediction_test(
    baseline_levels: Sequence[float],
    current_level: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = POWER,
) -> Test:
    """Is the current run's mean log value above what the baseline runs predict?

    t = (current - mean(baselines)) / (s x sqrt(1 + 1/k)), df = k - 1: the current run
    is one more draw from the baselines' distribution under "no change". The interval
    is the matching prediction interval of the change at level 1 - alpha."""
    from scipy import stats

    b = [float(x) for x in baseline_levels]
    k = len(b)
    if k < 2:
        raise ValueError("a prediction test needs at least two baseline runs")
    mean = sum(b) / k
    s = math.sqrt(sum((x - mean) ** 2 for x in b) / (k - 1))
    scale = s * math.sqrt(1 + 1 / k)
    diff = current_level - mean
    if scale == 0:
        p_slower, p_faster = float(diff <= 0), float(diff >= 0)
        half = 0.0
    else:
        t = diff / scale
        p_slower = float(stats.t.sf(t, k - 1))
        p_faster = float(stats.t.cdf(t, k - 1))
        half = float(stats.t.ppf(1 - alpha / 2, k - 1)) * scale
    mde = (stats.t.ppf(1 - alpha, k - 1) + stats.t.ppf(power, k - 1)) * scale
    return Test(
        n=k,
        log_change=diff,
        spread=s,
        change=relative(diff),
        ci_low=relative(diff - half),
        ci_high=relative(diff + half),
        p_slower=p_slower,
        p_faster=p_faster,
        mde=relative(float(mde)),
        alpha=alpha,
    )


def runs_needed(
    spread: float,
    threshold: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = POWER,
    floor: float = 0.0,
    added: float = 0.0,
) -> int | None:
    """Fewest baseline runs whose MDE (LevelTest.mde: the t prediction test with the
    rule's `floor`, plus `added` variance for a current run of another design) is at
    most `threshold` at this run-to-run spread; None when none would (the current run's
    own drift alone is too large for the threshold: only a paired design, `bench ab`,
    can help then)."""
    import numpy as np
    from scipy import stats

    if threshold <= 0 or not math.isfinite(spread):
        return None
    target = math.log1p(threshold)
    k = np.arange(2, 1001)
    scale = np.sqrt(spread**2 * (1 + 1 / k) + added)
    bound = np.maximum(stats.t.isf(alpha, k - 1) * scale, math.log1p(floor))
    ok = np.nonzero(bound + stats.t.ppf(power, k - 1) * scale <= target)[0]
    return int(k[ok[0]]) if len(ok) else None


def drift_test(
    baseline_level: float,
    current_level: float,
    within_se: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = POWER,
    drift: float = ASSUMED_DRIFT,
) -> Test:
    """One baseline run: a z-test of the change against an ASSUMED run-to-run drift.

    Each run's level carries its own drift, so the difference of two runs has a
    variance of 2 x drift^2 on top of their within-run standard errors (`within_se`,
    both runs together, from their steps). Only a change that such drift could not
    plausibly produce is significant; many instance samples cannot make it so."""
    from scipy import stats

    scale = math.sqrt(2 * drift**2 + within_se**2)
    diff = current_level - baseline_level
    z = diff / scale
    half = float(stats.norm.ppf(1 - alpha / 2)) * scale
    mde = (stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)) * scale
    return Test(
        n=1,
        log_change=diff,
        spread=drift,
        change=relative(diff),
        ci_low=relative(diff - half),
        ci_high=relative(diff + half),
        p_slower=float(stats.norm.sf(z)),
        p_faster=float(stats.norm.cdf(z)),
        mde=relative(float(mde)),
        alpha=alpha,
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: compare each with alpha, and the family of tests keeps
    its false-alarm rate at alpha whatever their dependence (groups of one run share
    its drift, so they are far from independent)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def pct(x: float) -> str:
    """A relative change as a signed percentage ("+10.2%"); "n/a" when not finite."""
    return f"{x:+.1%}" if math.isfinite(x) else "n/a"


def json_ready(obj: object) -> object:
    """JSON has no NaN or infinity: null instead, in nested dicts and lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(x) for k, x in obj.items()}
    if isinstance(obj, list):
        return [json_ready(x) for x in obj]
    return obj


# --- bench ab, gate by gate: signed-rank, p95 permutation, failures -----------------------


@dataclass(frozen=True)
class RankTest:
    """A one-sided Wilcoxon signed-rank test of pair log ratios, with the Hodges-Lehmann
    estimate and the distribution-free bounds that invert the same test.

    Why this and not the t-test: one instance 5x slower moves a pair's log ratio by
    log 5 = 1.6, eight times the pairs' spread; the t-test's mean and sd follow it (84%
    inconclusive A/A runs under 2% of such instances, issue 21), the ranks do not.
    `benchmarks/gate.py` measures both."""

    n: int
    log_change: float  # Hodges-Lehmann: the median of the Walsh averages
    se: float  # from the width of the distribution-free 95% interval (log scale)
    p_slower: float
    p_faster: float
    _walsh: np.ndarray | None  # sorted Walsh averages (None: only n and se are known)

    @property
    def change(self) -> float:
        return relative(self.log_change)

    def lower(self, level: float) -> float:
        """One-sided lower bound of the change at `level`: above 0 exactly when
        p_slower < level (the bound is the Walsh average the test's critical count
        points at); -inf when n pairs cannot reach that level at all."""
        c = _critical(self.n, level)
        if c is None or self._walsh is None:
            return -math.inf
        return relative(float(self._walsh[-c]))

    def upper(self, level: float) -> float:
        """One-sided upper bound: below 0 exactly when p_faster < level."""
        c = _critical(self.n, level)
        if c is None or self._walsh is None:
            return math.inf
        return relative(float(self._walsh[c - 1]))


def rank_test(log_ratios: Sequence[float]) -> RankTest:
    """Signed-rank test as the count of positive Walsh averages (the same statistic
    as the sum of positive ranks when nothing ties; a Walsh average of exactly 0 counts
    for neither side), p from its exact null distribution (normal beyond _EXACT_MAX)."""
    import numpy as np

    d = np.asarray(log_ratios, dtype=float)
    n = len(d)
    if n == 0:
        return RankTest(0, math.nan, math.nan, 1.0, 1.0, np.array([]))
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    sf = _rank_sf(n)
    p_slower = float(sf(int(np.count_nonzero(walsh > 0))))
    p_faster = float(sf(int(np.count_nonzero(walsh < 0))))
    c = _critical(n, 0.025)
    se = math.nan if c is None else float(walsh[c - 1] - walsh[-c]) / (2 * 1.959964)
    return RankTest(n, float(np.median(walsh)), se, p_slower, p_faster, walsh)


_EXACT_MAX = 400


def _rank_sf(n: int):
    """P(T >= t) for the signed-rank statistic T of n pairs under no change."""
    import functools

    return _rank_sf_cached(n) if n <= _EXACT_MAX else functools.partial(_rank_sf_normal, n)


def _rank_sf_normal(n: int, t: int) -> float:
    from scipy import stats

    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return float(stats.norm.sf((t - 0.5 - mean) / sd))


def _rank_sf_cached(n: int):
    import numpy as np

    if n not in _SF_CACHE:
        # The null distribution by convolution: rank k is positive or not, each 1/2.
        pmf = np.zeros(n * (n + 1) // 2 + 1)
        pmf[0] = 1.0
        for k in range(1, n + 1):
            pmf[k:] = (pmf[k:] + pmf[:-k]) / 2
            pmf[:k] /= 2
        _SF_CACHE[n] = np.cumsum(pmf[::-1])[::-1]  # sf[t] = P(T >= t)
    table = _SF_CACHE[n]
    return lambda t: float(table[t]) if t < len(table) else 0.0


_SF_CACHE: dict[int, np.ndarray] = {}


def _critical(n: int, level: float) -> int | None:
    """The smallest count c with P(T >= c) < level: p < level exactly when T >= c.
    None when even T = n(n+1)/2 (every pair slower) is not that unlikely."""
    import numpy as np

    if n == 0:
        return None
    top = n * (n + 1) // 2
    if n <= _EXACT_MAX:
        _rank_sf_cached(n)
        ok = np.nonzero(_SF_CACHE[n] < level)[0]
        return int(ok[0]) if len(ok) else None
    from scipy import stats

    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    c = max(0, math.floor(mean + 0.5 + sd * stats.norm.isf(level)))
    while c <= top and _rank_sf_normal(n, c) >= level:
        c += 1
    return c if c <= top else None


def rank_se(test: RankTest, level: float, n: int | None = None) -> float:
    """The standard error (log scale) of `test`'s estimate scaled to `n` pairs (default:
    its own); inf when n pairs cannot reach `level` or the spread is unknown."""
    n = test.n if n is None else n
    if n < 2 or not math.isfinite(test.se) or _critical(n, level) is None:
        return math.inf
    return test.se * math.sqrt(test.n / n)


def gate_mde(ses: Sequence[float], level: float, floor: float, power: float = POWER) -> float:
    """Smallest relative slow-down, the same at every N, that the center gates of
    standard errors `ses` (one per N, independent pairs) detect with `power` when ANY of
    them firing is a regression. A gate fires when p < level and the change is above
    `floor`: both say "the estimate is above a bound", so a gate of standard error se
    fires with probability Phi((delta - max(z se, log(1 + floor))) / se). Solved for
    delta by bisection; inf when no gate can fire."""
    from scipy import stats

    usable = [se for se in ses if math.isfinite(se) and se > 0]
    if not usable:
        return math.inf
    z = float(stats.norm.isf(level))

    def miss(delta: float) -> float:
        out = 1.0
        for se in usable:
            out *= float(stats.norm.cdf((max(z * se, math.log1p(floor)) - delta) / se))
        return out

    lo, hi = 0.0, max(max(z * se, math.log1p(floor)) + 10 * se for se in usable)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if miss(mid) > 1 - power else (lo, mid)
    return relative(hi)


@dataclass(frozen=True)
class TailTest:
    """Is the candidate's tail slower? A quantile test (Mood's median test moved to the
    95th percentile): the cut is the p95 of both sides' values pooled, and the statistic
    the candidate's share of values above it minus the baseline's. Its null distribution
    comes from a pair-wise permutation: under no change the two steps of a pair are
    exchangeable, so swapping them at random gives it whatever the drift between pairs,
    the factor a step's instances share, and the shape of the tail; the pooled cut does
    not move when steps swap. `log_change` is the candidate's pooled p95 minus the
    baseline's: the size the gate's threshold is about.

    Why this and not the difference of the two p95s, the earlier test (`statistic=
    QUANTILE`, kept for benchmarks/gate.py's comparison): a candidate slower in a few
    instances puts its p95 between its two modes, and when heavy tails put a few slow
    instances on both sides the swapped samples' p95s land there too, so that order
    statistic's null distribution is wide; counting the values above a cut that no swap
    moves does not have that problem. gate.py, tail-only candidate (p95 +31%, median
    +1%) under heavy tails (2% of instances 5x): benchmarks/results.md."""

    n: int  # pairs
    log_change: float
    p_slower: float
    _data: TailData | None  # None: no test (one side empty)

    @property
    def change(self) -> float:
        return relative(self.log_change)

    def lower(self, level: float) -> float:
        """One-sided lower bound of the change at `level`: the largest shift of the
        candidate's logs below which the same permutation test still says "slower"
        (bisection from 0 upward when it does at 0, downward when not); above 0 exactly
        when p_slower < level."""
        data = self._data
        if self.n == 0 or data is None or not math.isfinite(self.log_change):
            return -math.inf
        rejects = lambda s: _tail_p(*data, shift=s) < level  # noqa: E731
        span = max(abs(self.log_change), 0.01) * 4
        lo, hi = (0.0, span) if rejects(0.0) else (-span, 0.0)
        if not rejects(lo):
            return -math.inf
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
        return relative(lo)


TAIL_QUANTILE = 0.95
TAIL_FLIPS = 2000
POOLED, QUANTILE = "pooled cut", "p95 difference"


def tail_test(
    baseline: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    flips: int = TAIL_FLIPS,
    seed: int = 0,
    statistic: str = POOLED,
) -> TailTest:
    """`baseline[i]`, `candidate[i]`: the log values of pair i's two steps. Seeded: the
    same run always gets the same p. The p-value (1 + hits) / (flips + 1) is valid at
    any number of flips. `statistic`: POOLED (shares above the pooled p95, the gate's)
    or QUANTILE (the candidate's p95 minus the baseline's, the test before)."""
    import numpy as np

    if statistic not in (POOLED, QUANTILE):
        raise ValueError(f"tail_test: no statistic {statistic!r}")
    vals, pid, cand = [], [], []
    for i, (a, b) in enumerate(zip(baseline, candidate, strict=True)):
        vals += [*a, *b]
        pid += [i] * (len(a) + len(b))
        cand += [False] * len(a) + [True] * len(b)
    n = len(baseline)
    if not vals or not any(cand) or all(cand):
        return TailTest(n, math.nan, 1.0, None)
    rng = np.random.default_rng(seed)
    swap = rng.random((flips, n)) < 0.5
    data = (np.asarray(vals), np.asarray(pid), np.asarray(cand), swap, statistic)
    observed = _quantile_stats(data[0], data[2][None, :])[0]
    return TailTest(n, float(observed), _tail_p(*data), data)


def _tail_p(vals, pid, cand, swap, statistic, *, shift: float = 0.0) -> float:
    import numpy as np

    x = vals - shift * cand
    stat = _pooled_stats if statistic == POOLED else _quantile_stats
    observed = stat(x, cand[None, :])[0]
    stats_ = stat(x, cand[None, :] ^ swap[:, pid])
    return float((1 + np.count_nonzero(stats_ >= observed)) / (len(swap) + 1))


def _pooled_stats(x, is_b):
    """Per row of `is_b` (which values are the candidate's): the candidate's share of
    values above the pooled p95 (the ceil(0.95 n)-th smallest of all values, the same
    in every row) minus the baseline's."""
    import numpy as np

    cut = np.partition(x, math.ceil(TAIL_QUANTILE * len(x)) - 1)[
        math.ceil(TAIL_QUANTILE * len(x)) - 1
    ]
    high = x > cut
    nb = is_b.sum(axis=1)
    hb = (is_b & high).sum(axis=1)
    na, ha = is_b.shape[1] - nb, int(high.sum()) - hb
    return hb / np.maximum(nb, 1) - ha / np.maximum(na, 1)


def _quantile_stats(x, is_b):
    """Per row of `is_b` (which values are the candidate's): the candidate's p95 minus
    the baseline's, each the ceil(0.95 n)-th smallest of its side (an order statistic,
    so no interpolation between two steps' values)."""
    import numpy as np

    order = np.argsort(x, kind="stable")
    xs, mask = x[order], is_b[:, order]
    out = []
    for side in (mask, ~mask):
        count = np.cumsum(side, axis=1)
        k = np.ceil(TAIL_QUANTILE * count[:, -1]).astype(int)
        idx = np.argmax(count >= np.maximum(k, 1)[:, None], axis=1)
        out.append(xs[idx])
    return out[0] - out[1]


def failure_test(failed_b: int, units_b: int, failed_a: int, units_a: int) -> float:
    """One-sided Fisher exact p that the candidate fails a larger share than the baseline
    (units: instances, a step lost whole counting once)."""
    from scipy import stats

    if failed_b == 0 or units_b == 0:
        return 1.0
    table = [[failed_b, units_b - failed_b], [failed_a, units_a - failed_a]]
    # scipy documents table as array_like; scipy-stubs want an ndarray.
    return float(stats.fisher_exact(table, alternative="greater").pvalue)  # type: ignore[arg-type]


def holm_levels(pvalues: Sequence[float], alpha: float) -> list[float]:
    """The level each test of a Holm family is judged at: alpha / (m - rank) while the
    tests before it were rejected, alpha / m for all after the first that was not. A
    bound computed at this level is above 0 exactly when the Holm-adjusted p < alpha."""
    m = len(pvalues)
    out = [alpha / max(m, 1)] * m
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        out[i] = alpha / (m - rank)
        if pvalues[i] >= out[i]:
            break
    return out


# --- runs as the unit, one rule: bench compare --------------------------------------------


@dataclass(frozen=True)
class LevelTest:
    """`bench compare`'s test of one group: is the current run's level (mean log value)
    above the baseline runs'? The difference `diff` over its standard error `scale`,
    Student t with `df` degrees of freedom (None: normal, the scale assumed rather than
    estimated). The p-values, the one-sided bounds and the MDE all come from the same
    (diff, scale, df), so the bound printed at the level a p is judged at is above 0
    exactly when p is below it."""

    n: int  # baseline runs
    diff: float
    scale: float
    df: int | None
    spread: float  # the run-to-run spread the scale rests on (log-sd; assumed or seen)

    def _dist(self) -> rv_continuous | rv_continuous_frozen:
        from scipy import stats

        return stats.norm if self.df is None else stats.t(self.df)

    @property
    def p_slower(self) -> float:
        if self.scale == 0:
            return float(self.diff <= 0)
        return float(self._dist().sf(self.diff / self.scale))

    @property
    def p_faster(self) -> float:
        if self.scale == 0:
            return float(self.diff >= 0)
        return float(self._dist().cdf(self.diff / self.scale))

    def lower(self, level: float) -> float:
        """One-sided lower bound of the change at `level`: above 0 exactly when
        p_slower < level."""
        return relative(self.diff - float(self._dist().isf(level)) * self.scale)

    def upper(self, level: float) -> float:
        """One-sided upper bound: below 0 exactly when p_faster < level."""
        return relative(self.diff + float(self._dist().isf(level)) * self.scale)

    def mde(self, level: float, floor: float, power: float = POWER) -> float:
        """The smallest relative slow-down the whole rule (p < `level` AND a change
        above `floor`) detects with `power`: the estimate must clear the larger of the
        test's critical value and log(1 + floor), and it is above that bound with
        probability `power` when the true change is that bound + its `power` quantile
        of error. (`REGRESSION_FRACTION` x threshold is the floor: above 0.59 x the
        threshold it is the floor, not the test, that sets the MDE.)"""
        if not math.isfinite(self.scale):
            return math.inf
        d = self._dist()
        bound = max(float(d.isf(level)) * self.scale, math.log1p(floor))
        return relative(bound + float(d.ppf(power)) * self.scale)

    def as_test(self, level: float, mde_level: float, floor: float) -> Test:
        """A `Test` for the table: bounds at `level` (the Holm level the p is judged
        at), MDE at `mde_level` (alpha / groups: the level a lone change faces)."""
        return Test(
            n=self.n,
            log_change=self.diff,
            spread=self.spread,
            change=relative(self.diff),
            ci_low=self.lower(level),
            ci_high=self.upper(level),
            p_slower=self.p_slower,
            p_faster=self.p_faster,
            mde=self.mde(mde_level, floor),
            alpha=level,
        )


def failure_units(rows: Iterable[Mapping[str, object]]) -> tuple[int, int]:
    """(failed, counted) units of one side's samples for the failure test: an instance,
    or a step whose instances all failed (lost at once: one cause, one event, not N).
    Instances stopped by an interruption (failure "interrupted") are left out: the
    platform did not fail them. Samples without a `step` (schema 1, hand-written) are
    grouped by (N, repeat), which is one step."""
    by_step: dict[object, list[Mapping[str, object]]] = {}
    for s in rows:
        if s.get("failure") == "interrupted":
            continue
        key = s.get("step")
        if key is None:
            key = ("r", s.get("platform"), s.get("n"), s.get("repeat", 0))
        by_step.setdefault(key, []).append(s)
    failed = units = 0
    for group in by_step.values():
        bad = sum(1 for r in group if not r.get("ok"))
        whole = bad == len(group)
        failed += 1 if whole else bad
        units += 1 if whole else len(group)
    return failed, units
