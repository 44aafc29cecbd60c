"""Issue 20: does a density ramp to 2048 containers end cleanly on this Docker Engine?

    .venv/bin/python benchmarks/teardown.py [--runs 10] [--scenario scenarios/density.yaml]
                                            [--out benchmarks/results.md]

Runs the scenario's docker platform alone (the VMs left out), as `bench run` does it,
`--runs` times in a row, and for each run records: its exit code, the wall time of the
container search (launches, waits, settle, sampling and the ramp's teardown), the
teardown's own time, how many instances it destroyed, and what is left afterwards with
bench's labels (asked of the engine, not of bench). A run that stops on a wedged engine
(exit 3: dockerd 20.10's removal deadlock, moby/moby#42545) ends the series: nothing
can be measured on that engine until it is restarted, which this script never does.

Targets: every run ends with exit 0 and nothing left; the median search time within
1.10x of the search time measured before the change (REFERENCE_SEARCH_S). Exit 1 when
a target is missed, 3 when the engine wedged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)
import yaml

REPO = Path(__file__).resolve().parent.parent
HEADING = "# Ending a density ramp cleanly (issue 20)"
# Issue 14's container search (scenarios/density.yaml, ramp to 2048), median of the
# three runs of 2026-11-30 after the kill-first teardown: 9.7 min (results.md).
REFERENCE_SEARCH_S = 9.7 * 60


def containers_only(scenario: Path, folder: Path) -> Path:
    """The scenario with its docker platform alone."""
    raw = yaml.safe_load(scenario.read_text())
    raw["platforms"] = [p for p in raw["platforms"] if p.get("backend") == "docker"]
    raw["name"] = f"{raw['name']}-containers"
    out = folder / "containers.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def left_behind(run_id: str) -> int:
    api = docker.APIClient(version="auto", timeout=60)
    try:
        return len(api.containers(all=True, filters={"label": f"bench.run_id={run_id}"}))
    finally:
        api.close()


def one_run(scenario: Path, results: Path) -> dict:
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(scenario), "--out", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    runs = sorted(results.iterdir(), key=lambda d: d.stat().st_mtime)
    run_dir = runs[-1]
    meta = json.loads((run_dir / "metadata.json").read_text())
    steps = [json.loads(x) for x in (run_dir / "steps.jsonl").read_text().splitlines()]
    teardowns = meta.get("ramp_teardowns") or []
    engines = meta.get("engines") or {}
    return {
        "run_id": meta.get("run_id"),
        "exit": p.returncode,
        "search_s": wall,
        "top_n": max((s["n"] for s in steps if s.get("status") == "ran"), default=0),
        "teardown_s": sum(t["teardown_s"] for t in teardowns),
        "destroyed": sum(t["instances"] for t in teardowns),
        "would_not_go": sum(t["destroy_failures"] for t in teardowns),
        "left": left_behind(meta.get("run_id") or ""),
        "network_sandbox": next(iter(engines.values()), {}).get("network_sandbox"),
        "last_line": (p.stderr.strip().splitlines() or [""])[-1][:160],
    }


def render(rows: list[dict], version: str, met: dict[str, bool], ramp: str) -> str:
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        f"Measured {day} on {results_md.host_line()}, Docker Engine {version}, "
        f"`benchmarks/teardown.py` (the density scenario's docker platform alone: {ramp}, "
        "kill-all then remove-all teardown).",
        "",
        "| run | exit | top N | search (incl. teardown) | teardown | destroyed | "
        "left | network sandbox |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r['exit']} | {r['top_n']} | {r['search_s'] / 60:.1f} min | "
            f"{r['teardown_s']:.0f} s | {r['destroyed']} | {r['left']} | "
            f"{'yes' if r['network_sandbox'] else 'no'} |"
        )
    times = [r["search_s"] for r in rows]
    lines += [
        "",
        f"Clean ends: {sum(r['exit'] == 0 and r['left'] == 0 for r in rows)} of {len(rows)} "
        f"({'met' if met['clean'] else 'MISSED'}: every run). Median search "
        f"{statistics.median(times) / 60:.1f} min against {REFERENCE_SEARCH_S / 60:.1f} min "
        f"before: {statistics.median(times) / REFERENCE_SEARCH_S:.2f}x "
        f"({'met' if met['time'] else 'MISSED'}: <= 1.10x)."
        if rows
        else "No run finished.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "density.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = ap.parse_args()
    api = docker.APIClient(version="auto", timeout=60)
    version = api.version().get("Version", "?")
    api.close()
    rows: list[dict] = []
    wedged = False
    with tempfile.TemporaryDirectory(prefix="bench-teardown-") as tmp:
        scenario = containers_only(args.scenario.resolve(), Path(tmp))
        for i in range(args.runs):
            results = Path(tmp) / f"results-{i}"
            results.mkdir()
            r = one_run(scenario, results)
            rows.append(r)
            print(
                f"run {i + 1}/{args.runs}: exit {r['exit']}, N={r['top_n']}, search "
                f"{r['search_s'] / 60:.1f} min, teardown {r['teardown_s']:.0f} s, "
                f"{r['left']} left; {r['last_line']}",
                file=sys.stderr,
                flush=True,
            )
            if r["exit"] == 3:
                wedged = True
                print("the engine is wedged: stopping the series", file=sys.stderr)
                break
    times = [r["search_s"] for r in rows]
    met = {
        "clean": bool(rows) and all(r["exit"] == 0 and r["left"] == 0 for r in rows),
        "time": bool(times) and statistics.median(times) <= 1.10 * REFERENCE_SEARCH_S,
    }
    search = yaml.safe_load(args.scenario.read_text())
    ramp = (
        f"ramp {search['density']['start']} -> {search['density']['max']} by "
        f"x{search['density']['factor']}, {search['launch']['concurrency']} launches in flight"
    )
    text = render(rows, version, met, ramp)
    print(text)
    results_md.write_section(args.out, HEADING, text)
    if wedged:
        return 3
    return 0 if all(met.values()) and len(rows) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
