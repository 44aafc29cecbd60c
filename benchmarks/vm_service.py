"""A VM's time to HTTP ready through a forwarded port against its console marker
(issue 24 §3): stored runs of scenarios/vm-service.yaml, read with bench's own reader.

Per machine (qemu microvm, qemu pc, libvirt) two platforms differ only in `ready:`: the
marker (the bench image's init prints it first), and an HTTP 200 from the guest's busybox
httpd through the port forwarded from this host's loopback (after the init loaded the
NIC's modules, set eth0 and started httpd). microvm also boots without a NIC
(network: none): the NIC's cost to the marker. At n=3 per platform no test is run: each
difference is given with the min-max ranges of both sides and whether they are apart.
Under TCG every figure is emulation's, not virtualisation's (marked so).

    bench run scenarios/vm-service.yaml
    python benchmarks/vm_service.py RUN_DIR... [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, write_section  # noqa: E402  (this script's folder is on sys.path)

from bench.model.results import load_run  # noqa: E402

HEADING = "# VM readiness by HTTP through a forwarded port vs the console marker (issue 24 §3)"
MACHINES = ("microvm", "pc", "libvirt")
# The pairs compared: (what, later platform, earlier platform).
PAIRS = [
    *((f"{m}: HTTP 200 after the marker", f"{m}-http", f"{m}-marker") for m in MACHINES),
    ("microvm: the NIC's cost to the marker", "microvm-marker", "microvm-nonet"),
]


def ranges_apart(a: list[float], b: list[float]) -> bool:
    return min(a) > max(b) or min(b) > max(a)


def collect(run_dirs: list[Path]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Samples by platform over all runs; each run's metadata."""
    by_platform: dict[str, list[dict]] = defaultdict(list)
    metas = []
    for d in run_dirs:
        run = load_run(d)
        metas.append(run.metadata)
        for s in run.iter_samples():
            by_platform[str(s["platform"])].append(s)
    return by_platform, metas


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def text(run_dirs: list[Path]) -> str:
    by_platform, metas = collect(run_dirs)
    table = [
        "| platform | ready by | ok/all | ready_s median (min-max) | guest uptime at marker "
        "| accel | probes (median) |",
        "| --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    ready: dict[str, list[float]] = {}
    for name, samples in by_platform.items():
        ok = [s for s in samples if s["ok"]]
        ready[name] = [float(s["ready_s"]) for s in ok]
        uptimes = [float(s["guest_uptime_s"]) for s in ok if s["guest_uptime_s"] is not None]
        probes = [int(s["ready_probes"]) for s in ok if s["ready_probes"] is not None]
        accel = sorted({str(s["accel"]) for s in ok}) or ["-"]
        table.append(
            f"| {name} | {samples[0]['ready_kind']} | {len(ok)}/{len(samples)} | "
            f"{seconds(ready[name]) if ok else '-'} | "
            f"{seconds(uptimes) if uptimes else '-'} | "
            f"{', '.join(accel)}{' (emulated)' if 'tcg' in accel else ''} | "
            f"{statistics.median(probes) if probes else '-'} |"
        )
    diffs = []
    for what, later, earlier in PAIRS:
        a, b = ready.get(later), ready.get(earlier)
        if not a or not b:
            diffs.append(f"- {what}: not measured")
            continue
        d = statistics.median(a) - statistics.median(b)
        apart = "ranges apart" if ranges_apart(a, b) else "ranges overlap: not resolved"
        diffs.append(
            f"- {what}: {d:+.2f} s (medians {statistics.median(a):.2f} s against "
            f"{statistics.median(b):.2f} s, n={len(a)} and {len(b)}; {apart})"
        )
    loads = [f"{(m.get('host') or {}).get('load_avg_1m', 0):.1f}" for m in metas]
    nic = sorted(
        {
            str(e.get("nic_backend"))
            for m in metas
            for e in (m.get("engines") or {}).values()
            if isinstance(e, dict) and e.get("nic_backend")
        }
    )
    runs = ", ".join(f"{m.get('run_id')} ({m.get('started_at')})" for m in metas)
    return "\n".join(
        [
            HEADING,
            "",
            f"Runs: {runs}. Host: {host_line()}. Host load (1 min) at each run's start: "
            f"{', '.join(loads)} on {(metas[0].get('host') or {}).get('cpu_cores')} cores "
            "(other sessions' tests and VMs shared it). `bench run scenarios/vm-service.yaml`, "
            "then `python benchmarks/vm_service.py RUN_DIR`. libvirt's NIC: "
            f"{', '.join(nic) or 'not recorded'} (libvirt 9.0 refuses passt: QEMU's slirp on "
            "the domain's command line).",
            "",
            *table,
            "",
            "Differences of medians (no test at these n; whether the min-max ranges are apart):",
            "",
            *diffs,
            "",
            "Reading it. The marker is the init's first line, so marker to HTTP 200 is the "
            "guest's userspace work for its service (insmod of the virtio and virtio_net "
            "modules, eth0 up, httpd bound) plus the probe's path (slirp in the VMM, a "
            "probe every 5-20 ms; `ready_window_s` bounds its lateness per sample), all "
            "under TCG here: the emulated guest's insmod and its first packets are slow, "
            "so the figure says what HTTP readiness adds under emulation, not under KVM.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    out = text(args.run_dirs)
    print(out)
    if not args.no_write:
        write_section(Path(__file__).parent / "results.md", HEADING, out)


if __name__ == "__main__":
    main()
