"""How far can bench's regression verdicts be trusted? A benchmark, not a test.

Writes synthetic runs in bench's real format (bench.results.RunWriter with
bench.records Sample/StepRecord rows, into a temporary directory, on tmpfs when there
is one), reads them back with bench.results.load_run and judges them with the real
code: bench.ab.analyse_ab for `bench ab`, bench.compare.compare_runs for `bench compare`
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

Designs:
- ab: scenarios/ci-ab.yaml as recommended below: counts [1, 4], REPEAT pairs per N,
  steps in the runner's own counterbalanced order (bench.runner.policy.ab_order: AB,
  BA, BA, AB per N); the runner's warm-up instances are never stored, so none here;
- compare: scenarios/ci-startup.yaml: counts [1, 4], 20 repeats, one platform.

Sampling time per side of an ab run: measured from real `bench ab` runs when given
(`--measured RUN_DIR...`: per side, the mean over runs of the sum of its steps' wait,
sampling and teardown times, from their steps.jsonl); otherwise only estimated from the
design (pairs x N x INSTANCE_S + steps x STEP_OVERHEAD_S), and the target says so.

Shortcut, stated: every trial is written to files and read back through load_run,
except the trials of the non-realistic noise models when --fast is given, which build
the same rows into bench.results.Run in memory (skipping only the JSON round trip).

Exit 1 when an ab target is missed under the realistic model (CV 15%, ICC 0.4,
drift 7% between runs, 3% within): false alarms <= 1%, power at +10% >= 95%,
sampling <= 120 s per side. The compare figures are reported as they are.

    .venv/bin/python benchmarks/gate.py [--trials 2000] [--fast] [--measured RUN_DIR...]
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

from bench import verdict as v  # noqa: E402
from bench.ab import analyse_ab  # noqa: E402
from bench.compare import compare_runs  # noqa: E402
from bench.errors import ExitCode  # noqa: E402
from bench.records import Sample, StepRecord  # noqa: E402
from bench.results import Run, RunWriter, load_run  # noqa: E402
from bench.runner.policy import ab_order  # noqa: E402

MEDIAN_S = 0.30  # a busybox container's ready_s
INSTANCE_S = 0.35
STEP_OVERHEAD_S = 0.15
AB_COUNTS = (1, 4)
AB_REPEAT = 50  # pairs per N
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


class Sim:
    """One random generator, and runs written and read the way bench does."""

    def __init__(self, seed: int, root: Path, files: bool = True):
        self.rng = np.random.default_rng(seed)
        self.root = root
        self.files = files
        self.count = 0

    def _noise(self, noise: Noise, n_steps: int):
        rng = self.rng
        total = math.sqrt(math.log1p(noise.cv**2))
        sd_step, sd_inst = math.sqrt(noise.icc) * total, math.sqrt(1 - noise.icc) * total
        t = np.linspace(0, 1, n_steps)
        slope, phase, freq = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2)
        within = noise.within * (slope * (2 * t - 1) + 0.5 * np.sin(2 * np.pi * freq * t + phase))
        run = rng.normal(0, noise.drift)
        return run + within + rng.normal(0, sd_step, n_steps), sd_inst

    def _run(
        self, run_id: str, plan, noise: Noise, effects: dict[str, float], meta: dict, cold=()
    ) -> Run:
        """plan: [(platform, n, repeat)] in step order; `cold` steps are 3x slower."""
        level, sd_inst = self._noise(noise, len(plan))
        level[list(cold)] += math.log(3)
        samples, steps = [], []
        for step, (platform, n, repeat) in enumerate(plan):
            logs = np.log(MEDIAN_S) + level[step] + self.rng.normal(0, sd_inst, n)
            ready = np.exp(logs) * (1 + effects.get(platform, 0.0))
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
                        ok=True,
                        ready_s=float(r),
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
                    failures=0,
                    all_ready_s=float(ready.max()),
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

    def ab_run(self, noise: Noise, effect: float, repeat: int = AB_REPEAT) -> Run:
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
        return self._run(run_id, plan, noise, {"B": effect}, meta)

    def ci_run(self, noise: Noise, effect: float) -> Run:
        self.count += 1
        plan = [("container", n, r) for r in range(CI_REPEAT) for n in CI_COUNTS]
        meta = {"name": "ci-startup", "platforms": [{"name": "container"}]}
        return self._run(f"ci-{self.count}", plan, noise, {"container": effect}, meta)


def ab_seconds_per_side(repeat: int = AB_REPEAT) -> float:
    """One side's steps estimated from the design: `repeat` of each N, plus warm-up."""
    instances = repeat * sum(AB_COUNTS) + 1
    steps = repeat * len(AB_COUNTS)
    return instances * INSTANCE_S + steps * STEP_OVERHEAD_S


