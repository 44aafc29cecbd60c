"""`bench ab` on the real engines: A/A and A/B runs of scenarios/ci-ab.yaml. A benchmark,
not a test (about 4 minutes per run here at ci-ab.yaml's 200 repeats).

Runs `bench ab scenarios/ci-ab.yaml --baseline baseline --candidate same` (A/A: must
exit 0) and `--candidate slower` (A/B: its init starts 20 ms late; must exit 1),
alternately, RUNS times each, then prints a Markdown table of every run (exit code,
change, interval, MDE, pairs, time per side) and the counts. With --tabulate DIR it only
tabulates the runs already stored under DIR.

With --flaky PCT (issue 21) every platform's command first fails PCT% of the time
(busybox sh's $RANDOM, before the marker: the instance exits and never becomes ready),
then runs the image's init as before (`slower` after its 20 ms sleep): the A/A runs must
still exit 0 and the A/B runs 1. The scenario is ci-ab.yaml with those commands,
written to a temporary file.

    .venv/bin/python benchmarks/ab_check.py [--runs 10] [--flaky 1] [--out DIR]
    .venv/bin/python benchmarks/ab_check.py --tabulate DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.judge.ab import analyse_ab  # noqa: E402
from bench.model.results import load_run  # noqa: E402

EXPECTED = {"same": 0, "slower": 1}


SCENARIO = REPO / "scenarios" / "ci-ab.yaml"


def flaky_scenario(percent: int, directory: Path) -> Path:
    """ci-ab.yaml whose every platform's instance fails `percent`% of the time."""
    doc = yaml.safe_load(SCENARIO.read_text())
    for platform in doc["platforms"]:
        then = "sleep 0.02; exec /init" if platform["name"] == "slower" else "exec /init"
        fail = f"[ $((RANDOM % 100)) -ge {percent} ] || exit 1"
        platform["command"] = ["sh", "-c", f"{fail}; {then}"]
    path = directory / f"ci-ab-flaky{percent}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_all(runs: int, out: Path, scenario: Path = SCENARIO) -> None:
    for i in range(runs):
        for candidate in EXPECTED:
            started = time.monotonic()
            p = subprocess.run(
                [sys.executable, "-m", "bench", "ab", str(scenario)]
                + ["--baseline", "baseline", "--candidate", candidate, "--out", str(out)],
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            took = time.monotonic() - started
            said = (p.stderr.strip().splitlines() or [""])[-1]
            print(
                f"run {i + 1} {candidate}: exit {p.returncode} in {took:.0f} s: {said}",
                file=sys.stderr,
            )


def side_seconds(run) -> float:
    """The larger side's time in its steps: wait, sampling and teardown."""
    sides: dict[str, float] = {}
    for st in run.steps:
        spent = sum(st.get(k) or 0.0 for k in ("wait_s", "sampling_s", "teardown_s"))
        sides[st["platform"]] = sides.get(st["platform"], 0.0) + spent
    return max(sides.values()) if sides else 0.0


def tabulate(root: Path) -> str:
    rows = []
    for d in sorted(root.iterdir()):
        if not (d / "metadata.json").is_file():
            continue
        run = load_run(d)
        if not (run.metadata.get("ab") or {}).get("pairs"):
            continue
        rows.append((run.metadata.get("started_at"), analyse_ab(run), side_seconds(run)))
    lines = [
        "| started (UTC) | candidate | expected | exit | verdict | gates fired | change, all "
        "pairs | p | MDE | failed: baseline / candidate (p) | pairs | s per side |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    tally: dict[tuple[str, int], int] = {}
    for started, r, secs in rows:
        code = int(r.exit_code)
        t, f = r.test, r.failures
        tally[(r.candidate, code)] = tally.get((r.candidate, code), 0) + 1
        lines.append(
            f"| {started} | {r.candidate} | {EXPECTED.get(r.candidate, '?')} | {code} "
            f"| {r.verdict} | {', '.join(r.fired) or '-'} | {t.change:+.1%} | {t.p_slower:.2g} "
            f"| {r.mde:+.1%} | {f.baseline} / {f.candidate} ({f.p:.2g}) | {t.n} | {secs:.0f} |"
        )
    lines.append("")
    for candidate, expected in EXPECTED.items():
        got = {code: n for (c, code), n in tally.items() if c == candidate}
        total = sum(got.values())
        summary = ", ".join(f"exit {code}: {n}" for code, n in sorted(got.items()))
        lines.append(
            f"- `{candidate}` (expected exit {expected}): {total} runs; {summary or 'none'}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of each candidate")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ab-check")
    ap.add_argument("--tabulate", type=Path, help="only tabulate the runs stored here")
    ap.add_argument("--flaky", type=int, help="every instance fails this %% of the time")
    args = ap.parse_args()
    if args.tabulate is None and args.flaky:
        with tempfile.TemporaryDirectory(prefix="bench-ab-check-") as tmp:
            run_all(args.runs, args.out, flaky_scenario(args.flaky, Path(tmp)))
    elif args.tabulate is None:
        run_all(args.runs, args.out)
    table = tabulate(args.tabulate or args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
