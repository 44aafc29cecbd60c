"""How long `bench history` takes on a long history. A benchmark, not a test.

Writes RUNS runs of a ci-startup-like scenario (counts [1, 4], 20 repeats: 100 samples
each, bench's own RunWriter and Sample rows) under a temporary folder this script
removes, then times `bench history FOLDER` in its own process three times: the first
reads every run and writes the index (.bench-history.sqlite), the second and third read
the index. Target (issue 21): 500 runs judged in <= 5 s after the first time.

    .venv/bin/python benchmarks/history_speed.py [--runs 500] [--out benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)

from bench.model.records import Sample
from bench.model.results import RunWriter

REPO = Path(__file__).resolve().parent.parent
SECTION = "# `bench history` on a long history (issue 21)"
TARGET_S = 5.0


def write_run(
    root: Path,
    run_id: str,
    started_at: str,
    level: float,
    rng: np.random.Generator,
    repeats: int = 20,
    scenario: str = "ci-startup",
) -> None:
    """One complete run of ci-startup.yaml's design (counts [1, 4], `repeats` steps of
    each) at log level `level`, its instances lognormal around it (log-sd 0.15), in
    bench's format. tests/test_history.py writes its series with it too."""
    w = RunWriter(root / run_id, run_id)
    w.start(
        {
            "scenario": {"name": scenario, "platforms": [{"name": "container"}]},
            "started_at": started_at,
        }
    )
    samples, step = [], 0
    for rep in range(repeats):
        for n in (1, 4):
            for i in range(n):
                samples.append(
                    Sample(
                        run_id=run_id,
                        step=step,
                        platform="container",
                        kind="container",
                        n=n,
                        repeat=rep,
                        index=i,
                        ok=True,
                        ready_s=math.exp(level + rng.normal(0, 0.15)),
                    )  # fmt: skip
                )
            step += 1
    w.add_samples(samples)
    w.finish("complete")


def write_runs(root: Path, runs: int) -> None:
    rng = np.random.default_rng(0)
    for r in range(runs):
        run_id = f"ci-startup-{20260101 + r // 100:08d}-{r % 100:06d}-{r:08x}"
        started_at = f"2026-{1 + r // 100:02d}-01T00:00:{r % 100:02d}Z"
        write_run(root, run_id, started_at, math.log(0.1) + rng.normal(0, 0.07), rng)


def timed(folder: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "bench", "history", str(folder), "--json"]
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True)
    return time.monotonic() - start, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--out", type=Path, help="write the table into this results file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-speed-"))
    try:
        t0 = time.monotonic()
        write_runs(tmp / "results", args.runs)
        wrote = time.monotonic() - t0
        times = [timed(tmp / "results") for _ in range(3)]
    finally:
        shutil.rmtree(tmp)
    met = all(t <= TARGET_S for t, _ in times[1:])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {when} by `benchmarks/history_speed.py --runs {args.runs}` on "
            f"{results_md.host_line()}: {args.runs} runs of 100 samples each (written in "
            f"{wrote:.0f} s), `bench history FOLDER --json` in its own process.",
            "",
            "| call | wall | exit | target | met |",
            "| --- | --- | --- | --- | --- |",
            f"| first (reads every run, writes the index) | {times[0][0]:.1f} s | {times[0][1]} "
            "| - | - |",
            *(
                f"| {which} (the index) | {t:.1f} s | {code} | <= {TARGET_S:.0f} s | "
                f"{'yes' if t <= TARGET_S else 'NO'} |"
                for which, (t, code) in zip(("second", "third"), times[1:], strict=True)
            ),
            "",
        ]
    )
    print(text)
    if args.out:
        results_md.write_section(args.out, SECTION, text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