def measured_seconds_per_side(run_dirs: list[Path]) -> float:
    """Per side of real `bench ab` runs: the sum of its steps' wait, sampling and
    teardown times, the larger side's, averaged over the runs."""
    per_run = []
    for d in run_dirs:
        run = load_run(d)
        sides: dict[str, float] = {}
        for st in run.steps:
            spent = sum(st.get(k) or 0.0 for k in ("wait_s", "sampling_s", "teardown_s"))
            sides[st["platform"]] = sides.get(st["platform"], 0.0) + spent
        per_run.append(max(sides.values()))
    return sum(per_run) / len(per_run)


def rate_ci(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def fmt_rate(k: int, n: int) -> str:
    lo, hi = rate_ci(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def trial_ab(sim: Sim, noise: Noise, effect: float, trials: int) -> dict:
    from scipy.stats import wilcoxon

    out = {"n": trials, "regression": 0, "inconclusive": 0, "signed_rank": 0}
    for _ in range(trials):
        result = analyse_ab(sim.ab_run(noise, effect), THRESHOLD, ALPHA)
        code = result.exit_code
        out["regression"] += code == ExitCode.REGRESSION
        out["inconclusive"] += code == ExitCode.INCONCLUSIVE
        # The alternative test on the same pairs, for the choice of test.
        d = [p.log_ratio for p in result.used]
        p = wilcoxon(d, alternative="greater").pvalue
        big = result.test.change > v.REGRESSION_FRACTION * THRESHOLD
        out["signed_rank"] += bool(p < ALPHA and big)
    return out


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
    ap.add_argument("--trials", type=int, default=2000, help="A/A trials of ab, realistic")
    ap.add_argument("--fast", action="store_true", help="other models in memory")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument(
        "--measured",
        type=Path,
        nargs="*",
        default=[],
        metavar="RUN_DIR",
        help="real `bench ab` runs whose sampling time per side is the target's figure",
    )
    args = ap.parse_args()
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="bench-gate-", dir=shm if shm.is_dir() else None))
    started = time.monotonic()
    sim = Sim(args.seed, root)
    power_trials = max(200, args.trials // 4)
    other_trials = max(200, args.trials // 8)
    cmp_trials = max(200, args.trials // 8)
    lines = [
        f"`benchmarks/gate.py --trials {args.trials}{' --fast' if args.fast else ''}`: "
        f"threshold {THRESHOLD:.0%}, alpha {ALPHA:g}. Rates are shares of trials with "
        "95% Clopper-Pearson intervals; 'regression' at +0% is the false-alarm rate.",
        "",
        f"ab design: counts {list(AB_COUNTS)}, {AB_REPEAT} pairs per N "
        f"({AB_REPEAT * len(AB_COUNTS)} pairs) after a warm-up instance per side; estimated "
        f"sampling "
        f"{ab_seconds_per_side():.0f} s per side ({INSTANCE_S} s per instance + "
        f"{STEP_OVERHEAD_S} s per step).",
        "",
        "| tool | noise model | change | trials | regression (exit 1) | inconclusive "
        "(exit 6) | signed-rank instead |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    realistic: dict[float, dict] = {}
    try:
        for noise in MODELS:
            sim.files = noise == REALISTIC or not args.fast
            for effect in EFFECTS:
                if noise == REALISTIC:
                    trials = args.trials if effect == 0 else power_trials
                else:
                    trials = other_trials
                r = trial_ab(sim, noise, effect, trials)
                if noise == REALISTIC:
                    realistic[effect] = r
                lines.append(
                    f"| ab | {noise.label} | +{effect:.0%} | {trials} | "
                    f"{fmt_rate(r['regression'], trials)} | "
                    f"{fmt_rate(r['inconclusive'], trials)} | "
                    f"{fmt_rate(r['signed_rank'], trials)} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
        lines += [
            "",
            "| tool | noise model | change | trials | 1 baseline: regression | "
            "1 baseline: inconclusive | 5 baselines: regression | 5 baselines: inconclusive |",
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
        sampling_s = measured_seconds_per_side(args.measured)
        sampling_what = f"measured over {len(args.measured)} real runs"
    else:
        sampling_s = ab_seconds_per_side()
        sampling_what = "ESTIMATED from the design (pass --measured RUN_DIR... to measure)"
    fa = realistic[0.0]
    pw = realistic[0.10]
    targets = [
        ("ab false alarms, realistic", fa["regression"] / fa["n"], "<= 1%", 0.01),
        ("ab power at +10%, realistic", pw["regression"] / pw["n"], ">= 95%", -0.95),
        (
            f"ab sampling per side (s), {sampling_what}",
            sampling_s,
            "<= 120",
            120,
        ),
    ]
    lines += ["", "| target | value | required | met |", "| --- | --- | --- | --- |"]
    met = []
    for name, value, need, bound in targets:
        # A negative bound is a minimum, a positive one a maximum.
        ok = value >= -bound if bound < 0 else value <= bound
        met.append(ok)
        shown = f"{value:.1%}" if value <= 1 else f"{value:.0f}"
        lines.append(f"| {name} | {shown} | {need} | {'yes' if ok else 'NO'} |")
    lines += ["", f"Took {(time.monotonic() - started) / 60:.1f} min."]
    print("\n".join(lines))
    return 0 if all(met) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
