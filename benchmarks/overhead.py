"""What bench itself costs: overhead against a bare docker-SDK loop, CPU while
waiting, and scale. A benchmark that prints figures, not a test.

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--out benchmarks/results.md]

Exit 1 when a target is missed (the table marks it); exit 3 when dockerd deadlocked and
the sections after that point were not measured (the table says where it stopped).

0. Target 1 of issue 14, whole processes: the bare loop (`overhead.py --reference N C`,
   its own Python process: start-up, imports, create/attach/start, wait for every
   marker, remove) against `bench run` of N=32, 8 at a time, `settle: 0s`, `warmup: 0`
   (the loop neither settles nor warms up), interleaved, `--rounds` times: wall-time
   ratio <= 1.10; and at the default `settle: 3s`, bench's time beyond the settle itself
   and the loop's time, as a share of the loop's step <= 15%. For information, the same
   run with bench's default warm-up (one instance started, waited for and removed before
   the step: measurement the scenario asks for, as its settle is) and what it adds.
   Per-phase times of bench's steps (launch calls, wait, settle + sampling, teardown).
1. N=64 busybox containers, 8 launches in flight: a bare docker-SDK script (the
   reference) and `bench run` of the same scenario, interleaved, `--rounds` times each.
   Compared: launch-to-all-ready wall time, and the median of per-container ready
   time (launch call to marker line).
2. bench's own CPU while waiting for 2 VMs to boot (TCG here), as % of one core.
3. `bench run` at N = 32, 64, 128, 256 containers: peak RSS and CPU seconds per
   instance of the bench process (os.wait4 rusage of that one child).
4. Launch rate (`--rate`, default N=256 and 1024, 16 in flight): sustained launches per
   second (N / launch-to-all-ready) of `bench run` and of the bare loop: who is the limit.
5. Teardown overlapped with the next step's launch (issue 14): N=64 launched alone, and
   launched while the previous 64 are removed; ready p50 and wall time of both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
# bench.runner.executor.STALLED_DESTROY_S, written again: the bare loop's own process
# (`--reference`) must not import bench, whose start-up is what it is compared with.
STALLED_S = 30.0
WEDGED_EXIT = 3  # the bare loop's process: dockerd deadlocked (bench's own exit 3)
STOPPED = "measuring stopped here"  # the table's row when dockerd deadlocked

TARGETS = {
    "process_ratio": 1.10,
    "extra_beyond_settle": 0.15,
    "wall_ratio": 1.10,
    "ready_median_ratio": 1.05,
    "wait_cpu_pct": 2.0,
    "peak_rss_mib_256": 200.0,
    "cpu_per_instance_ratio": 1.5,
}


# -- 1. the reference: a bare docker-SDK loop ----------------------------------------


class EngineWedged(RuntimeError):
    """dockerd stopped answering container calls (its libnetwork deadlock): nothing
    more can be measured until it is restarted. `left`: containers it kept."""

    def __init__(self, message: str, left: int = 0):
        super().__init__(message)
        self.left = left


def reference(n: int, concurrency: int) -> dict[str, float]:
    """Start n containers (concurrency at a time), wait for every marker, remove them.

    Written plainly, the way one would without bench: a thread per launch slot
    creates, attaches and starts; a thread per container reads its stream.
    """
    import docker

    api = docker.APIClient(version="auto", timeout=60)
    start = time.monotonic()
    try:
        got = _launch_ready(api, n, concurrency)  # removes what it started if it fails
        t_remove = time.monotonic()
        remove_all(api, got["ids"])
        removed = time.monotonic() - t_remove
    finally:
        api.close()
    return {
        "wall_s": got["wall_s"],
        "ready_median_s": got["ready_p50_s"],
        "total_s": time.monotonic() - start,
        "launch_s": got["launch_s"],
        "teardown_s": removed,
        "launch_rate_per_s": n / got["wall_s"],
    }


def reference_process(n: int, concurrency: int) -> dict[str, float]:
    """The bare loop as its own process (`python overhead.py --reference N C`): the
    whole-process wall time, as `bench run` is measured, plus the loop's own figures."""
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, __file__, "--reference", str(n), str(concurrency)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if out.returncode == WEDGED_EXIT:
        raise EngineWedged(out.stderr.strip().splitlines()[-1])
    if out.returncode != 0:
        raise RuntimeError(f"the bare loop failed ({out.returncode}): {out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": time.monotonic() - t0}


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
    if proc.returncode == WEDGED_EXIT:  # bench's own exit 3: the engine stopped answering
        raise EngineWedged(f"bench run: {stderr.strip().splitlines()[-1]}")
    if proc.returncode != 0:
        raise RuntimeError(f"bench run failed ({proc.returncode}): {stderr[-2000:]}")
    run_dir = Path(stdout.strip().splitlines()[-1])
    return run_dir, {
        "process_s": time.monotonic() - t0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }


