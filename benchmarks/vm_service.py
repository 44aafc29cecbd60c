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
    bench run scenarios/network-vm.yaml      # optional: iperf3 from a microvm to the host
    python benchmarks/vm_service.py RUN_DIR... [--workloads RUN_DIR] [--no-write]
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
from bench.report import workloads as wl  # noqa: E402

HEADING = "# VM readiness by HTTP through a forwarded port vs the console marker (issue 24 §3)"
MACHINES = ("microvm", "pc", "libvirt")
# The pairs compared: (what, later platform, earlier platform).
PAIRS = [
    *((f"{m}: HTTP 200 after the marker", f"{m}-http", f"{m}-marker") for m in MACHINES),
    ("microvm: TCP accepted by the guest after the marker", "microvm-tcp", "microvm-marker"),
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
        "| platform | boot | ready by | ok/all | ready_s median (min-max) | guest uptime at "
        "marker | accel | probes (median) | ready_window_s median (max) |",
        "| --- | --- | --- | ---: | --- | --- | --- | ---: | --- |",
    ]
    ready: dict[str, list[float]] = {}
    windows_of: dict[str, list[float]] = {}
    # How each platform's guest boots, from its engine facts: the kernel's entry (PVH,
    # no firmware; or the bzImage through the firmware) and its machine.
    boots: dict[str, str] = {}
    for m in metas:
        for name, e in (m.get("engines") or {}).items():
            if isinstance(e, dict):
                machine = e.get("machine") or e.get("engine")
                # Runs from before PVH boot (no kernel_entry) booted the bzImage.
                boots[name] = f"{machine}, {e.get('kernel_entry', 'bzimage')}"
    for name, samples in by_platform.items():
        ok = [s for s in samples if s["ok"]]
        ready[name] = [float(s["ready_s"]) for s in ok]
        uptimes = [float(s["guest_uptime_s"]) for s in ok if s["guest_uptime_s"] is not None]
        probes = [int(s["ready_probes"]) for s in ok if s["ready_probes"] is not None]
        accel = sorted({str(s["accel"]) for s in ok}) or ["-"]
        windows = [float(s["ready_window_s"]) for s in ok if s["ready_window_s"] is not None]
        windows_of[name] = windows
        window = f"{statistics.median(windows):.2f} s ({max(windows):.2f})" if windows else "-"
        table.append(
            f"| {name} | {boots.get(name, '-')} | {samples[0]['ready_kind']} | "
            f"{len(ok)}/{len(samples)} | "
            f"{seconds(ready[name]) if ok else '-'} | "
            f"{seconds(uptimes) if uptimes else '-'} | "
            f"{', '.join(accel)}{' (emulated)' if 'tcg' in accel else ''} | "
            f"{statistics.median(probes) if probes else '-'} | {window} |"
        )
    diffs = []
    backwards: list[str] = []  # machines whose HTTP row came before their marker row
    for what, later, earlier in PAIRS:
        a, b = ready.get(later), ready.get(earlier)
        if not a or not b:
            diffs.append(f"- {what}: not measured")
            continue
        d = statistics.median(a) - statistics.median(b)
        apart = "ranges apart" if ranges_apart(a, b) else "ranges overlap: not resolved"
        late = ""
        if later.endswith(("-http", "-tcp")) and windows_of.get(later):
            w = statistics.median(windows_of[later])
            late = f"; its ready instant is uncertain by its ready_window_s, median {w:.2f} s"
        if later.endswith("-http") and d < 0:
            backwards.append(later.removesuffix("-http"))
        diffs.append(
            f"- {what}: {d:+.2f} s (medians {statistics.median(a):.2f} s against "
            f"{statistics.median(b):.2f} s, n={len(a)} and {len(b)}; {apart}{late})"
        )
    # The platforms run one after another on a host whose load drifts (other sessions'
    # runs): a difference between platforms carries that drift too.
    drift = [
        "The platforms ran one after another on a host whose load drifted, so each "
        "difference also carries that drift."
    ]
    nonet, marker = ready.get("microvm-nonet"), ready.get("microvm-marker")
    if (
        nonet
        and marker
        and statistics.median(marker) < statistics.median(nonet)
        and ranges_apart(marker, nonet)
    ):
        drift.append(
            "microvm-marker (a NIC) ahead of microvm-nonet (none) is not read as a NIC "
            "making the boot faster (it only adds a device and, after the marker, the "
            "init's network step): it shows the drift's size."
        )
    if backwards:
        drift.append(
            f"Where HTTP came before the marker ({', '.join(backwards)}), that is the "
            "drift: the same guest prints its marker before it starts httpd."
        )
    drift = [" ".join(drift)]
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
            f"## Run {runs}",
            "",
            f"Host: {host_line()}. Host load (1 min) at each run's start: "
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
            *drift,
            "",
        ]
    )


