"""Issue 14, target 2: `bench run scenarios/density.yaml` as shipped (containers ramp
to 2048, then the VMs), timed as a user runs it. A benchmark that prints figures.

    .venv/bin/python benchmarks/density.py [--scenario scenarios/density.yaml]
                                           [--out benchmarks/results.md] [--reference]

Targets for the container search: N=2048 reached, every instance ready, ready p95 <= 60
s, and <= 10 min of wall time. The container platform runs first: its time is the time
from the run's start to the end of its last level (teardown included), read from the
run's progress lines as they come; the whole run's wall time (VMs included) is printed
too. Per level: what it added, where its time went (launch calls, wait, settle +
sampling, teardown) and the ready figures. Exit 1 when a target is missed.

Who is the limit: the machine's CPU time (/proc/stat) during the container search
against bench's own (its process's CPU time), and with `--reference` the same ramp done
by a bare docker-SDK loop (same image, limits, levels and launches in flight; no
warm-up, settle or sampling; then every container removed), timed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)
from overhead import EngineWedged, _launch_ready, remove_all

from bench.model.stats import percentile

REPO = Path(__file__).resolve().parent.parent
SECTION = "# Density: `bench run scenarios/density.yaml`"
TARGET_N, TARGET_S, TARGET_P95_S = 2048, 600.0, 60.0


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (every state but idle
    and iowait), from /proc/stat's first line (USER_HZ ticks)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def container_ramp(scenario: Path) -> tuple[list[int], dict, int]:
    """The scenario's docker platform as a bare loop runs it: its levels, its limits as
    host-config keys, and the scenario's launches in flight."""
    from bench.plan.scenario import load_scenario

    sc = load_scenario(scenario).scenario
    platform = next(p for p in sc.platforms if p.backend == "docker")
    limits = {
        "mem_limit": platform.memory,
        "memswap_limit": platform.memory,
        "nano_cpus": int(platform.cpus * 1e9) if platform.cpus else None,
    }
    return sc.counts_for(platform), limits, sc.launch.concurrency


def bare_ramp(scenario: Path) -> dict:
    """The scenario's container ramp without bench: the same levels, image, limits and
    launches in flight, each level launched until every marker, then every container
    removed (as many at a time), even on failure; only a wedged dockerd keeps some,
    which it says (overhead.remove_all)."""
    import docker

    levels, limits, concurrency = container_ramp(scenario)
    api = docker.APIClient(version="auto", timeout=60)  # as bench's calls
    ids: list[str] = []
    rows: list[dict] = []
    t0 = time.monotonic()
    try:
        for n in levels:
            got = _launch_ready(api, n - len(ids), concurrency, limits)
            ids += got["ids"]
            rows.append({"n": n, "wall_s": got["wall_s"], "ready_p50_s": got["ready_p50_s"]})
            print(f"bare loop N={n}: {got['wall_s']:.1f} s", file=sys.stderr, flush=True)
        launched = time.monotonic() - t0
    finally:
        t_remove = time.monotonic()
        try:
            not_removed, wedged = remove_all(api, ids, concurrency), False
        except EngineWedged as e:  # said in the table; the bench part is already written
            not_removed, wedged = e.left, True
        api.close()
    teardown = time.monotonic() - t_remove
    return {
        "levels": rows,
        "launch_s": launched,
        "teardown_s": teardown,
        "total_s": launched + teardown,
        "concurrency": concurrency,
        "not_removed": not_removed,
        "wedged": wedged,
    }