def containers_scenario(
    n: int, concurrency: int = 8, settle: str = "0s", warmup: int | None = None
) -> str:
    """A one-step scenario of n busybox containers; `warmup` None keeps bench's default."""
    warm = "" if warmup is None else f"warmup: {warmup}\n"
    return (
        f"name: overhead-{n}\nsettle: {settle}\n{warm}timeout: 120s\ncounts: [{n}]\n"
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
        "launch_rate_per_s": steps[0]["launch_rate_per_s"],
        **phases(samples, steps[0]),
    }


def phases(samples: list[dict], step: dict) -> dict[str, float]:
    """Where a step's time went: launch calls (first call to the last start returned),
    wait (first call to the last marker), settle + sampling, teardown."""
    starts = [s["queued_s"] + s["start_s"] for s in samples if s.get("start_s") is not None]
    return {
        "phase_launch_s": max(starts) if starts else None,
        "phase_wait_s": step["wait_s"],
        "phase_settle_s": step.get("settle_s") or 0.0,
        "phase_sample_s": step.get("sampling_s") or 0.0,
        "phase_teardown_s": step.get("teardown_s"),
    }


def phase_row(label: str, f: dict[str, float]) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    return (
        f"| {label} | {s(f['phase_launch_s'])} | {s(f['phase_wait_s'])} | "
        f"{s(f['phase_settle_s'])} + {s(f['phase_sample_s'])} | {s(f['phase_teardown_s'])} |"
    )


PHASE_HEAD = [
    "| step | launch calls | wait (to all ready) | settle + sampling | teardown |",
    "| --- | --- | --- | --- | --- |",
]


# -- 5. teardown overlapped with the next launch ------------------------------------------


def teardown_overlap(n: int = 64, concurrency: int = 8, rounds: int = 3) -> dict[str, float]:
    """Would overlapping step k's teardown with step k+1's launch disturb step k+1?

    Per round: n containers launched onto a quiet engine (as restart mode does now),
    then n more launched while the first n are removed (16 at a time, like bench's
    teardown). Medians over rounds of ready p50 and launch-to-all-ready wall time."""
    from concurrent.futures import ThreadPoolExecutor

    api = docker.APIClient(version="auto", timeout=60)
    alone, overlapped = [], []
    try:
        for _ in range(rounds):
            first = _launch_ready(api, n, concurrency)
            alone.append(first)
            with ThreadPoolExecutor(16) as pool:
                removing = [pool.submit(api.remove_container, i, force=True) for i in first["ids"]]
                second = _launch_ready(api, n, concurrency)
                for f in removing:
                    f.result()
            overlapped.append(second)
            remove_all(api, second["ids"])
    finally:
        api.close()

    def med(xs: list[dict], k: str) -> float:
        return statistics.median(x[k] for x in xs)

    return {
        "alone_ready_p50_s": med(alone, "ready_p50_s"),
        "alone_wall_s": med(alone, "wall_s"),
        "overlap_ready_p50_s": med(overlapped, "ready_p50_s"),
        "overlap_wall_s": med(overlapped, "wall_s"),
    }


