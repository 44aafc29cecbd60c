"""What bench itself costs: overhead against a bare docker-SDK loop, CPU while
waiting, and scale. A benchmark that prints figures, not a test.

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--out benchmarks/results.md]

Exit 1 when a target is missed (the table marks it).

1. N=64 busybox containers, 8 launches in flight: a bare docker-SDK script (the
   reference) and `bench run` of the same scenario, interleaved, `--rounds` times each.
   Compared: launch-to-all-ready wall time, and the median of per-container ready
   time (launch call to marker line).
2. bench's own CPU while waiting for 2 VMs to boot (TCG here), as % of one core.
3. `bench run` at N = 32, 64, 128, 256 containers: peak RSS and CPU seconds per
   instance of the bench process (os.wait4 rusage of that one child).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
IMAGE = "bench/busybox:latest"
MARKER = b"BENCH_READY"
SECTION = "# bench overhead"

TARGETS = {
    "wall_ratio": 1.10,
    "ready_median_ratio": 1.05,
    "wait_cpu_pct": 2.0,
    "peak_rss_mib_256": 200.0,
    "cpu_per_instance_ratio": 1.5,
}


# -- 1. the reference: a bare docker-SDK loop ----------------------------------------


def reference(n: int, concurrency: int) -> dict[str, float]:
    """Start n containers (concurrency at a time), wait for every marker, remove them.

    Written plainly, the way one would without bench: a thread per launch slot
    creates, attaches and starts; a thread per container reads its stream.
    """
    from concurrent.futures import ThreadPoolExecutor

    api = docker.APIClient(version="auto", timeout=60)
    tag = f"overhead-ref-{os.getpid()}-{time.monotonic_ns()}"
    ready_s: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    ids: list[str] = []

    def read_until_marker(sock, t0: float) -> None:
        buf = b""
        while MARKER not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        with lock:
            ready_s.append(time.monotonic() - t0)
            if len(ready_s) == n:
                done.set()

    def launch(i: int) -> None:
        t0 = time.monotonic()
        c = api.create_container(
            IMAGE,
            name=f"{tag}-{i}",
            labels={"overhead.ref": tag},
            detach=True,
            host_config=api.create_host_config(network_mode="none"),
        )
        with lock:
            ids.append(c["Id"])
        sock = api.attach_socket(c["Id"], params={"stdout": 1, "stream": 1, "logs": 1})
        raw = getattr(sock, "_sock", sock)
        threading.Thread(target=read_until_marker, args=(raw, t0), daemon=True).start()
        api.start(c["Id"])

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(launch, range(n)))
        done.wait(120)
        wall = time.monotonic() - start
    finally:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: api.remove_container(i, force=True), ids))
        api.close()
    if len(ready_s) != n:
        raise RuntimeError(f"reference: only {len(ready_s)} of {n} containers became ready")
    total = time.monotonic() - start
    return {"wall_s": wall, "ready_median_s": statistics.median(ready_s), "total_s": total}


# -- bench as a user runs it ----------------------------------------------------------


def bench_run(scenario: str, workdir: Path) -> tuple[Path, dict[str, float]]:
    """`bench run` as a child process; returns its run dir and that child's rusage."""
    path = workdir / f"s-{time.monotonic_ns()}.yaml"
    path.write_text(scenario)
    out = workdir / "results"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    stdout = proc.stdout.read().decode()
    stderr = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"bench run failed ({proc.returncode}): {stderr[-2000:]}")
    run_dir = Path(stdout.strip().splitlines()[-1])
    return run_dir, {
        "process_s": time.monotonic() - t0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }


def containers_scenario(n: int, concurrency: int = 8) -> str:
    return (
        f"name: overhead-{n}\nsettle: 0s\ntimeout: 120s\ncounts: [{n}]\n"
        f"launch: {{concurrency: {concurrency}}}\n"
        "platforms:\n  - {name: container, backend: docker, image: busybox}\n"
    )


