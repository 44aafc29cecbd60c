"""Issue 14: where the Docker Engine's own time goes as containers accumulate, which is
why a density search's launch rate falls with N whoever drives the engine. A benchmark
that prints figures, not a test. Run as root (perf, the host's mount table).

    .venv/bin/python benchmarks/engine_cost.py [--levels 256,1024,2048] [--batch 128]
                                               [--no-perf] [--out benchmarks/results.md]

No bench code on the path being measured: a bare docker-SDK ramp (overhead.py's loop:
bench's image, the density scenario's limits, 16 launches in flight) up to each level.
At each level N:
- idle: the machine's busy CPU over 10 s while nothing is launched (/proc/stat), per
  running container: what the running containers cost the engine while idle;
- the host's mount table (lines of /proc/self/mountinfo), which runc reads at every start;
- a batch of `--batch` more containers (N to N + batch) launched and timed (launches/s), with
  `perf record -a -g` over it: the CPU split by process name (runc, the shims,
  dockerd's libnetwork-setkey hook, dockerd, containerd, this Python) and the share of
  all CPU spent in the kernel producing mountinfo (show_mountinfo, callees included).
Then every container removed (`--remove-workers` at a time), timed and profiled the
same way.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)
from density import busy_cpu_s, container_ramp
from overhead import EngineWedged, _launch_ready, remove_all

REPO = Path(__file__).resolve().parent.parent
SECTION = "# Where the Docker Engine's time goes"
# The shipped density scenario's containers: their limits and launches in flight.
_, LIMITS, CONCURRENCY = container_ramp(REPO / "scenarios" / "density.yaml")
IDLE_S = 10.0
# perf's process names, grouped by what they are in the engine. `exe` is dockerd's own
# binary run again by runc as each container's OCI prestart hook (libnetwork-setkey,
# /proc/<dockerd>/exe): comm is the name of the file executed.
GROUPS = {
    "runc": "runc (create, start)",
    "runc:[0:PARENT]": "runc init (in the container)",
    "runc:[1:CHILD]": "runc init (in the container)",
    "runc:[2:INIT]": "runc init (in the container)",
    "containerd-shim": "containerd-shim-runc-v2 (one per container)",
    "exe": "dockerd's libnetwork-setkey hook (per start)",
    "dockerd": "dockerd",
    "containerd": "containerd",
    "python": "this script (docker SDK)",
}


def mounts() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def idle_cores() -> float:
    """Busy cores (of the whole machine) over IDLE_S while nothing is launched."""
    time.sleep(2)  # the last batch's exits and log writes
    c0, t0 = busy_cpu_s(), time.monotonic()
    time.sleep(IDLE_S)
    return (busy_cpu_s() - c0) / (time.monotonic() - t0)


def split_by_process(report: str) -> dict[str, float]:
    """CPU share (%) by group of process names, from `perf report --sort comm`."""
    split: dict[str, float] = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.+?)\s*$", line)
        if m:
            group = GROUPS.get(m[2], "other (kernel threads, the rest)")
            split[group] = split.get(group, 0.0) + float(m[1])
    return split


def mountinfo_share(report: str) -> float:
    """CPU share (%) in the kernel's show_mountinfo, callees included, from
    `perf report --children --sort sym`."""
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[k\] show_mountinfo\s*$", line)
        if m:
            return float(m[1])
    return 0.0


def perf_split(data: Path) -> tuple[dict[str, float], float]:
    """The split by process and the mountinfo share of a `perf record -a -g` file."""

    def report(*args: str) -> str:
        cmd = ["perf", "report", "-i", str(data), "--stdio", "-g", "none", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    return (
        split_by_process(report("--no-children", "--sort", "comm")),
        mountinfo_share(report("--children", "--sort", "sym")),
    )


class Profile:
    """`perf record -a -g` of the whole machine over a `with` block, when asked; after
    it, `split` (CPU % by process group) and `mountinfo_pct`."""

    def __init__(self, on: bool, tmp: Path):
        self.on, self.data = on, tmp / f"perf-{time.monotonic_ns()}.data"
        self.split: dict[str, float] = {}
        self.mountinfo_pct = 0.0

    def __enter__(self) -> Profile:
        if self.on:
            self.rec = subprocess.Popen(
                ["perf", "record", "-a", "-g", "-F", "199", "-o", str(self.data)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # perf's own start-up is not the measured work's
        return self

    def __exit__(self, *exc) -> None:
        if self.on:
            self.rec.send_signal(signal.SIGINT)
            self.rec.wait()
            self.split, self.mountinfo_pct = perf_split(self.data)
            self.data.unlink(missing_ok=True)


def measure(levels: list[int], n_batch: int, perf: bool, workers: int) -> dict:
    api = docker.APIClient(version="auto", timeout=60)
    ids: list[str] = []
    rows: list[dict] = []
    out: dict = {"rows": rows, "wedged": "", "removed_s": None, "not_removed": 0}
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-cost-"))
    try:
        for level in levels:
            if level > len(ids):
                ids += _launch_ready(api, level - len(ids), CONCURRENCY, LIMITS)["ids"]
            row = {"n_before": len(ids), "mounts": mounts(), "idle_cores": idle_cores()}
            with Profile(perf, tmp) as prof:
                got = _launch_ready(api, n_batch, CONCURRENCY, LIMITS)
            ids += got["ids"]
            row.update(
                n_after=len(ids),
                rate=n_batch / got["wall_s"],
                ready_p50_s=got["ready_p50_s"],
                split=prof.split,
                mountinfo_pct=prof.mountinfo_pct,
            )
            rows.append(row)
            print(
                f"N={row['n_before']}: {row['mounts']} mounts, idle {row['idle_cores']:.2f}"
                f" cores, {n_batch} more at {row['rate']:.1f}/s",
                file=sys.stderr,
                flush=True,
            )
    except EngineWedged as e:
        out["wedged"] = str(e)
    finally:
        t0 = time.monotonic()
        out["removal_mounts"] = mounts()
        try:
            with Profile(perf and bool(ids), tmp) as prof:
                out["not_removed"] = remove_all(api, ids, workers)
            out["removed_s"] = time.monotonic() - t0
        except EngineWedged as e:
            out["wedged"], out["not_removed"] = str(e), e.left
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            api.close()
        out["removal_split"], out["removal_mountinfo_pct"] = prof.split, prof.mountinfo_pct
        out["n_removed"] = len(ids) - out["not_removed"]
    return out


def render(out: dict, n_batch: int, workers: int, version: str) -> str:
    rows = out["rows"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        SECTION,
        "",
        f"Host: {results_md.host_line()}, Docker {version}",
        "",
        f"Measured {when} by `benchmarks/engine_cost.py`: a bare docker-SDK ramp (no"
        f" bench), {CONCURRENCY} launches in flight; at each N, {IDLE_S:.0f} s idle, then"
        f" {n_batch} more containers under `perf record -a -g`.",
        "",
        "| N running | host mounts | idle: busy cores | idle: CPU ms/s per container"
        f" | {n_batch} more: launches/s | ready p50 | CPU in show_mountinfo |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per = 1000 * r["idle_cores"] / r["n_before"] if r["n_before"] else 0.0
        lines.append(
            f"| {r['n_before']} | {r['mounts']} | {r['idle_cores']:.2f} | {per:.2f}"
            f" | {r['rate']:.1f} | {r['ready_p50_s']:.1f} s | {r['mountinfo_pct']:.0f}% |"
        )
    last = rows[-1]["split"] if rows else {}
    seen = {g for r in rows for g in r["split"]} | set(out.get("removal_split") or {})
    groups = sorted(seen, key=lambda g: -last.get(g, 0.0))
    if groups:
        lines += [
            "",
            "CPU split, launching each batch and removing all (perf samples of both cores,"
            " % of all):",
            "",
            "| process | "
            + " | ".join(f"launching at N={r['n_before']}" for r in rows)
            + " | removing all |",
            "| --- |" + " --- |" * (len(rows) + 1),
        ]
        removal = out.get("removal_split") or {}
        for g in groups:
            cells = " | ".join(f"{r['split'].get(g, 0.0):.0f}%" for r in rows)
            lines.append(f"| {g} | {cells} | {removal.get(g, 0.0):.0f}% |")
        lines.append(
            "| (all processes) in the kernel's show_mountinfo | "
            + " | ".join(f"{r['mountinfo_pct']:.0f}%" for r in rows)
            + f" | {out.get('removal_mountinfo_pct', 0.0):.0f}% |"
        )
    lines.append("")
    if out["removed_s"] is not None:
        rate = out["n_removed"] / out["removed_s"] if out["removed_s"] else 0.0
        lines.append(
            f"Removal of all {out['n_removed']} ({workers} at a time, from"
            f" {out['removal_mounts']} host mounts): {out['removed_s']:.0f} s, {rate:.1f}/s."
        )
    if out["wedged"]:
        lines.append(f"Stopped: {out['wedged']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="256,1024,2048", help="containers running (comma list)")
    ap.add_argument("--batch", type=int, default=128, help="containers launched at each level")
    ap.add_argument("--no-perf", action="store_true", help="no CPU split (perf not needed)")
    ap.add_argument("--remove-workers", type=int, default=4, help="removals in flight")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = ap.parse_args()
    levels = sorted(int(x) for x in args.levels.split(","))
    perf = not args.no_perf
    if perf and shutil.which("perf") is None:
        sys.exit("engine_cost: perf not found (Debian: linux-perf), or run with --no-perf")
    version = docker.APIClient(version="auto").version()["Version"]
    out = measure(levels, args.batch, perf, args.remove_workers)
    text = render(out, args.batch, args.remove_workers, version)
    print(text)
    if out["rows"]:
        results_md.write_section(args.out, SECTION, text)
    return 1 if out["wedged"] or out["not_removed"] else 0


if __name__ == "__main__":
    sys.exit(main())