def remove_all(api, ids: list[str], workers: int = 16) -> int:
    """Remove these containers, `workers` at a time; how many would not go. bench's rule:
    a removal that fails after STALLED_S means a wedged dockerd (its libnetwork deadlock,
    moby/moby#42545): the rest are not tried, and EngineWedged says what is left
    (labelled overhead.ref, removable once dockerd is restarted)."""
    from concurrent.futures import ThreadPoolExecutor

    failed: list[str] = []
    wedged = threading.Event()

    def remove(i: str) -> None:
        if wedged.is_set():
            failed.append(i)
            return
        t0 = time.monotonic()
        try:
            api.remove_container(i, force=True)
        except docker.errors.NotFound:
            pass
        except Exception:
            failed.append(i)
            if time.monotonic() - t0 >= STALLED_S:
                wedged.set()

    with ThreadPoolExecutor(max(1, min(workers, len(ids)))) as pool:
        list(pool.map(remove, ids))
    if wedged.is_set():  # every later call on this dockerd would hang too
        raise EngineWedged(
            f"dockerd deadlocked removing {len(ids)} containers ({len(failed)} left, label "
            "overhead.ref; moby/moby#42545): restart it, remove them, run this again",
            left=len(failed),
        )
    if failed:
        print(f"{len(failed)} containers (label overhead.ref) not removed", file=sys.stderr)
    return len(failed)


def _network_disabled(api) -> bool:
    """bench's rule for `network: none` (DockerBackend.prepare: no libnetwork sandbox on an
    Engine older than 20.10.27, whose removals can deadlock), written again here because
    the bare loop's process imports no bench: the loop makes the same containers."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", str(api.version().get("Version") or ""))
    return m is not None and tuple(map(int, m.groups())) < (20, 10, 27)


def _launch_ready(api, n: int, concurrency: int, limits: dict | None = None) -> dict:
    """n containers launched (concurrency at a time) until every marker: their ids,
    ready p50, wall time and time spent launching. The caller removes them (this
    removes them itself when not all became ready). `limits`: more host-config keys
    (mem_limit, nano_cpus), as a scenario's platform sets them."""
    from concurrent.futures import ThreadPoolExecutor

    tag = f"overhead-td-{os.getpid()}-{time.monotonic_ns()}"
    network_disabled = _network_disabled(api)
    ready: list[float] = []
    ids: list[str] = []
    lock, done = threading.Lock(), threading.Event()

    def read(sock, t0: float) -> None:
        buf = b""
        while MARKER not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        with lock:
            ready.append(time.monotonic() - t0)
            if len(ready) == n:
                done.set()

    def launch(i: int) -> None:
        t0 = time.monotonic()
        c = api.create_container(
            IMAGE,
            name=f"{tag}-{i}",
            labels={"overhead.ref": tag},
            detach=True,
            host_config=api.create_host_config(network_mode="none", **(limits or {})),
            network_disabled=network_disabled,
        )
        with lock:
            ids.append(c["Id"])
        sock = api.attach_socket(c["Id"], params={"stdout": 1, "stream": 1, "logs": 1})
        raw = getattr(sock, "_sock", sock)
        threading.Thread(target=read, args=(raw, t0), daemon=True).start()
        api.start(c["Id"])

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(launch, range(n)))
        launched = time.monotonic() - start
        done.wait(120 + n)
    except BaseException:
        remove_all(api, ids)
        raise
    if len(ready) != n:
        remove_all(api, ids)
        raise RuntimeError(f"only {len(ready)} of {n} containers became ready")
    return {
        "ids": ids,
        "ready_p50_s": statistics.median(ready),
        "wall_s": time.monotonic() - start,
        "launch_s": launched,
    }


def _median_phases(figs: list[dict]) -> dict[str, float]:
    return {k: statistics.median(f[k] for f in figs) for k in figs[0] if k.startswith("phase_")}


def _loop_phases(loops: list[dict]) -> dict[str, float]:
    return {
        "phase_launch_s": statistics.median(x["launch_s"] for x in loops),
        "phase_wait_s": statistics.median(x["wall_s"] for x in loops),
        "phase_settle_s": 0.0,
        "phase_sample_s": 0.0,
        "phase_teardown_s": statistics.median(x["teardown_s"] for x in loops),
    }


# -- 2. CPU while waiting for VMs -------------------------------------------------------


