"""Where a VM's boot goes under this host's accelerator, and what microvm's RTC costs.

Boots the bench guest (the bench pair's kernel and initramfs) in QEMU by hand, one at
a time, variants interleaved round by round so that a busy host slows them alike:
microvm as bench configured it before (`rtc=off`, quiet kernel), microvm with the
RTC off but the boot log on (to see where the time goes), microvm with the RTC on and the boot log,
booting the bzImage, and a PC (`-M pc`, SeaBIOS) quiet and with the boot log; and
microvm booting the uncompressed kernel inside the bzImage (PVH, as Firecracker boots
its guests), which is how bench's qemu microvm boots since 2026-12-06. Each
console line is timed by bench's own Console and split by bench.model.phases; the QEMU
process's CPU time until the marker is read from /proc (a busy host stretches wall
time much more than CPU time). Writes a section of benchmarks/results.md.

    python benchmarks/boot_phases.py [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, write_section  # noqa: E402  (this script's folder is on sys.path)

from bench.backends.qemu_backend import MACHINE_ARGS, guest_cmdline, host_tsc_khz  # noqa: E402
from bench.machines import images  # noqa: E402
from bench.machines.console import Console  # noqa: E402
from bench.model.phases import boot_lines  # noqa: E402
from bench.model.settings import DEFAULT_MARKER  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results.md"
HEADING = "# Where a VM's boot goes, and microvm's RTC (issue 24)"
QUIET = "console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check"  # bench's cmdline before
LOG = images.DEFAULT_CMDLINE  # now: loglevel=7 and an early console


def variants(tsc_khz: int | None) -> dict[str, tuple[str, str]]:
    mv = MACHINE_ARGS["microvm"]
    return {
        "microvm before (rtc=off, quiet)": (
            f"{mv},rtc=off",
            guest_cmdline(QUIET, "microvm", "tcg", tsc_khz),
        ),
        "microvm rtc=off, boot log": (
            f"{mv},rtc=off",
            guest_cmdline(LOG, "microvm", "tcg", tsc_khz),
        ),
        "microvm bzImage (RTC on, boot log)": (mv, guest_cmdline(LOG, "microvm", "tcg", tsc_khz)),
        "microvm RTC on, quiet": (mv, guest_cmdline(QUIET, "microvm", "tcg", tsc_khz)),
        "pc quiet": ("pc", QUIET),
        "pc boot log": ("pc", LOG),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot(
    machine: str, cmdline: str, art: images.VmArtifacts, kernel: Path, timeout: float = 180
) -> dict:
    """One boot: wall and CPU seconds from spawn to the marker, and its phases."""
    argv = ["qemu-system-x86_64", "-machine", machine, "-accel", "tcg", "-m", "256M"]
    argv += ["-smp", "1", "-nodefaults", "-no-user-config", "-display", "none"]
    argv += ["-no-reboot", "-serial", "stdio", "-kernel", str(kernel)]
    argv += ["-initrd", str(art.initrd), "-append", cmdline]
    console = Console(DEFAULT_MARKER)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while console.ready_at is None and time.monotonic() - t0 < timeout:
            if sel.select(1.0):
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                console.feed(data)
        cpu = cpu_seconds(proc.pid) if console.ready_at else None
    finally:
        proc.kill()
        proc.wait()
    if console.ready_at is None:
        return {"ready": None}
    b = boot_lines(console.lines)
    kernel = None if b.kernel_start_at is None else b.kernel_start_at - t0
    init = None if b.init_start_at is None else b.init_start_at - t0
    return {
        "ready": console.ready_at - t0,
        "cpu": cpu,
        "uptime": float(console.fields.get("uptime", "nan")),
        "to_kernel": kernel,
        "kernel_init": None if kernel is None or init is None else init - kernel,
    }


def p50(rows: list[dict], key: str) -> str:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.median(xs):.2f}" if xs else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    art = images.vm_artifacts("busybox")
    if art is None or art.pvh_kernel is None:
        art = images.build_rootfs("busybox")
    vs = {k: (m, c, art.kernel) for k, (m, c) in variants(host_tsc_khz()).items()}
    if art.pvh_kernel is not None:
        machine, cmdline, _ = vs["microvm bzImage (RTC on, boot log)"]
        vs["microvm PVH vmlinux (bench's microvm now)"] = (machine, cmdline, art.pvh_kernel)
    got: dict[str, list[dict]] = {k: [] for k in vs}
    loads = []
    for r in range(args.rounds):
        for name, (machine, cmdline, kernel) in vs.items():
            row = boot(machine, cmdline, art, kernel)
            got[name].append(row)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} {name}: {row}", flush=True)
    lines = [
        HEADING,
        "",
        f"`python benchmarks/boot_phases.py --rounds {args.rounds}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {host_line()}; TCG; "
        f"host load average (1 min) during the boots {min(loads):.1f}-{max(loads):.1f} "
        "(other work shared the 2 cores: wall times are stretched, CPU times much less).",
        "",
        "One guest at a time, 256 MiB, 1 vCPU, variants interleaved; p50 of "
        f"{args.rounds} boots each. `to kernel` is spawn to the kernel's first console "
        "line (firmware and decompression), `kernel init` from there to `Run /init`, both "
        "on the host's clock as bench's Console timed the lines; `cpu` is the QEMU "
        "process's CPU seconds until the marker; `uptime` the guest's own.",
        "",
        "| variant | wall to marker s | cpu s | to kernel s | kernel init s | guest uptime s |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in got.items():
        ok = [x for x in rows if x["ready"] is not None]
        lines.append(
            f"| {name} | {p50(ok, 'ready')} | {p50(ok, 'cpu')} | {p50(ok, 'to_kernel')} | "
            f"{p50(ok, 'kernel_init')} | {p50(ok, 'uptime')} |"
            + ("" if len(ok) == len(rows) else f" ({len(rows) - len(ok)} did not boot)")
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(RESULTS, HEADING, text)


if __name__ == "__main__":
    main()
