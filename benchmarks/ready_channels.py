"""What the serial console costs a VM's time to ready: scenarios/ready-channels.yaml,
tabulated. A benchmark that prints figures, not a test.

    .venv/bin/python benchmarks/ready_channels.py [--rounds 3] [--no-write]
        (runs the scenario with `bench run`, then tabulates it)
    .venv/bin/python benchmarks/ready_channels.py --run-dir results/ready-channels-...
        (tabulates a stored run again; nothing started)

Per machine (direct QEMU microvm and pc, libvirt's pc) the same bench guest is ready
(1) by its serial marker, bench's default, (2) by a byte on QEMU's debug port 0xe9 with
the kernel's serial console still on, (3) by that byte with no kernel console on the
UART (`console: false`: 8250.nr_uarts=0, no console=ttyS0 or earlyprintk). (2) - (1)
is what the channel changes; (3) - (2) what the kernel's console on the UART costs the
boot. With `--rounds R` the scenario is run R times, once per platform each
(`repeat: 1`), its platform list rotated by one machine each round, so that a drift of
this shared host's load lands on every variant alike rather than on whole platforms;
without it, once as written (`repeat: 3`, a platform's repeats in a row). The runs are
read back with bench's own loader (bench.model.results.load_run); the
host's 1-minute load average of each step (bench records it) is shown beside, since
other work on the shared cores stretches every wall time. Only this benchmark's
section of benchmarks/results.md is rewritten.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import results_md  # noqa: E402  benchmarks/results_md.py (this script's folder is on sys.path)

from bench.model.results import load_run  # noqa: E402

SCENARIO = REPO / "scenarios" / "ready-channels.yaml"
RESULTS = REPO / "benchmarks" / "results.md"
SECTION = "# Readiness without the UART: serial marker against the debug port (issue 24)"
# Platform name suffix -> (variant, what it is compared with).
VARIANTS = {
    "serial": ("serial marker, console on", None),
    "port": ("debug port, console on", "serial"),
    "port-nouart": ("debug port, 8250.nr_uarts=0", "port"),
}


def split_name(platform: str) -> tuple[str, str]:
    """("microvm", "port-nouart") from "microvm-port-nouart"."""
    for suffix in sorted(VARIANTS, key=len, reverse=True):
        if platform.endswith(f"-{suffix}"):
            return platform[: -len(suffix) - 1], suffix
    return platform, ""


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def tabulate(run_dirs: list[Path]) -> tuple[str, list[str]]:
    """The section's table (markdown) and the lines said under it."""
    rows: dict[str, list[dict]] = {}
    loads: dict[str, list[float]] = {}
    order: list[str] = []
    run_ids = []
    for d in run_dirs:
        run = load_run(d)
        run_ids.append(run.run_id)
        for s in run.samples:
            name = str(s["platform"])
            if name not in rows:
                order.append(name)
            rows.setdefault(name, []).append(dict(s))
        for st in run.steps:
            load = st.get("load_avg_1m")
            if isinstance(load, (int, float)):
                loads.setdefault(str(st["platform"]), []).append(float(load))
    medians, spans = {}, {}
    for name in order:
        ready = [float(s["ready_s"]) for s in rows[name] if s["ok"] and s["ready_s"] is not None]
        medians[name] = p50(ready)
        spans[name] = (min(ready), max(ready)) if ready else None
    lines = [
        "| machine | ready by | n ok/all | ready_s p50 | min-max | vs | Δ p50 s | ranges apart "
        "| kernel line s | init s | guest uptime s | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        samples = rows[name]
        ok = [s for s in samples if s["ok"] and s["ready_s"] is not None]
        ready = sorted(float(s["ready_s"]) for s in ok)
        machine, suffix = split_name(name)
        label, base = VARIANTS.get(suffix, (suffix or name, None))
        base_name = f"{machine}-{base}" if base else None
        delta = (
            medians[name] - medians[base_name]  # type: ignore[operator]
            if base_name in medians and medians[name] is not None and medians[base_name]
            else None
        )

        # Whether the two variants' min-max ranges do not overlap: the least a difference
        # must show before it is read as one (no test is made at these n).
        apart = ""
        if delta is not None and spans[name] and spans[base_name]:  # type: ignore[index]
            (lo, hi), (blo, bhi) = spans[name], spans[base_name]  # type: ignore[index,misc]
            apart = "yes" if hi < blo or lo > bhi else "no"

        def col(key: str, ok: list[dict] = ok) -> str:
            return fmt(p50([float(s[key]) for s in ok if s.get(key) is not None]))

        load = loads.get(name, [])
        lines.append(
            f"| {machine} | {label} | {len(ok)}/{len(samples)} | {fmt(medians[name])} | "
            f"{fmt(ready[0]) if ready else '-'}-{fmt(ready[-1]) if ready else '-'} | "
            f"{base_name if base_name in medians else ''} | "
            f"{'' if delta is None else f'{delta:+.2f}'} | {apart} | "
            f"{col('kernel_start_s')} | {col('init_start_s')} | {col('guest_uptime_s')} | "
            f"{fmt(min(load), 1) if load else '-'}-{fmt(max(load), 1) if load else '-'} |"
        )
    return "\n".join(lines), run_ids


def run_scenario(scenario: Path = SCENARIO) -> Path:
    out = Path(tempfile.mkdtemp(prefix="ready-channels-"))
    cmd = [sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    print(done.stdout)
    if done.returncode not in (0, 4):
        sys.exit(f"bench run failed (exit {done.returncode})")
    return Path(done.stdout.strip().splitlines()[-1])


def rounds_of(rounds: int) -> list[Path]:
    """The scenario `rounds` times, repeat 1, its platforms rotated by one machine (three
    platforms) each round."""
    import yaml

    data = yaml.safe_load(SCENARIO.read_text())
    platforms = data["platforms"]
    dirs = []
    for r in range(rounds):
        shift = (3 * r) % len(platforms)
        data = {**data, "repeat": 1, "platforms": platforms[shift:] + platforms[:shift]}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(data, f, sort_keys=False)
        try:
            dirs.append(run_scenario(Path(f.name)))
        finally:
            Path(f.name).unlink()
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, action="append", help="a stored run to tabulate")
    ap.add_argument("--rounds", type=int, default=0, help="R runs of repeat 1, rotated")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    dirs = args.run_dir or (rounds_of(args.rounds) if args.rounds else [run_scenario()])
    table, run_ids = tabulate(dirs)
    text = "\n".join(
        [
            SECTION,
            "",
            f"`python benchmarks/ready_channels.py` (scenarios/ready-channels.yaml), "
            f"{load_run(dirs[0]).metadata.get('started_at')} to "
            f"{load_run(dirs[-1]).metadata.get('finished_at')}, runs "
            f"{', '.join(run_ids)}; {results_md.host_line()}; TCG.",
            "",
            "One VM at a time, 256 MiB, 1 vCPU, the bench guest, samples of all the runs "
            "pooled. A run of the scenario as written (`repeat: 3`) has each platform's "
            "repeats in a row, so a drift of the host's load lands on whole platforms; a "
            "`--rounds` run has each platform once, the platform list rotated by one machine "
            "per round. " + "`vs`/`Δ p50`: against the same machine's variant "
            "before it (debug port against serial marker; no UART console against console "
            "on); `ranges apart`: whether the two variants' min-max ranges do not overlap, "
            "the least a difference must show before it is read as one (no test is made at "
            "these n). `kernel line`/`init`: the first kernel line and `Run /init` on the host's "
            "clock (none without a console); `guest uptime`: the marker's `uptime=` (none "
            "without a console); `load 1m`: the host's 1-minute load average as each step "
            "was measured (2 cores).",
            "",
            table,
            "",
            f"Differences whose ranges are apart: {table.count('| yes |')} of "
            f"{table.count('| yes |') + table.count('| no |')}. Where none is, no difference "
            "between the channels, or between console on and off, is resolved at this n on "
            "this host at this load; the p50s above are figures, not findings.",
            "",
        ]
    )
    print(text)
    if not args.no_write:
        results_md.write_section(RESULTS, SECTION, text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