def cpu_while_waiting_for_vms(n: int = 2) -> dict[str, float]:
    """Run the runner in this process; measure process CPU from the step's start to
    the last instance ready (launch calls included, so this is an upper bound)."""
    from bench.backends import make_backend
    from bench.plan.scenario import LoadedScenario, parse_scenario
    from bench.runner import NoEvents, Runner

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

    class Sink:  # a bench.runner.Sink that keeps only the accel the VMs ran under
        def add_samples(self, samples):
            marks["accel"] = samples[0].accel if samples else None

        def add_step(self, step):
            pass

        def update(self, **fields):
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


def measure(args: argparse.Namespace, work: Path, rows: list, phase_lines: list[str]) -> None:
    """Every section in turn, appending to the table's rows and the phase lines as it
    goes: a section that stops (EngineWedged) leaves the earlier ones' figures."""
    # 0. whole processes, N=32, 8 at a time. Like for like, bench neither settles
    # nor warms up (the loop does neither); what its default warm-up (one instance
    # started, waited for and removed before the step) adds is shown beside.
    loops, at0, at3, warm, ph0, ph3 = [], [], [], [], [], []
    for r in range(args.rounds):
        loops.append(reference_process(32, 8))
        run_dir, usage = bench_run(containers_scenario(32, warmup=0), work)
        at0.append(usage["process_s"])
        ph0.append(step_figures(run_dir))
        run_dir, usage = bench_run(containers_scenario(32, settle="3s", warmup=0), work)
        at3.append(usage["process_s"])
        ph3.append(step_figures(run_dir))
        warm.append(bench_run(containers_scenario(32), work)[1]["process_s"])
        print(
            f"round {r + 1}: loop {loops[-1]['process_s']:.2f}s, bench settle 0s "
            f"{at0[-1]:.2f}s, settle 3s {at3[-1]:.2f}s, settle 0s with its default "
            f"warm-up {warm[-1]:.2f}s",
            file=sys.stderr,
        )
    ratios0 = [b / a["process_s"] for a, b in zip(loops, at0, strict=True)]
    # Beyond the settle itself and the loop's own time, as a share of the loop's step.
    extra3 = [(b - 3.0 - a["process_s"]) / a["process_s"] for a, b in zip(loops, at3, strict=True)]
    warm_ratios = [b / a["process_s"] for a, b in zip(loops, warm, strict=True)]
    warm_cost = [b - a for a, b in zip(at0, warm, strict=True)]
    loop_s = statistics.median(x["process_s"] for x in loops)
    rows += [
        (
            "N=32 whole process, settle 0s, warmup 0: bench run / bare loop "
            "(median of rounds; range)",
            f"{statistics.median(at0):.2f} s / {loop_s:.2f} s",
            f"{statistics.median(ratios0):.2f} ({min(ratios0):.2f}-{max(ratios0):.2f})",
            f"<= {TARGETS['process_ratio']:.2f}",
            statistics.median(ratios0) <= TARGETS["process_ratio"],
        ),
        (
            "N=32 whole process, settle 3s, warmup 0: (bench run - 3 s - bare loop) / "
            "bare loop (median of rounds; range)",
            f"{statistics.median(at3):.2f} s - 3 s - {loop_s:.2f} s",
            f"{statistics.median(extra3):.0%} ({min(extra3):.0%}-{max(extra3):.0%})",
            f"<= {TARGETS['extra_beyond_settle']:.0%}",
            statistics.median(extra3) <= TARGETS["extra_beyond_settle"],
        ),
        (
            "N=32 whole process, settle 0s, default warm-up (1 instance): bench run / "
            "bare loop (median of rounds; range); the warm-up's own cost",
            f"{statistics.median(warm):.2f} s / {loop_s:.2f} s",
            f"{statistics.median(warm_ratios):.2f} ({min(warm_ratios):.2f}-"
            f"{max(warm_ratios):.2f}); +{statistics.median(warm_cost):.2f} s",
            "for information",
            None,
        ),
    ]
    phase_lines += [
        phase_row("bare loop N=32 (median)", _loop_phases(loops)),
        phase_row("bench N=32 settle 0s, warmup 0 (median)", _median_phases(ph0)),
        phase_row("bench N=32 settle 3s, warmup 0 (median)", _median_phases(ph3)),
    ]
    # 1. interleaved: ref, bench, ref, bench, ...
    ref, via, process = [], [], []
    for r in range(args.rounds):
        ref.append(reference(64, 8))
        run_dir, usage = bench_run(containers_scenario(64), work)
        via.append(step_figures(run_dir))
        process.append(usage["process_s"])
        print(
            f"round {r + 1}: reference {ref[-1]['wall_s']:.2f}s, bench {via[-1]['wall_s']:.2f}s",
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
    # The slope right after its figures: a later section may stop the measuring.
    lo, hi = min(per_instance), max(per_instance)
    if hi > lo:  # --scale with one N has no slope to show
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
    # 4. launch rate: bench and the bare loop, 16 in flight
    for n in (int(x) for x in args.rate.split(",")):
        loop = reference_process(n, 16)
        run_dir, _ = bench_run(containers_scenario(n, 16), work)
        fig = step_figures(run_dir)
        print(f"rate N={n}: loop {loop}, bench {fig}", file=sys.stderr)
        phase_lines.append(phase_row(f"bare loop N={n}, 16 in flight", _loop_phases([loop])))
        phase_lines.append(phase_row(f"bench N={n}, 16 in flight", fig))
        rows.append(
            (
                f"N={n} launch rate, 16 in flight: bench / bare loop (launches per second "
                "to all ready)",
                f"{fig['launch_rate_per_s']:.1f}/s / {loop['launch_rate_per_s']:.1f}/s",
                f"{fig['launch_rate_per_s'] / loop['launch_rate_per_s']:.2f}",
                "for information",
                None,
            )
        )
    # 5. teardown overlapped with the next launch
    td = teardown_overlap()
    print(f"teardown overlap: {td}", file=sys.stderr)
    rows.append(
        (
            "N=64 launched while the previous 64 are removed / launched alone: ready p50, "
            "launch-to-all-ready wall (median of 3)",
            f"{td['overlap_ready_p50_s'] * 1000:.0f} / "
            f"{td['alone_ready_p50_s'] * 1000:.0f} ms, "
            f"{td['overlap_wall_s']:.2f} / {td['alone_wall_s']:.2f} s",
            f"{td['overlap_ready_p50_s'] / td['alone_ready_p50_s']:.2f}, "
            f"{td['overlap_wall_s'] / td['alone_wall_s']:.2f}",
            "for information",
            None,
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Per-round ratios vary by a few % on a shared 2-core host: 5 interleaved rounds
    # give a median that a single slow round does not move.
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    ap.add_argument("--scale", default="32,64,128,256")
    ap.add_argument("--rate", default="256,1024", help="N values of the launch-rate section")
    ap.add_argument(
        "--reference", nargs=2, type=int, metavar=("N", "CONCURRENCY"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.reference:  # the bare loop as its own process (reference_process)
        try:
            print(json.dumps(reference(*args.reference)))
        except EngineWedged as e:
            print(e, file=sys.stderr)
            return WEDGED_EXIT
        return 0

    rows: list[tuple[str, str, str, str, bool | None]] = []
    phase_lines: list[str] = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        bench_run(containers_scenario(8), work)  # warm-up: image cache, imports
        try:
            measure(args, work, rows, phase_lines)
        except EngineWedged as e:  # every later call on this engine would hang
            print(e, file=sys.stderr)
            rows.append((STOPPED, str(e), "", "", None))

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
        + "\n\nWhere a step's time goes (`steps.jsonl`; launch calls: first call to the last "
        "start returned; the bare loop's teardown is its removal of every container):\n\n"
        + "\n".join(PHASE_HEAD + phase_lines)
        + "\n"
    )
    # First in the file, as ever (it also holds benchmarks/gate.py's verdict figures).
    results_md.write_section(args.out, SECTION, text, first=True)
    print(text)
    if missed:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
    return exit_code(rows)


def exit_code(rows: list[tuple[str, str, str, str, bool | None]]) -> int:
    """1: a target missed; 3: measuring stopped (dockerd deadlocked), so not every
    target was checked, which is not a pass either; 0: every target met."""
    if any(ok is False for *_, ok in rows):
        return 1
    return WEDGED_EXIT if any(row[0] == STOPPED for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
