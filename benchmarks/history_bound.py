"""The best any detector could do on benchmarks/history_gate.py's series: a yardstick,
not bench's verdict, and a benchmark, not a test.

history_gate.py measures bench's own verdict (Page-Hinkley, online, told neither the level
nor the noise, its allowance set from the threshold; then the newest-segment rule). This
script asks how much of the gap to issue 21's "a +10% step found within 8 runs" any method
could close at the same false-alarm budget. An oracle one-sided CUSUM (Page 1954), told
the no-change level, the run-to-run sd and the +10% it looks for, is the optimal
sequential detector of a known shift (Moustakides 1986): no method that does not know
those can beat it. Its decision limit `h` is swept; for each, false alarms per 100 runs of
a no-change series (the CUSUM restarts after each alarm, as a change point would end a
segment) and the share of +10% steps it flags within 8 runs (the CUSUM at zero when the
step begins).

Same model as history_gate.py: a run's level = run-to-run drift N(0, 7%) + its own
sampling error N(0, 2%), in logs. Seeds drawn at random and printed.

    .venv/bin/python benchmarks/history_bound.py [--trials 20000] [--seed S]
        [--out benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)
from history_gate import DRIFT, STEP, WITHIN
from scipy.stats import binomtest

SECTION = "# `bench history`: the best any detector could do (issue 21)"
LIMITS = (2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.5)
RUNS = 100  # no-change series length, as history_gate.py's
WITHIN_RUNS = 8


def false_alarms_per_100(rng: np.random.Generator, k: float, h: float, trials: int) -> float:
    z = rng.standard_normal((trials, RUNS))
    s = np.zeros(trials)
    alarms = 0
    for t in range(RUNS):
        s = np.maximum(0.0, s + z[:, t] - k)
        hit = s > h
        alarms += int(hit.sum())
        s[hit] = 0.0
    return alarms / trials * 100 / RUNS


def found_within(rng: np.random.Generator, k: float, h: float, shift: float, trials: int) -> int:
    z = rng.standard_normal((trials, WITHIN_RUNS)) + shift
    s = np.zeros(trials)
    found = np.zeros(trials, dtype=bool)
    for t in range(WITHIN_RUNS):
        s = np.maximum(0.0, s + z[:, t] - k)
        found |= s > h
    return int(found.sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=None, help="default: drawn at random")
    ap.add_argument("--out", type=Path, help="write the table into this results file")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    print(f"seed {seed}", file=sys.stderr, flush=True)
    rng = np.random.default_rng(seed)
    sd = math.hypot(DRIFT, WITHIN)
    shift = math.log1p(STEP) / sd  # the step in run-to-run sds
    k = shift / 2  # the reference value that makes CUSUM optimal for this shift
    rows = []
    for h in LIMITS:
        per_100 = false_alarms_per_100(rng, k, h, args.trials)
        found = found_within(rng, k, h, shift, args.trials)
        ci = binomtest(found, args.trials).proportion_ci(0.95, method="exact")
        rows.append(
            f"| {h} | {per_100:.2f} | {found / args.trials:.1%} "
            f"[{ci.low:.1%}, {ci.high:.1%}] | {'yes' if per_100 <= 1 else 'no'} |"
        )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {when} by `benchmarks/history_bound.py --trials {args.trials} "
            f"--seed {seed}` on {results_md.host_line()}. An oracle one-sided CUSUM (told "
            f"the level, the run-to-run sd {sd:.1%} and the +{STEP:.0%} step, "
            f"{shift:.2f} sds), the optimal sequential detector of a known shift: a "
            "ceiling for any method, not bench's verdict (benchmarks/history_gate.py "
            "measures that).",
            "",
            "| decision limit h | false alarms per 100 runs, no change | +10% step found "
            "within 8 runs [95% interval] | within the budget of 1 per 100 |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    if args.out:
        results_md.write_section(args.out, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
