"""`bench compare` under issue 21's noise: a benchmark that prints figures, not a test.

Writes synthetic runs of scenarios/ci-startup.yaml's design (counts [1, 4], 20
repeats, one platform) with bench's RunWriter and bench.model.records rows, reads them back
with load_run and judges them with bench.judge.compare.compare_runs. Noise: per-instance
lognormal CV 15%, a share ICC 0.4 of its variance shared by a step's instances, and a
run-to-run level (log-sd "drift"). Models, each with 1, 3 and 5 baselines unless said:

- flaky: every instance of every run fails with probability 0.2%, 0.5% or 1%, drift 7%,
  no change; the share of runs called a regression, by the failures test, and by the
  rule before issue 21 (a failed share above every baseline run's) on the same runs;
- back to back: the baselines in one session (a minute apart; session level log-sd 7%,
  each run 2% on top), the current run a day later, no change and +20%; beside it the
  same runs with their times hidden (the verdict without the session rule);
- another design: 10 baselines of 20 repeats, a current run of 2, drift 2%, no change;
  beside it the prediction test on the runs' levels as they are (before issue 21);
- drift 7%, +20%: regression / inconclusive / exit 0;
- the printed MDE: the same baselines judged against a current run made slower by the
  MDE printed for its N=4 group (the share caught should be about 95%): 5 baselines at
  7% drift and 20 baselines at 1% (where the half-threshold floor sets the MDE).

Seeds drawn at random and printed (--seed repeats a run). Writes a section of
benchmarks/results.md with --out.

    .venv/bin/python benchmarks/compare_noise.py [--trials 200] [--seed S] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import results_md  # noqa: E402  (this script's folder is on sys.path)

from bench.judge import verdict as v  # noqa: E402
from bench.judge.compare import compare_runs, level_of, sample_groups  # noqa: E402
from bench.model.errors import ExitCode  # noqa: E402
from bench.model.records import Sample, StepRecord  # noqa: E402
from bench.model.results import RunWriter, load_run  # noqa: E402

SECTION = "# `bench compare` under issue 21's noise"
COUNTS = (1, 4)
MEDIAN_S, CV, ICC = 0.30, 0.15, 0.4
DAY = 24 * 3600.0
GROUPS = [("container", n) for n in COUNTS]


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Sim:
    def __init__(self, seed: int, root: Path):
        self.rng = np.random.default_rng(seed)
        self.root = root
        self.count = 0

    def run(self, level=0.0, effect=0.0, repeat=20, flaky=0.0, start=0.0, unusable=0, keep=False):
        """One run written and read back: `level` its log offset (drift), `start` when it
        started (epoch seconds), `unusable` that many ok samples with a null ready_s;
        its folder removed unless `keep` (tests/test_compare_noise.py keeps them)."""
        rng = self.rng
        self.count += 1
        run_id = f"ci-{self.count}"
        total = math.sqrt(math.log1p(CV**2))
        sd_step, sd_inst = math.sqrt(ICC) * total, math.sqrt(1 - ICC) * total
        d = self.root / run_id
        w = RunWriter(d, run_id)
        w.start(
            {
                "scenario": {"name": "ci-startup", "platforms": [{"name": "container"}]},
                "host": {"hostname": "sim", "cpu_cores": 2, "load_avg_1m": 0.1},
                "started_at": stamp(start),
            }
        )
        step = 0
        for r in range(repeat):
            for n in COUNTS:
                logs = (
                    math.log(MEDIAN_S) + level + rng.normal(0, sd_step) + rng.normal(0, sd_inst, n)
                )
                ready = np.exp(logs) * (1 + effect)
                failed = rng.random(n) < flaky
                common = dict(run_id=run_id, step=step, platform="container", backend="docker",
                              kind="container", host="sim", n=n, repeat=r)  # fmt: skip
                rows = []
                for i in range(n):
                    null = not failed[i] and unusable > 0
                    unusable -= null
                    rows.append(
                        Sample(
                            **common,
                            index=i,
                            name=f"{run_id}-{step}-{i}",
                            ok=not failed[i],
                            ready_s=None if failed[i] or null else float(ready[i]),
                            failure="timeout" if failed[i] else None,
                        )  # fmt: skip
                    )
                w.add_samples(rows)
                w.add_step(StepRecord(**common, failures=int(failed.sum()), all_ready_s=None))
                step += 1
        w.finish("complete")
        w.update(finished_at=stamp(start + 60))
        run = load_run(d)
        if not keep:
            shutil.rmtree(d)
        return run

    def pool(self, size: int, **kw):
        return [self.run(keep=True, **kw) for _ in range(size)]


def hide_times(run):
    from bench.model.results import Run

    meta = {k: x for k, x in run.metadata.items() if k not in ("started_at", "finished_at")}
    return Run(run.dir, meta, run.samples, run.steps)


def old_failures(bases, cur) -> bool:
    """Before issue 21: a group whose failed share is above every baseline run's
    (tests/test_compare_noise.py judges the same runs by it)."""

    def share(rows):
        return sum(not s["ok"] for s in rows) / len(rows)

    g = sample_groups(cur.samples)
    return any(
        any(not s["ok"] for s in g[k])
        and share(g[k]) > max(share(sample_groups(b.samples)[k]) for b in bases)
        for k in GROUPS
    )


def old_time(bases, cur, alpha=0.01, threshold=0.10) -> bool:
    tests = []
    for k in GROUPS:
        levels = [level_of(sample_groups(b.samples)[k], "ready_s").mean_log for b in bases]
        c = level_of(sample_groups(cur.samples)[k], "ready_s").mean_log
        tests.append(v.prediction_test(levels, c, alpha / len(GROUPS)))
    adjusted = v.holm([t.p_slower for t in tests])
    return any(p < alpha and t.change > threshold / 2 for p, t in zip(adjusted, tests, strict=True))


def rate(k: int, n: int) -> str:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.1%} [{ci.low:.1%}, {ci.high:.1%}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None, help="default: drawn at random")
    ap.add_argument("--out", type=Path, default=None, help="write the section into FILE")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    print(f"seed {seed}", file=sys.stderr, flush=True)
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="bench-cmp-", dir=shm if shm.is_dir() else None))
    sim = Sim(seed, root)
    T = args.trials
    started = time.monotonic()
    rows: list[str] = []

    def row(*cells):
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
        print(rows[-1], file=sys.stderr, flush=True)

    try:
        # Independent runs a day apart, drift 7%.
        def apart(k, level_sd=0.07, **kw):
            base = [sim.run(rng_level(level_sd), start=i * DAY, **kw) for i in range(k)]
            return base

        def rng_level(sd):
            return float(sim.rng.normal(0, sd))

        for flaky in (0.002, 0.005, 0.01):
            c = {k: [0, 0, 0] for k in (1, 3, 5)}
            for _ in range(T):
                bases = apart(5, flaky=flaky)
                cur = sim.run(rng_level(0.07), flaky=flaky, start=9 * DAY)
                for k in (1, 3, 5):
                    r = compare_runs(bases[:k], cur)
                    c[k][0] += r.exit_code == ExitCode.REGRESSION
                    c[k][1] += any("failures" in g.fired for g in r.groups)
                    c[k][2] += old_failures(bases[:k], cur)
            for k in (1, 3, 5):
                fired = f"failures test {rate(c[k][1], T)}"
                row(f"flaky {flaky:.1%} both sides, drift 7%", "+0%", k, T,
                    rate(c[k][0], T), fired, rate(c[k][2], T))  # fmt: skip
        for effect in (0.0, 0.20):
            c = {k: [0, 0, 0, 0] for k in (3, 5)}
            for t in range(T):
                session = rng_level(0.07)
                bases = [
                    sim.run(session + rng_level(0.02), start=t * DAY + 120 * i) for i in range(5)
                ]
                cur = sim.run(
                    rng_level(0.07) + rng_level(0.02), effect=effect, start=t * DAY + DAY / 2
                )
                for k in (3, 5):
                    r = compare_runs(bases[:k], cur)
                    c[k][0] += r.exit_code == ExitCode.REGRESSION
                    c[k][1] += r.exit_code == ExitCode.INCONCLUSIVE
                    c[k][2] += any("back to back" in w for w in r.warnings)
                    hidden = compare_runs([hide_times(b) for b in bases[:k]], hide_times(cur))
                    c[k][3] += hidden.exit_code == ExitCode.REGRESSION
            for k in (3, 5):
                row("back to back: 7% between sessions, 2% within", f"+{effect:.0%}", k, T,
                    rate(c[k][0], T), f"inconclusive {rate(c[k][1], T)}; warned {rate(c[k][2], T)}",
                    f"times hidden: {rate(c[k][3], T)}")  # fmt: skip
        c = [0, 0, 0]
        for _ in range(T):
            bases = apart(10, level_sd=0.02)
            cur = sim.run(rng_level(0.02), repeat=2, start=20 * DAY)
            r = compare_runs(bases, cur)
            c[0] += r.exit_code == ExitCode.REGRESSION
            c[1] += any("step(s) against" in w for w in r.warnings)
            c[2] += old_time(bases, cur)
        row("current run of 2 repeats, baselines of 20, drift 2%", "+0%", 10, T, rate(c[0], T),
            f"warned {rate(c[1], T)}", rate(c[2], T))  # fmt: skip
        c = {k: [0, 0, 0] for k in (1, 3, 5)}
        for _ in range(T):
            bases = apart(5)
            cur = sim.run(rng_level(0.07), effect=0.20, start=9 * DAY)
            for k in (1, 3, 5):
                code = compare_runs(bases[:k], cur).exit_code
                c[k][0] += code == ExitCode.REGRESSION
                c[k][1] += code == ExitCode.INCONCLUSIVE
                c[k][2] += code == ExitCode.OK
        for k in (1, 3, 5):
            row("drift 7%", "+20%", k, T, rate(c[k][0], T),
                f"inconclusive {rate(c[k][1], T)}; exit 0 {rate(c[k][2], T)}", "")  # fmt: skip
        for k, sd in ((5, 0.07), (20, 0.01)):
            caught, mdes = 0, []
            for _ in range(T):
                bases = apart(k, level_sd=sd)
                level = rng_level(sd)
                state = sim.rng.bit_generator.state
                r0 = compare_runs(bases, sim.run(level, start=(k + 5) * DAY))
                # One group fixed in advance (N=4): picking the group whose MDE came out
                # smallest would pick the one whose spread was underestimated.
                g0 = next(g for g in r0.groups if g.n == 4)
                mdes.append(g0.test.mde)
                # The same draws of the current run's noise, slower by the printed MDE.
                sim.rng.bit_generator.state = state
                r = compare_runs(bases, sim.run(level, effect=g0.test.mde, start=(k + 5) * DAY))
                caught += any(g.verdict == v.REGRESSION for g in r.groups if g.n == g0.n)
            row(f"printed MDE (N=4), drift {sd:.0%}",
                f"+MDE (median {np.median(mdes):+.1%})", k, T, rate(caught, T),
                "target about 95%", "")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    took = (time.monotonic() - started) / 60
    text = "\n".join(
        [
            SECTION,
            "",
            f"Host: {results_md.host_line()}. Measured "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
            f"by `benchmarks/compare_noise.py --trials {T} --seed {seed}` in {took:.1f} min "
            "(runs written with RunWriter, read back with load_run, judged by compare_runs; "
            "threshold 10%, alpha 0.01, design of scenarios/ci-startup.yaml: counts [1, 4], 20 "
            "repeats, CV 15%, ICC 0.4). Rates with 95% Clopper-Pearson intervals.",
            "",
            "| model | change | baselines | trials | regression (exit 1) | other "
            "| before issue 21 (same runs) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "'before issue 21': flaky rows, the failure rule it replaced (a failed share above "
            "every baseline run's); back to back, the verdict with the runs' times hidden "
            "(no session rule); another design, the prediction test on the levels as they are.",
            "",
        ]
    )
    print(text)
    if args.out:
        results_md.write_section(args.out, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