# Said once, after the runs' tables: what every run's figures share.
READING = [
    "Reading it. The marker is the init's first line, so marker to HTTP 200 is the "
    "guest's userspace work for its service (insmod of the virtio and virtio_net "
    "modules, eth0 up, httpd bound) plus the probe's path (slirp in the VMM, a probe "
    "every 5-20 ms), all under TCG here: the emulated guest's insmod and its first "
    "packets are slow, so the figure says what HTTP readiness adds under emulation, "
    "not under KVM.",
    "",
    "How late ready_s may be. QEMU's slirp accepts a forwarded connection on this "
    "host's side at once and only then connects to the guest, so before the guest's "
    "httpd answers, an attempt does not fail fast (refused) as it does into a "
    "container: it waits out its 1 s timeout. `ready_window_s` (the time from the "
    "start of the last failed attempt to the successful one's end) is therefore often "
    "about 1 s or more against the 5-20 ms of a container's probe: each HTTP figure is "
    "late by up to that.",
    "",
    "Where libvirt's HTTP time went in the first run. A diagnostic run "
    "(diag-20261206-032233-7ea12725, before PVH: the guest's service fetches its own "
    "page and prints SERVED with its uptime, ready by that line) had libvirt's guest "
    "serving at 2.6 and 2.9 s of its own uptime but seen ready 17.5 and 59.4 s after "
    "launch, qemu pc's at 7.5 and 14.5 s of uptime, 21.6 and 30.9 s after launch: the "
    "difference lay in the host's side of the boot under that load (issue 24 §1's "
    "unexplained phase), not in the forward or the guest's network set-up.",
    "",
]


def workloads_text(run_dir: Path) -> str:
    """The tcp workload's table of a scenarios/network-vm.yaml run (bench's own)."""
    run = load_run(run_dir)
    samples = list(run.iter_samples())
    section = wl.build(run.run_id, samples)
    if section is None:
        raise SystemExit(f"{run_dir}: no workload runs in it")
    host = run.metadata.get("host") or {}
    rows = [
        f"| {c['platform']} | {c['workload']} | {c['median']} | {c['spread (min-max, CV)']} "
        f"| {c['n']} | {c['ratio to native (95% CI)']} |"
        for c in wl.display_rows(section)
    ]
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    return "\n".join(
        [
            f"## iperf3 from a microvm on user networking: run {run.run_id}",
            "",
            f"Started {run.metadata.get('started_at')}, host load (1 min) "
            f"{host.get('load_avg_1m', 0):.1f} on {host.get('cpu_cores')} cores. "
            "`bench run scenarios/network-vm.yaml`: one TCP stream, 5 s, the client in the "
            "instance; native's server on 127.0.0.1 and the microvm's too, which the guest "
            "dials as 10.0.2.2 through QEMU's slirp. Table: bench.report.workloads.",
            "",
            "| platform | workload | median | spread | n | ratio to native (95% CI) |",
            "| --- | --- | ---: | --- | ---: | --- |",
            *rows,
            "",
            "Reading it. The microvm's figure is slirp's user-space TCP stack in QEMU's "
            "process plus an emulated guest (TCG): two orders of magnitude below native's "
            "loopback, and not a VM's cost under KVM (so no ratio). Workload runs that "
            "gave no figures:",
            "",
            *failures,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--workloads", type=Path, help="a scenarios/network-vm.yaml run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    # One table per run: runs of different bench versions (the microvm's boot path
    # changed with PVH) are not pooled.
    out = "\n".join([HEADING, "", *(text([d]) for d in args.run_dirs), *READING])
    if args.workloads:
        out += "\n" + workloads_text(args.workloads)
    print(out)
    if not args.no_write:
        write_section(Path(__file__).parent / "results.md", HEADING, out)


if __name__ == "__main__":
    main()
