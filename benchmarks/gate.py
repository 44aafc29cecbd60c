"""How far can bench's regression verdicts be trusted? A benchmark, not a test.

Writes synthetic runs in bench's real format (bench.model.results.RunWriter with
bench.model.records Sample/StepRecord rows, into a temporary directory, on tmpfs when there
is one), reads them back with bench.model.results.load_run and judges them with the real
code: bench.judge.ab.analyse_ab for `bench ab`, bench.judge.compare.compare_runs for `bench compare`
with 1 and with 5 baseline runs. Prints false-alarm rates (no change) and power (the
share of runs called a regression) at +5%, +10% and +20%, with 95% Clopper-Pearson
intervals, and the share of inconclusive verdicts.

Noise model (on the log scale; a "run" is one `bench run` / `bench ab` invocation):
- per-instance lognormal with coefficient of variation CV (15% or 25%) in all;
- of that variance, a share ICC (0.4) is a factor shared by the N instances of a step;
- run-to-run drift: a factor shared by every sample of a run, log-sd 7% or 10%;
- slow drift within a run: a smooth curve over the run's steps (a random slope plus a
  slow sine) of amplitude 3% or 5%.
The effect multiplies every ready_s of the candidate platform (ab) or of the current run
(compare).

What a real engine adds (issue 21), each model the realistic noise plus one of: flaky
instances on both sides (0.2%, 1%), heavy tails (2% of instances 5x slower), a bimodal
instance distribution (30% 1.6x), AR(1) drift over the steps (phi 0.95, sd 10%), the
machine's level up 30% half-way through the run. Candidates: +0% (false alarms), +5%,
+10%, +20% on every instance, +10% at one N only, and a tail-only change (6% of its
instances 1.93x slower: median +1%, p95 +30%, both printed as measured).

Designs:
- ab: scenarios/ci-ab.yaml as recommended below: counts [1, 4], --repeat pairs per N
  (default AB_REPEAT), steps in the runner's own counterbalanced order (bench.runner.
  policy.ab_order: AB, BA, BA, AB per N); the runner's warm-up instances are never
  stored, so none here;
- compare: scenarios/ci-startup.yaml: counts [1, 4], 20 repeats, one platform.

Seeds are drawn at random and printed (--seed repeats a run).

Sampling time per side of an ab run: measured from real `bench ab` runs when given
(`--measured RUN_DIR...`: per side, the mean over runs of the sum of its steps' wait,
sampling and teardown times, from their steps.jsonl; runs of another number of repeats
are scaled to --repeat per step, and the target says so); otherwise only estimated from
the design (pairs x N x INSTANCE_S + steps x STEP_OVERHEAD_S), and the target says so.

Shortcut, stated: every trial is written to files and read back through load_run,
except the trials of the non-realistic noise models when --fast is given, which build
the same rows into bench.model.results.Run in memory (skipping only the JSON round trip).

Exit 1 when any ab target is missed: under every model false alarms <= 1%, power at
+10% >= 95% (>= 90% under heavy tails), inconclusive A/A runs under heavy tails <= 10%;
the tail-only candidate caught >= 90%, +10% at one N only >= 95%; sampling <= 120 s per
side. Every figure is printed, met or not. The compare figures are reported as they are.

    .venv/bin/python benchmarks/gate.py [--trials 500] [--fast] [--ab-only] [--repeat 50]
        [--seed S] [--measured RUN_DIR...]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.judge import verdict as v  # noqa: E402
from bench.judge.ab import analyse_ab  # noqa: E402
from bench.judge.compare import compare_runs  # noqa: E402
from bench.model.errors import ExitCode  # noqa: E402
from bench.model.records import Sample, StepRecord  # noqa: E402
from bench.model.results import Run, RunWriter, load_run  # noqa: E402
from bench.runner.policy import ab_order  # noqa: E402

MEDIAN_S = 0.30  # a busybox container's ready_s
INSTANCE_S = 0.35
STEP_OVERHEAD_S = 0.15
AB_COUNTS = (1, 4)
# Pairs per N: scenarios/ci-ab.yaml's repeat. 200, because the tail-only candidate under
# heavy tails needs it (benchmarks/results.md); 50 left +10% at one N, the tail-only
# candidate and half the A/A runs' conclusiveness short of the targets.
AB_REPEAT = 200
CI_COUNTS = (1, 4)
CI_REPEAT = 20
EFFECTS = (0.0, 0.05, 0.10, 0.20)
THRESHOLD = 0.10
ALPHA = 0.01


@dataclass(frozen=True)
class Noise:
    cv: float
    icc: float
    drift: float  # between runs, log-sd
    within: float  # slow drift within a run, amplitude

    @property
    def label(self) -> str:
        return (
            f"CV {self.cv:.0%}, ICC {self.icc:g}, drift {self.drift:.0%} between / "
            f"{self.within:.0%} within"
        )


REALISTIC = Noise(0.15, 0.4, 0.07, 0.03)
MODELS = (REALISTIC, Noise(0.15, 0.4, 0.10, 0.05), Noise(0.25, 0.4, 0.07, 0.03))
MODELS += (Noise(0.25, 0.4, 0.10, 0.05),)


@dataclass(frozen=True)
class Extra:
    """What a real engine adds to the realistic noise (issue 21), on both sides alike."""

    label: str
    flaky: float = 0.0  # share of instances that never become ready
    heavy: float = 0.0  # share of instances HEAVY_FACTOR x slower
    bimodal: float = 0.0  # share of instances in a second mode BIMODAL_FACTOR x slower
    ar1: float = 0.0  # AR(1) drift over the steps: phi 0.95, this marginal log-sd
    jump: float = 0.0  # the machine's level steps up by this much half-way


HEAVY_FACTOR = 5.0
BIMODAL_FACTOR = 1.6
EXTRAS = (
    Extra("realistic"),
    Extra("flaky 0.2% both sides", flaky=0.002),
    Extra("flaky 1% both sides", flaky=0.01),
    Extra("heavy tails: 2% of instances 5x", heavy=0.02),
    Extra("bimodal: 30% of instances 1.6x", bimodal=0.3),
    Extra("AR(1) drift, phi 0.95, sd 10%", ar1=0.10),
    Extra("machine +30% half-way", jump=0.30),
)


@dataclass(frozen=True)
class Effect:
    """The candidate's change: `uniform` on every instance at the N in `only_n` (all N
    when empty), or a tail-only change (TAIL_SHARE of instances TAIL_FACTOR x slower:
    median +1%, p95 +30%, printed as measured)."""

    label: str
    uniform: float = 0.0
    only_n: tuple[int, ...] = ()
    tail: bool = False


TAIL_SHARE, TAIL_FACTOR = 0.06, 1.93


class Sim:
    """One random generator, and runs written and read the way bench does."""

    def __init__(self, seed: int, root: Path, files: bool = True, repeat: int = AB_REPEAT):
        self.repeat = repeat
        self.rng = np.random.default_rng(seed)
        self.root = root
        self.files = files
        self.count = 0

    def _noise(self, noise: Noise, n_steps: int, extra: Extra = EXTRAS[0]):
        rng = self.rng
        total = math.sqrt(math.log1p(noise.cv**2))
        sd_step, sd_inst = math.sqrt(noise.icc) * total, math.sqrt(1 - noise.icc) * total
        t = np.linspace(0, 1, n_steps)
        slope, phase, freq = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2)
        within = noise.within * (slope * (2 * t - 1) + 0.5 * np.sin(2 * np.pi * freq * t + phase))
        run = rng.normal(0, noise.drift)
        level = run + within + rng.normal(0, sd_step, n_steps)
        if extra.ar1:
            phi = 0.95
            shocks = rng.normal(0, extra.ar1 * math.sqrt(1 - phi**2), n_steps)
            ar = np.empty(n_steps)
            ar[0] = rng.normal(0, extra.ar1)
            for i in range(1, n_steps):
                ar[i] = phi * ar[i - 1] + shocks[i]
            level += ar
        if extra.jump:
            level[n_steps // 2 :] += math.log1p(extra.jump)
        return level, sd_inst

    def _run(
        self,
        run_id: str,
        plan,
        noise: Noise,
        effects: dict[str, float],
        meta: dict,
        cold=(),
        extra: Extra = EXTRAS[0],
        effect: Effect | None = None,
    ) -> Run:
        """plan: [(platform, n, repeat)] in step order; `cold` steps are 3x slower.
        `effect` (ab): the candidate "B"'s change, instead of `effects`."""
        rng = self.rng
        level, sd_inst = self._noise(noise, len(plan), extra)
        level[list(cold)] += math.log(3)
        samples, steps = [], []
        for step, (platform, n, repeat) in enumerate(plan):
            logs = np.log(MEDIAN_S) + level[step] + rng.normal(0, sd_inst, n)
            logs += np.where(rng.random(n) < extra.heavy, math.log(HEAVY_FACTOR), 0.0)
            logs += np.where(rng.random(n) < extra.bimodal, math.log(BIMODAL_FACTOR), 0.0)
            if effect is not None and platform == "B":
                if effect.tail:
                    logs += np.where(rng.random(n) < TAIL_SHARE, math.log(TAIL_FACTOR), 0.0)
                elif not effect.only_n or n in effect.only_n:
                    logs += math.log1p(effect.uniform)
            ready = np.exp(logs) * (1 + effects.get(platform, 0.0))
            failed = rng.random(n) < extra.flaky
            for i, r in enumerate(ready):
                samples.append(
                    Sample(
                        run_id=run_id,
                        step=step,
                        platform=platform,
                        backend="docker",
                        kind="container",
                        host="sim",
                        n=n,
                        repeat=repeat,
                        index=i,
                        name=f"{run_id}-{step}-{i}",
                        ok=not failed[i],
                        ready_s=None if failed[i] else float(r),
                        failure="timeout" if failed[i] else None,
                    )
                )
            steps.append(
                StepRecord(
                    run_id=run_id,
                    step=step,
                    platform=platform,
                    backend="docker",
                    kind="container",
                    host="sim",
                    n=n,
                    repeat=repeat,
                    failures=int(failed.sum()),
                    all_ready_s=None if failed.any() else float(ready.max()),
                )
            )
        metadata = {
            "scenario": {"name": meta.pop("name"), "platforms": meta.pop("platforms")},
            "host": {"hostname": "sim", "cpu_cores": 2, "load_avg_1m": 0.1},
            "hosts": {"sim": {"hostname": "sim"}},
            **meta,
        }
        if not self.files:
            # Already validated records (Sample/StepRecord): their stored rows.
            rows = [s.row() for s in samples]
            step_rows = [s.row() for s in steps]
            return Run(self.root / run_id, {**metadata, "status": "complete"}, rows, step_rows)
        d = self.root / run_id
        w = RunWriter(d, run_id)
        w.start(metadata)
        for step, st in enumerate(steps):
            w.add_samples([s for s in samples if s.step == step])
            w.add_step(st)
        w.finish("complete")
        run = load_run(d)
        shutil.rmtree(d)
        return run

    def ab_run(
        self,
        noise: Noise,
        effect: float | Effect,
        repeat: int | None = None,
        extra: Extra = EXTRAS[0],
    ) -> Run:
        repeat = repeat or self.repeat
        self.count += 1
        plan, pairs = [], []
        for n, r, a_first in ab_order(list(AB_COUNTS), repeat):
            first = len(plan)
            plan += [(p, n, r) for p in (("A", "B") if a_first else ("B", "A"))]
            pairs.append([first, first + 1] if a_first else [first + 1, first])
        run_id = f"ab-{self.count}"
        meta = {
            "name": "ci-ab",
            "platforms": [{"name": "A"}, {"name": "B"}],
            "ab": {"baseline": "A", "candidate": "B", "pairs": pairs},
        }
        if not isinstance(effect, Effect):
            effect = Effect(f"+{effect:.0%}", uniform=effect)
        return self._run(run_id, plan, noise, {}, meta, extra=extra, effect=effect)

    def ci_run(self, noise: Noise, effect: float) -> Run:
        self.count += 1
        plan = [("container", n, r) for r in range(CI_REPEAT) for n in CI_COUNTS]
        meta = {"name": "ci-startup", "platforms": [{"name": "container"}]}
        return self._run(f"ci-{self.count}", plan, noise, {"container": effect}, meta)