def step_figures(run_dir: Path) -> dict[str, float]:
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    steps = [json.loads(x) for x in (run_dir / "steps.jsonl").read_text().splitlines()]
    if not all(s["ok"] for s in samples):
        raise RuntimeError(f"{run_dir}: some instances failed")
    return {
        "wall_s": steps[0]["all_ready_s"],
        "ready_median_s": statistics.median(s["ready_s"] for s in samples),
        "sampling_s": steps[0].get("sampling_s", 0.0),
        "teardown_s": steps[0]["teardown_s"],
    }


# -- 2. CPU while waiting for VMs -------------------------------------------------------


def cpu_while_waiting_for_vms(n: int = 2) -> dict[str, float]:
    """Run the runner in this process; measure process CPU from the step's start to
    the last instance ready (launch calls included, so this is an upper bound)."""
    from bench.backends import make_backend
    from bench.runner import NoEvents, Runner
    from bench.scenario import LoadedScenario, parse_scenario

    text = (
        f"name: overhead-vm\nsettle: 0s\ntimeout: 120s\ncounts: [{n}]\n"
        "platforms:\n  - {name: vm, backend: libvirt, image: busybox, accel: auto}\n"
    )
    sc = parse_scenario(text)
    backends = {p.name: make_backend(p) for p in sc.platforms}
    marks: dict[str, float] = {}

    class Events(NoEvents):
        ready = 0

        def step_started(self, index, total, step):
            marks["cpu0"], marks["wall0"] = time.process_time(), time.monotonic()

        def instance_done(self, step, ok):
            self.ready += 1
            if self.ready == n:
                marks["cpu1"], marks["wall1"] = time.process_time(), time.monotonic()

    class Sink:
        def add_samples(self, rows):
            marks["accel"] = rows[0].get("accel") if rows else None

        def add_step(self, row):
            pass

    try:
        for b in backends.values():
            b.preflight()
            b.prepare()
        Runner(
            LoadedScenario(sc, None, text), f"overhead-vm-{os.getpid()}", backends, Sink(), Events()
        ).run()
    finally:
        for b in backends.values():
            b.close()
    wall = marks["wall1"] - marks["wall0"]
    cpu = marks["cpu1"] - marks["cpu0"]
    return {"wall_s": wall, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall, "accel": marks["accel"]}


# -- the table ---------------------------------------------------------------------------