def search_checks(
    steps: list[dict], samples: list[dict], meta: dict, container_s: float, mode: str
) -> tuple[list[tuple[str, str, str, bool]], list[dict]]:
    """Target 2's checks of a run's container search, and its steps that ran."""
    c_steps = [st for st in steps if st["platform"] == "container" and st.get("status") == "ran"]
    top = max((st for st in c_steps), key=lambda st: st["n"], default=None)
    all_ready = all(s["ok"] for s in samples if s["platform"] == "container")
    top_p95 = percentile(
        [s["ready_s"] for s in samples if top and s["step"] == top["step"] and s["ok"]], 95
    )
    c_teardowns = [td for td in meta.get("ramp_teardowns") or [] if td["platform"] == "container"]
    # A ramp tears down once at its end (metadata), restart mode after every step.
    left = sum(td["destroy_failures"] for td in c_teardowns) + sum(
        st.get("destroy_failures") or 0 for st in c_steps
    )
    # A search whose teardown stopped short (a wedged engine) did not finish: its time is
    # no measure of the search, and what it left is a failure of its own.
    torn_down = left == 0 and (bool(c_teardowns) or mode == "restart")
    checks = [
        (
            "container N reached",
            f"{top['n'] if top else 0}",
            f">= {TARGET_N}",
            bool(top) and top["n"] >= TARGET_N,
        ),
        ("every container ready", "yes" if all_ready else "no", "all", all_ready),
        (
            f"ready p95 at N={top['n'] if top else '-'} (its new instances)",
            f"{top_p95:.1f} s" if top_p95 is not None else "-",
            f"<= {TARGET_P95_S:.0f} s",
            top_p95 is not None and top_p95 <= TARGET_P95_S,
        ),
        (
            "every container destroyed at the end",
            "yes" if torn_down else f"no: {left} left (run status {meta.get('status')})",
            "all",
            torn_down,
        ),
        (
            "container search wall time (run start to its last teardown)",
            f"{container_s / 60:.1f} min" + ("" if torn_down else " (teardown not finished)"),
            f"<= {TARGET_S / 60:.0f} min",
            torn_down and container_s <= TARGET_S,
        ),
    ]
    return checks, c_steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "density.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    ap.add_argument("--results", type=Path, default=Path("/tmp/bench-density-results"))
    ap.add_argument(
        "--reference",
        action="store_true",
        help="then run the same container ramp with a bare docker-SDK loop (as long again)",
    )
    args = ap.parse_args()
    args.scenario = args.scenario.resolve()

    load_before = os.getloadavg()
    busy_before = busy_cpu_s()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(args.scenario), "--out", str(args.results)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The progress lines ("container N=2048 (+1024) #1: ...") say when each level ended;
    # the first "vm" line's arrival bounds the container search's own time.
    container_done = None
    cpu = {"bench_s": 0.0, "busy_s": 0.0}

    def account() -> None:
        try:
            t = psutil.Process(proc.pid).cpu_times()
            cpu["bench_s"] = t.user + t.system
        except psutil.Error:  # already gone: its last reading stands
            pass
        cpu["busy_s"] = busy_cpu_s() - busy_before

    for line in proc.stderr:
        sys.stderr.write(line)
        if container_done is None and (line.startswith("vm") or "vm: warming up" in line):
            container_done = time.monotonic() - t0
            account()
        elif container_done is None:
            account()  # a run without VMs: the last reading before it ended
    out = proc.stdout.read()
    proc.wait()
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    lines_out = out.strip().splitlines()
    # A run that did not complete prints no directory: its newest one under --results.
    run_dir = (
        Path(lines_out[-1])
        if lines_out
        else max(args.results.iterdir(), key=lambda p: p.stat().st_mtime)
    )
    steps = [json.loads(x) for x in (run_dir / "steps.jsonl").read_text().splitlines()]
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    meta = json.loads((run_dir / "metadata.json").read_text())
    container_s = container_done if container_done is not None else wall
    mode = (meta.get("searches") or {}).get("container", {}).get("mode", "restart")

    lines = [
        "| platform | N | added | ready | launch calls | wait (to all ready) | "
        "settle + sampling | teardown | ready p50 | ready p95 | launches/s | limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for st in steps:
        mine = [s for s in samples if s["step"] == st["step"]]
        ready = [s["ready_s"] for s in mine if s["ok"]]
        starts = [s["queued_s"] + s["start_s"] for s in mine if s.get("start_s") is not None]

        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} s"

        lines.append(
            f"| {st['platform']} | {st['n']} | {st.get('added') or '-'} | "
            f"{len(ready)}/{len(mine)} | {s(max(starts) if starts else None)} | "
            f"{s(st.get('wait_s'))} | {s(st.get('settle_s'))} + {s(st.get('sampling_s'))} | "
            f"{s(st.get('teardown_s'))} | {s(statistics.median(ready) if ready else None)} | "
            f"{s(percentile(ready, 95))} | "
            f"{st['launch_rate_per_s']:.1f} | {st.get('limit') or ''} |"
            if st.get("status") == "ran" and st.get("launch_rate_per_s")
            else f"| {st['platform']} | {st['n']} | {st.get('added') or '-'} | "
            f"{len(ready)}/{len(mine)} | | | | | | | | {st.get('status')} "
            f"{st.get('limit') or ''} |"
        )
    checks, c_steps = search_checks(steps, samples, meta, container_s, mode)
    for td in meta.get("ramp_teardowns") or []:
        lines.append(
            f"| {td['platform']} | ramp teardown | {td['instances']} destroyed | | | | | "
            f"{td['teardown_s']:.1f} s | | | | {td['destroy_failures']} would not go |"
        )
    table = ["| target | value | required | met |", "| --- | --- | --- | --- |"]
    table += [f"| {a} | {b} | {c} | {'yes' if ok else '**MISSED**'} |" for a, b, c, ok in checks]
    cores = os.cpu_count() or 1
    share = cpu["bench_s"] / cpu["busy_s"] if cpu["busy_s"] else float("nan")
    launches_s = sum(st.get("wait_s") or 0.0 for st in c_steps)
    limit = [
        "",
        "Who is the limit, during the container search:",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| machine CPU busy (all {cores} cores, /proc/stat) | {cpu['busy_s']:.0f} CPU s "
        f"of {container_s * cores:.0f} ({cpu['busy_s'] / (container_s * cores):.0%}) |",
        f"| of which bench's own process | {cpu['bench_s']:.1f} CPU s ({share:.1%}) |",
        f"| bench: launches to all ready, every level | {launches_s:.0f} s |",
    ]
    shown = args.scenario.relative_to(REPO) if args.scenario.is_relative_to(REPO) else args.scenario
    head = (
        f"{SECTION}\n\nHost: {results_md.host_line()}\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`benchmarks/density.py{' --reference' if args.reference else ''}` (`bench run "
        f"{shown}`, containers in {mode} mode): whole run {wall / 60:.1f} min (VMs "
        f"included), run {meta['run_id']}. Load average (1, 5, 15 min) before "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.1f}' for x in load_after)}; run status {meta.get('status')}.\n\n"
        + "\n".join(table)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    # Kept before the reference runs (as long again, and an engine may wedge in it).
    results_md.write_section(args.out, SECTION, head + "\n".join(limit) + "\n")
    if args.reference:
        time.sleep(30)  # let the teardown's after-effects (memory, kernel work) settle
        ref = bare_ramp(args.scenario)
        settles = sum(st.get("settle_s") or 0.0 for st in c_steps)
        removal = (
            f"{ref['teardown_s']:.0f} s"
            if not ref["wedged"]
            else f"dockerd deadlocked with {ref['not_removed']} left, after "
            f"{ref['teardown_s']:.0f} s"
        )
        limit += [
            f"| bare docker-SDK loop, same ramp ({ref['concurrency']} in flight): launches "
            f"to all ready, every level | {ref['launch_s']:.0f} s "
            f"(bench / loop: {launches_s / ref['launch_s']:.2f}) |",
            f"| bare loop: removal of every container | {removal} |",
            f"| bare loop: whole ramp (launches, removal) | {ref['total_s'] / 60:.1f} min |",
        ]
        if not ref["wedged"]:
            limit.append(
                f"| bench's container search without its {settles:.0f} s of settle / bare loop "
                f"| {(container_s - settles) / ref['total_s']:.2f} |"
            )
        limit += [
            f"| bare loop N={r['n']}: launch to all ready, ready p50 | {r['wall_s']:.1f} s, "
            f"{r['ready_p50_s']:.1f} s |"
            for r in ref["levels"][-3:]
        ]
    text = head + "\n".join(limit) + "\n"
    results_md.write_section(args.out, SECTION, text)
    print(text)
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
