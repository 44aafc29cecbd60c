"""The libvirt tax: one guest booted by libvirt's createXML and by QEMU directly.
A benchmark that prints figures, not a test.

    .venv/bin/python benchmarks/libvirt_tax.py [--repeat 4] [--counts 1,4,8]
        [--out benchmarks/results.md] [--keep DIR] [--no-write]
    .venv/bin/python benchmarks/libvirt_tax.py --run-dir results/libvirt-tax-...  (tabulate
        a stored run again, nothing started)

It runs scenarios/libvirt-tax.yaml (platforms `qemu` and `libvirt`, the same pc guest)
through `bench ab`, so the two platforms' steps alternate in counterbalanced pairs and
a drift of this shared host lands on both. It then reads the run back with bench's own
loaders (bench.report.frame) and tabulates it with bench.report.tax: per N, both
medians and the tax (libvirt - direct QEMU) with 95% intervals over steps.

While the run goes, a thread reads the engine daemons' memory (PSS of libvirtd or
virtqemud, and virtlogd) twice a second, with the number of this run's libvirt QEMUs
alive: what the daemons grow by per domain, which neither the process view (QEMU's own
PSS) nor the per-instance figures can show. Stored in the run directory as
`libvirt-tax-daemons.json`, so `--run-dir` shows it again.

The run directory goes to a temporary directory and is removed afterwards unless
`--keep DIR` is given. Only this benchmark's section of results.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import results_md  # noqa: E402  benchmarks/results_md.py (this script's folder is on sys.path)

SCENARIO = REPO / "scenarios" / "libvirt-tax.yaml"
SECTION = "# The libvirt tax (issue 11 part 3, issue 14 target 4)"
DAEMONS = ("libvirtd", "virtqemud", "virtlogd")
DAEMON_FILE = "libvirt-tax-daemons.json"
POLL_S = 0.5
MIB = 2**20
# What was checked by hand (ps of both QEMUs, libvirt 9.0.0, QEMU 7.2) and is said next
# to the figures: what is the same, what libvirt's QEMU has that the direct one has not.
GUEST_NOTE = """\
Same guest both ways: the bench busybox pair (same kernel, initramfs and command line,
`acpi=off` added to both), machine `pc` (libvirt: pc-i440fx-7.2, its default, as bench's
domain XML names none; libvirt 9.0 refuses `microvm` with that XML, "No PCI buses
available", so microvm cannot be compared), 256 MiB, 1 vCPU, CPU model qemu64, same
accel. What libvirt's QEMU has besides: `-no-acpi` (bench's XML has no `<acpi/>`; the
`acpi=off` on both command lines makes the guest kernels alike), a PIIX3 USB controller
and a virtio balloon on PCI (libvirt's default devices), `-sandbox on` (seccomp),
`-no-shutdown`, a master-key secret object, and it runs as `libvirt-qemu`, daemonised,
in a cgroup of its own, its serial console a pty relayed by libvirtd's stream (the
direct one: a unix socket bench reads), its log through virtlogd. `create_s` is
createXML (paused) plus opening the console vs spawning QEMU until it connects to QMP
and the serial socket; `start_s` is the resume vs QMP `cont` (both from the launch
call). The process view (PSS) counts the QEMU process only; the host view (drop of
MemAvailable per instance over a step) also sees libvirtd's and virtlogd's growth, the
pty and log buffers. guest_uptime_s: the guest's clock under TCG without ACPI timers
jumps now and then under load (a few instances report tens of seconds), so read its
medians only."""

# `bench ab` exits 0, 1 (libvirt slower by more than the threshold) or 6 (inconclusive):
# all three are a finished run; 4 is a finished run with failed instances.
FINISHED = {0, 1, 4, 6}


# -- the daemons' memory ------------------------------------------------------------


def _pss(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes() -> list[tuple[int, str, bytes]]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            cmd = (d / "cmdline").read_bytes() if comm.startswith("qemu") else b""
        except OSError:
            continue
        out.append((int(d.name), comm, cmd))
    return out


class DaemonPoller(threading.Thread):
    """Every POLL_S: each engine daemon's PSS and CPU seconds, and how many QEMUs of
    this scenario's runs libvirt (`debug-threads=on` is libvirt's `-name` option) and
    bench directly have alive."""

    def __init__(self, name_prefix: str):
        super().__init__(daemon=True, name="libvirt-tax-poller")
        self.prefix = f"guest={name_prefix}".encode()
        self.rows: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(POLL_S):
            procs = _processes()
            row: dict = {"t_s": round(time.monotonic() - t0, 2), "libvirt_vms": 0, "qemu_vms": 0}
            for pid, comm, cmd in procs:
                if comm in DAEMONS:
                    row[f"{comm}_pss_bytes"] = _pss(pid)
                    row[f"{comm}_cpu_s"] = _cpu_s(pid)
                elif cmd and self.prefix in cmd:
                    row["libvirt_vms" if b"debug-threads=on" in cmd else "qemu_vms"] += 1
            self.rows.append(row)


def daemon_figures(rows: list[dict]) -> list[str]:
    """Markdown lines: each daemon's PSS with 0 and with k of the run's libvirt domains
    alive (median of the polls), and a least-squares slope per domain."""
    import numpy as np

    lines = []
    for d in DAEMONS:
        key = f"{d}_pss_bytes"
        pts = [(r["libvirt_vms"], r[key]) for r in rows if r.get(key)]
        if not pts:
            continue
        # Polls while direct QEMUs run count as "0 libvirt domains" only if none is alive:
        # the baseline is the daemon at rest, not the daemon during the other platform.
        ks = sorted({k for k, _ in pts})
        med = {k: float(np.median([v for kk, v in pts if kk == k])) for k in ks}
        slope = np.polyfit([k for k, _ in pts], [v for _, v in pts], 1)[0] if len(ks) > 1 else 0
        at = ", ".join(f"{k}: {med[k] / MIB:.1f}" for k in ks)
        cpu = [r[f"{d}_cpu_s"] for r in rows if r.get(f"{d}_cpu_s") is not None]
        used = f"; {cpu[-1] - cpu[0]:.1f} CPU s over the run" if len(cpu) > 1 else ""
        lines.append(
            f"- `{d}` PSS (MiB) by libvirt domains of the run alive: {at}; slope "
            f"{slope / MIB:+.2f} MiB per domain ({len(pts)} polls){used}"
        )
    return lines


# -- the run ------------------------------------------------------------------------------


def scenario_text(repeat: int, counts: list[int]) -> str:
    text = SCENARIO.read_text()
    text = re.sub(r"^repeat: \d+", f"repeat: {repeat}", text, count=1, flags=re.M)
    return re.sub(
        r"^counts: \[[^\]]*\]",
        f"counts: [{', '.join(map(str, counts))}]",
        text,
        count=1,
        flags=re.M,
    )


def run_ab(scenario: Path, out: Path) -> tuple[Path, dict, float]:
    """`bench ab` as a user runs it; its run dir, its JSON verdict, the wall time."""
    t0 = time.monotonic()
    poller = DaemonPoller("bench-libvirt-tax-")
    poller.start()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "ab",
                str(scenario),
                "--out",
                str(out),
                "--json",
                "--baseline",
                "qemu",
                "--candidate",
                "libvirt",
            ],  # fmt: skip
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    finally:
        poller.stop.set()
        poller.join()
    wall = time.monotonic() - t0
    if proc.returncode not in FINISHED:
        raise SystemExit(f"bench ab failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    run_dir = Path(lines[-1])
    verdict = json.loads("\n".join(lines[:-1]))
    (run_dir / DAEMON_FILE).write_text(json.dumps({"wall_s": wall, "polls": poller.rows}))
    return run_dir, verdict, wall


# -- the section ----------------------------------------------------------------------------


def section(run_dir: Path, verdict: dict | None, note: str) -> str:
    from bench.judge.ab import analyse_ab
    from bench.report.frame import load_frames
    from bench.report.render_markdown import tax_markdown
    from bench.report.tax import libvirt_tax

    frames = load_frames([run_dir])
    tax = libvirt_tax(frames)
    if tax is None:
        raise SystemExit(f"{run_dir}: no qemu and libvirt platforms booting the same guest")
    run = frames.runs[0]
    engines = run.metadata.get("engines", {})
    if verdict is None and run.metadata.get("ab"):
        verdict = analyse_ab(run, 0.10, 0.01).to_dict()
    daemons_file = run_dir / DAEMON_FILE
    daemons = json.loads(daemons_file.read_text()) if daemons_file.exists() else None
    lv = engines.get("libvirt", {})
    q = engines.get("qemu", {})
    started = run.metadata.get("started_at", "?")
    out = [
        SECTION,
        "",
        f"Host: {results_md.host_line()}; libvirt {lv.get('libvirt_version')}, QEMU "
        f"{q.get('qemu_version')}, accel {q.get('accel')}.",
        "",
        f"Measured {started} by `benchmarks/libvirt_tax.py` (`bench ab "
        "scenarios/libvirt-tax.yaml --baseline qemu --candidate libvirt`, "
        f"repeat {run.metadata['scenario'].get('repeat')}"
        + (f", {daemons['wall_s'] / 60:.1f} min" if daemons else "")
        + f"). {note}",
        "",
        GUEST_NOTE,
        "",
        tax_markdown(tax).rstrip(),
        "",
    ]
    if verdict:
        out.append(
            f"`bench ab` on ready_s, all N pooled ({verdict['pairs']} step pairs): libvirt "
            f"{verdict['change']:+.1%} [{verdict['ci_low']:+.1%}, {verdict['ci_high']:+.1%}] "
            f"(99% interval), verdict at a 10% threshold: {verdict['verdict']}."
        )
        out.append("")
    if daemons:
        lines = daemon_figures(daemons["polls"])
        if lines:
            out.append(
                "Engine daemons, polled every 0.5 s during the run (others' tests on this "
                "host may use libvirtd too):"
            )
            out += lines
            out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 4 repeats x N in 1, 4, 8: 12 step pairs (bench ab needs 6), about 7 min here.
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--counts", default="1,4,8")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    ap.add_argument("--run-dir", type=Path, help="tabulate this stored run; start nothing")
    ap.add_argument("--keep", type=Path, help="keep the run directory under DIR")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results.md")
    ap.add_argument(
        "--note",
        default="",
        help="said next to the figures (e.g. what else ran on the host meanwhile)",
    )
    args = ap.parse_args()

    if args.run_dir:
        text = section(args.run_dir, None, args.note)
    else:
        counts = [int(x) for x in args.counts.split(",")]
        tmp = Path(tempfile.mkdtemp(prefix="bench-libvirt-tax-"))
        try:
            scenario = tmp / "libvirt-tax.yaml"
            scenario.write_text(scenario_text(args.repeat, counts))
            out = args.keep or tmp / "results"
            run_dir, verdict, _ = run_ab(scenario, out)
            text = section(run_dir, verdict, args.note)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    if not args.no_write:
        results_md.write_section(args.out, SECTION, text)
        print(f"wrote its section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