def host_line() -> str:
    v = docker.APIClient(version="auto").version()
    return f"{results_md.host_line()}, Docker {v['Version']}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Per-round ratios vary by a few % on a shared 2-core host: 5 interleaved rounds
    # give a median that a single slow round does not move.
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    ap.add_argument("--scale", default="32,64,128,256")
    args = ap.parse_args()

    rows: list[tuple[str, str, str, str]] = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        # 1. interleaved: ref, bench, ref, bench, ...
        ref, via, process = [], [], []
        bench_run(containers_scenario(8), work)  # warm-up: image cache, imports
        for r in range(args.rounds):
            ref.append(reference(64, 8))
            run_dir, usage = bench_run(containers_scenario(64), work)
            via.append(step_figures(run_dir))
            process.append(usage["process_s"])
            print(
                f"round {r + 1}: reference {ref[-1]['wall_s']:.2f}s, "
                f"bench {via[-1]['wall_s']:.2f}s",
                file=sys.stderr,
            )
        # Each round pairs one reference with the bench run right after it.
        wall_ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(ref, via, strict=True)]
        ready_ratios = [
            b["ready_median_s"] / a["ready_median_s"] for a, b in zip(ref, via, strict=True)
        ]
        ref_wall = statistics.median(x["wall_s"] for x in ref)
        bench_wall = statistics.median(x["wall_s"] for x in via)
        ref_ready = statistics.median(x["ready_median_s"] for x in ref)
        bench_ready = statistics.median(x["ready_median_s"] for x in via)
        wall_ratio, ready_ratio = statistics.median(wall_ratios), statistics.median(ready_ratios)
        rows += [
            (
                "N=64 launch-to-all-ready wall, bench / reference (median of rounds; range)",
                f"{bench_wall:.2f} s / {ref_wall:.2f} s",
                f"{wall_ratio:.2f} ({min(wall_ratios):.2f}-{max(wall_ratios):.2f})",
                f"<= {TARGETS['wall_ratio']:.2f}",
                wall_ratio <= TARGETS["wall_ratio"],
            ),
            (
                "N=64 median ready_s, bench / reference (median of rounds; range)",
                f"{bench_ready * 1000:.0f} ms / {ref_ready * 1000:.0f} ms",
                f"{ready_ratio:.2f} ({min(ready_ratios):.2f}-{max(ready_ratios):.2f})",
                f"<= {TARGETS['ready_median_ratio']:.2f}",
                ready_ratio <= TARGETS["ready_median_ratio"],
            ),
            (
                "N=64 end to end: bench process (start-up, memory sampling, teardown) / "
                "reference incl. teardown",
                f"{statistics.median(process):.2f} s / "
                f"{statistics.median(x['total_s'] for x in ref):.2f} s",
                "for information",
                "",
                None,
            ),
        ]
        # 2. CPU while waiting for VMs
        vm = cpu_while_waiting_for_vms(2)
        print(f"vm wait: {vm}", file=sys.stderr)
        rows.append(
            (
                f"CPU of bench while 2 VMs boot ({vm['accel']}, {vm['wall_s']:.1f} s)",
                f"{vm['cpu_s']:.3f} CPU s",
                f"{vm['cpu_pct']:.2f} % of a core",
                f"<= {TARGETS['wait_cpu_pct']:.0f} %",
                vm["cpu_pct"] <= TARGETS["wait_cpu_pct"],
            )
        )
        # 3. scale
        per_instance = {}
        for n in (int(x) for x in args.scale.split(",")):
            run_dir, usage = bench_run(containers_scenario(n), work)
            fig = step_figures(run_dir)
            per_instance[n] = usage["cpu_s"] / n
            print(f"N={n}: {usage}, {fig}", file=sys.stderr)
            rows.append(
                (
                    f"bench run N={n}: peak RSS, CPU s per instance",
                    f"{usage['peak_rss_mib']:.0f} MiB, {usage['cpu_s']:.2f} CPU s total",
                    f"{per_instance[n] * 1000:.1f} ms/instance",
                    f"<= {TARGETS['peak_rss_mib_256']:.0f} MiB at 256" if n == 256 else "",
                    usage["peak_rss_mib"] <= TARGETS["peak_rss_mib_256"] if n == 256 else None,
                )
            )
        lo, hi = min(per_instance), max(per_instance)
        marginal = (per_instance[hi] * hi - per_instance[lo] * lo) / (hi - lo)
        rows.append(
            (
                f"CPU per instance N={hi} / N={lo} (marginal {marginal * 1000:.1f} ms/instance)",
                f"{per_instance[hi] * 1000:.1f} / {per_instance[lo] * 1000:.1f} ms",
                f"{per_instance[hi] / per_instance[lo]:.2f}",
                f"<= {TARGETS['cpu_per_instance_ratio']:.1f}",
                per_instance[hi] / per_instance[lo] <= TARGETS["cpu_per_instance_ratio"],
            )
        )

    elapsed = time.monotonic() - t_start
    table = ["| measure | values | result | target | met |", "| --- | --- | --- | --- | --- |"]
    verdict = {True: "yes", False: "**MISSED**", None: ""}
    table += [f"| {a} | {b} | {c} | {d} | {verdict[ok]} |" for a, b, c, d, ok in rows]
    missed = [a for a, _, _, _, ok in rows if ok is False]
    text = (
        f"{SECTION}\n\nHost: {host_line()}\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`benchmarks/overhead.py --rounds {args.rounds}` in {elapsed / 60:.1f} min.\n\n"
        + "\n".join(table)
        + "\n"
    )
    # First in the file, as ever (it also holds benchmarks/gate.py's verdict figures).
    results_md.write_section(args.out, SECTION, text, first=True)
    print(text)
    if missed:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