# What a trial's verdicts are counted by, in the table's column order.
COUNTED = (
    "regression", "inconclusive", "ok", "center", "p95", "failures", "old", "mean", "median",
    "p95 before",
)  # fmt: skip


def ab_seconds_per_side(repeat: int = AB_REPEAT) -> float:
    """One side's steps estimated from the design: `repeat` of each N, plus warm-up."""
    instances = repeat * sum(AB_COUNTS) + 1
    steps = repeat * len(AB_COUNTS)
    return instances * INSTANCE_S + steps * STEP_OVERHEAD_S


def measured_seconds_per_side(
    run_dirs: list[Path], repeat: int = AB_REPEAT
) -> tuple[float, float, list[int]]:
    """Per side of real `bench ab` runs: the sum of its steps' wait, sampling and
    teardown times, the larger side's, averaged over the runs; and the same scaled to
    `repeat` pairs per N (per step: a step's cost does not depend on how many others
    follow). Also the runs' own repeats (steps per side / counts)."""
    per_run, scaled, repeats = [], [], []
    for d in run_dirs:
        run = load_run(d)
        sides: dict[str, list[float]] = {}
        for st in run.steps:
            spent = sum(st.get(k) or 0.0 for k in ("wait_s", "sampling_s", "teardown_s"))
            sides.setdefault(st["platform"], []).append(spent)
        side = max(sides.values(), key=sum)
        counts = {st["n"] for st in run.steps}
        if counts != set(AB_COUNTS):
            raise SystemExit(f"{d}: counts {sorted(counts)}, not the design's {list(AB_COUNTS)}")
        repeats.append(len(side) // len(AB_COUNTS))
        per_run.append(sum(side))
        scaled.append(sum(side) / len(side) * repeat * len(AB_COUNTS))
    return sum(per_run) / len(per_run), sum(scaled) / len(scaled), sorted(set(repeats))


def rate_ci(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def fmt_rate(k: int, n: int) -> str:
    lo, hi = rate_ci(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def trial_ab(sim: Sim, noise: Noise, effect: Effect, trials: int, extra: Extra) -> dict:
    """`bench ab`'s verdict, which gates fired, and on the same pairs: the rule before
    issue 21 (one paired t-test over all N, any extra failed instance a regression);
    the center gate alone with a step's mean log or its median log (Bonferroni over the
    Holm family's size), for the choice of step statistic; and the p95 gate alone with
    the test it had before (the difference of the two p95s, permuted; Bonferroni), for
    the choice of tail test."""
    out = dict.fromkeys(COUNTED, 0)
    out["n"] = trials
    for _ in range(trials):
        run = sim.ab_run(noise, effect, extra=extra)
        result = analyse_ab(run, THRESHOLD, ALPHA)
        code = result.exit_code
        out["regression"] += code == ExitCode.REGRESSION
        out["inconclusive"] += code == ExitCode.INCONCLUSIVE
        out["ok"] += code == ExitCode.OK
        for gate in ("center", "p95", "failures"):
            out[gate] += any(f.startswith(gate) for f in result.fired)
        d = [p.log_ratio for p in result.used]
        old = v.paired_test(d, ALPHA, resamples=1)
        old_verdict = v.decide(old, THRESHOLD, ALPHA, enough=len(d) >= v.MIN_PAIRS)
        f = result.failures
        out["old"] += old_verdict == v.REGRESSION or f.candidate > f.baseline
        level = ALPHA / len(result.gates)
        for key, stat in (("mean", np.mean), ("median", np.median)):
            hit = False
            for n in result.counts:
                dn = [
                    stat(np.log(p.candidate_values)) - stat(np.log(p.baseline_values))
                    for p in result.used
                    if p.n == n
                ]
                t = v.rank_test(dn)
                hit |= t.p_slower < level and t.change > v.REGRESSION_FRACTION * THRESHOLD
            out[key] += hit
        hit = False
        for n in result.counts:
            mine = [p for p in result.used if p.n == n]
            a = [np.log(p.baseline_values) for p in mine]
            b = [np.log(p.candidate_values) for p in mine]
            t = v.tail_test(a, b, statistic=v.QUANTILE)
            hit |= t.p_slower < level and t.change > THRESHOLD
        out["p95 before"] += hit
    return out


def tail_effect_size() -> tuple[float, float]:
    """The tail-only candidate's change of the median and of the p95, measured on 10^6
    draws of the realistic instance distribution (step factor included)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, math.sqrt(math.log1p(REALISTIC.cv**2)), 1_000_000)
    y = x + np.where(rng.random(len(x)) < TAIL_SHARE, math.log(TAIL_FACTOR), 0.0)
    q = [0.5, 0.95]
    return tuple(float(c) for c in np.expm1(np.quantile(y, q) - np.quantile(x, q)))


def trial_compare(sim: Sim, noise: Noise, effect: float, trials: int) -> dict:
    out = {"n": trials, "reg1": 0, "inc1": 0, "reg5": 0, "inc5": 0}
    for _ in range(trials):
        bases = [sim.ci_run(noise, 0.0) for _ in range(5)]
        cur = sim.ci_run(noise, effect)
        one = compare_runs(bases[:1], cur, threshold=THRESHOLD, alpha=ALPHA).exit_code
        five = compare_runs(bases, cur, threshold=THRESHOLD, alpha=ALPHA).exit_code
        out["reg1"] += one == ExitCode.REGRESSION
        out["inc1"] += one == ExitCode.INCONCLUSIVE
        out["reg5"] += five == ExitCode.REGRESSION
        out["inc5"] += five == ExitCode.INCONCLUSIVE
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=500, help="A/A trials of ab per model")
    ap.add_argument("--fast", action="store_true", help="non-realistic models in memory")
    ap.add_argument("--seed", type=int, default=None, help="default: drawn at random")
    ap.add_argument("--ab-only", action="store_true", help="leave out `compare`")
    ap.add_argument("--repeat", type=int, default=AB_REPEAT, help="ab pairs per N")
    ap.add_argument(
        "--measured",
        type=Path,
        nargs="*",
        default=[],
        metavar="RUN_DIR",
        help="real `bench ab` runs whose sampling time per side is the target's figure",
    )
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    print(f"seed {seed}", file=sys.stderr, flush=True)
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="bench-gate-", dir=shm if shm.is_dir() else None))
    started = time.monotonic()
    sim = Sim(seed, root, repeat=args.repeat)
    power_trials = max(100, args.trials // 2)
    cmp_trials = max(200, args.trials // 4)
    tail_median, tail_p95 = tail_effect_size()
    measured_note = "; the target row has the measured figure" if args.measured else ""
    lines = [
        f"`benchmarks/gate.py --trials {args.trials}{' --fast' if args.fast else ''} "
        f"--repeat {args.repeat} --seed {seed}`: threshold {THRESHOLD:.0%}, alpha "
        f"{ALPHA:g}. Rates are shares of trials with 95% Clopper-Pearson intervals; "
        "'regression' at +0% is the false-alarm rate.",
        "",
        f"ab design: counts {list(AB_COUNTS)}, {args.repeat} pairs per N "
        f"({args.repeat * len(AB_COUNTS)} pairs) after a warm-up instance per side; estimated "
        f"sampling "
        f"{ab_seconds_per_side(args.repeat):.0f} s per side ({INSTANCE_S} s per instance + "
        f"{STEP_OVERHEAD_S} s per step{measured_note}). Every model is the realistic noise ("
        f"{REALISTIC.label}) plus what it names, on both sides. The tail-only candidate: "
        f"{TAIL_SHARE:.0%} of its instances {TAIL_FACTOR}x slower, median "
        f"{tail_median:+.1%}, p95 {tail_p95:+.1%}.",
        "",
        "Columns after 'exit 0': which gate fired; 'before' is the rule before issue 21 "
        "(paired t over all N pooled, any extra failed instance a regression) on the same "
        "runs; 'center, mean log' and 'center, median log' the center gate alone "
        "(Bonferroni) with either step level; 'p95, p95 difference' the p95 gate alone "
        "(Bonferroni) with the test it had before (the candidate's p95 minus the "
        "baseline's, permuted) instead of its quantile test (shares above the pooled "
        "p95, permuted).",
        "",
        "| model | change | trials | regression (exit 1) | inconclusive (exit 6) | exit 0 "
        "| center fired | p95 fired | failures fired | before | center, mean log "
        "| center, median log | p95, p95 difference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    effects = [Effect("+0%"), Effect("+10%", uniform=0.10)]
    special = [
        Effect("+5%", uniform=0.05),
        Effect("+20%", uniform=0.20),
        Effect(f"tail only (p95 {tail_p95:+.0%})", tail=True),
        Effect("+10% at N=1 only", uniform=0.10, only_n=(1,)),
        Effect("+10% at N=4 only", uniform=0.10, only_n=(4,)),
    ]
    plan = [(x, e) for x in EXTRAS for e in effects]
    plan += [(EXTRAS[0], e) for e in special]
    plan += [(EXTRAS[3], special[2])]  # the tail-only candidate under heavy tails
    results: dict[tuple[str, str], dict] = {}
    try:
        for extra, effect in plan:
            sim.files = extra == EXTRAS[0] or not args.fast
            trials = args.trials if effect.label == "+0%" else power_trials
            r = trial_ab(sim, REALISTIC, effect, trials, extra)
            results[(extra.label, effect.label)] = r
            n = r["n"]
            lines.append(
                f"| {extra.label} | {effect.label} | {n} | "
                + " | ".join(fmt_rate(r[k], n) for k in COUNTED)  # fmt: skip
                + " |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
        if not args.ab_only:
            lines += [
                "",
                "| tool | noise model | change | trials | 1 baseline: regression | "
                "1 baseline: inconclusive | 5 baselines: regression | 5 baselines: "
                "inconclusive |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for noise in (REALISTIC, MODELS[1]):
                sim.files = noise == REALISTIC or not args.fast
                for effect in EFFECTS:
                    r = trial_compare(sim, noise, effect, cmp_trials)
                    n = r["n"]
                    lines.append(
                        f"| compare | {noise.label} | +{effect:.0%} | {n} | "
                        f"{fmt_rate(r['reg1'], n)} | {fmt_rate(r['inc1'], n)} | "
                        f"{fmt_rate(r['reg5'], n)} | {fmt_rate(r['inc5'], n)} |"
                    )
                    print(lines[-1], file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.measured:
        own_s, sampling_s, repeats = measured_seconds_per_side(args.measured, args.repeat)
        sampling_what = f"measured over {len(args.measured)} real runs"
        if repeats != [args.repeat]:
            sampling_what += (
                f" of {'/'.join(map(str, repeats))} repeats ({own_s:.0f} s per side), "
                f"scaled per step to {args.repeat}"
            )
    else:
        sampling_s = ab_seconds_per_side(args.repeat)
        sampling_what = "ESTIMATED from the design (pass --measured RUN_DIR... to measure)"
    targets = []
    for extra in EXTRAS:
        heavy = extra.heavy > 0
        fa, pw = results[(extra.label, "+0%")], results[(extra.label, "+10%")]
        targets.append((f"ab false alarms, {extra.label}", fa["regression"], fa["n"], "<= 1%"))
        need = ">= 90%" if heavy else ">= 95%"
        targets.append((f"ab power at +10%, {extra.label}", pw["regression"], pw["n"], need))
        if heavy:
            targets.append(
                (f"ab inconclusive A/A, {extra.label}", fa["inconclusive"], fa["n"], "<= 10%")
            )
    for extra, effect in plan[2 * len(EXTRAS) :]:
        if effect.tail or effect.only_n:
            r = results[(extra.label, effect.label)]
            need = ">= 90%" if effect.tail else ">= 95%"
            targets.append((f"ab {effect.label}, {extra.label}", r["regression"], r["n"], need))
    lines += [
        "",
        "| target | value [95% interval] | required | met |",
        "| --- | --- | --- | --- |",
    ]
    met = []
    for name, k, n, need in targets:
        bound = float(need.split()[1].rstrip("%")) / 100
        ok = k / n <= bound if need.startswith("<=") else k / n >= bound
        met.append(ok)
        lines.append(f"| {name} | {fmt_rate(k, n)} | {need} | {'yes' if ok else 'NO'} |")
    ok = sampling_s <= 120
    met.append(ok)
    lines.append(
        f"| ab sampling per side (s), {sampling_what} | {sampling_s:.0f} | <= 120 "
        f"| {'yes' if ok else 'NO'} |"
    )
    lines += ["", f"Took {(time.monotonic() - started) / 60:.1f} min."]
    print("\n".join(lines))
    return 0 if all(met) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
