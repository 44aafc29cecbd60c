"""Runtime overhead against native (issue 23 §1): a stored run of
scenarios/workloads.yaml, read with bench's own reader and judged with bench's own
workloads table (bench.report.workloads: medians, spreads, ratios to native with
bootstrap intervals), set beside the published shape:

- runc's CPU and memory bandwidth within a few percent of native (Felter et al. 2014:
  Docker equal to native on LINPACK and STREAM);
- gVisor's syscall-heavy workload and its file I/O well below runc's (gVisor's
  performance guide: every system call through the Sentry, file I/O through its gofer).

Each expectation is reported met, missed or not decided (the interval straddles the
band), with the host's load during the run. Writes a section of benchmarks/results.md.

    bench run scenarios/workloads.yaml            (containers, native and VMs; TCG here)
    python benchmarks/workloads.py RUN_DIR... [--no-write]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, write_section  # noqa: E402  (this script's folder is on sys.path)

from bench.model.results import Run, load_run  # noqa: E402
from bench.report import workloads as wl  # noqa: E402

HEADING = "# Workloads: runtime overhead against native (issue 23 §1)"
FEW_PERCENT = 0.05  # "within a few percent": 0.95-1.05
WELL_BELOW = 0.5  # "well below": under half


def _row(section: wl.WorkloadsSection, platform: str, figure: str) -> wl.WorkloadRow | None:
    return next((r for r in section.rows if r.platform == platform and r.figure == figure), None)


def stream_figure(section: wl.WorkloadsSection) -> str:
    """STREAM's read rate when stress-ng printed it, else its bogo-op rate: stress-ng
    0.15 prints no memory rate for a run of a few seconds (2 s here), and the bogo-op
    rate of the same stressor is the same memory traffic counted in loops."""
    have = any(r.figure == "stream.read_mb_per_s" for r in section.rows if r.platform == "runc")
    return "stream.read_mb_per_s" if have else "stream.bogo_ops_per_s"


def repeats_to_resolve(
    row: wl.WorkloadRow, base: wl.WorkloadRow | None, band: float = FEW_PERCENT
) -> int | None:
    """About how many repeats per platform a 95% interval of +/-`band` on the ratio of
    two medians needs at the two rows' measured CVs (normal approximation; a median needs
    pi/2 times a mean's samples): what "not decided" costs to decide on this host."""
    if base is None or row.cv is None or base.cv is None:
        return None
    spread = math.hypot(row.cv, base.cv)
    return math.ceil(math.pi / 2 * (1.96 * spread / band) ** 2)


def within_few_percent(
    row: wl.WorkloadRow | None, base: wl.WorkloadRow | None = None, band: float = FEW_PERCENT
) -> str:
    if row is None or row.ratio is None:
        return "not measured"
    if row.ratio_low is None or row.ratio_high is None:
        return f"not decided: ratio {row.ratio:.2f}, too few repeats for an interval"
    ci = f"ratio {row.ratio:.2f} ({row.ratio_low:.2f}-{row.ratio_high:.2f})"
    if row.ratio_low >= 1 - band and row.ratio_high <= 1 + band:
        return f"met: {ci}"
    if row.ratio_high < 1 - band or row.ratio_low > 1 + band:
        return f"missed: {ci}"
    need = repeats_to_resolve(row, base, band)
    cost = (
        f"; at these CVs ({row.cv:.0%} and native's {base.cv:.0%}) about {need} repeats "
        "per platform would decide it"
        if need is not None and base is not None and base.cv is not None and row.cv is not None
        else ""
    )
    return f"not decided: {ci} straddles {1 - band:.2f}-{1 + band:.2f}{cost}"


def well_below(section: wl.WorkloadsSection, figure: str, who: str, than: str) -> str:
    a, b = _row(section, who, figure), _row(section, than, figure)
    if a is None or b is None or not b.median:
        return "not measured"
    ratio = a.median / b.median
    verdict = "met" if ratio < WELL_BELOW else "missed"
    return f"{verdict}: {who}/{than} {ratio:.2f} ({a.median:,.0f} / {b.median:,.0f} {a.unit})"


def emulated_check(section: wl.WorkloadsSection) -> str:
    vm = [r for r in section.rows if r.kind in ("microvm", "vm")]
    if not vm:
        return "not measured"
    emulated = [r for r in vm if r.emulated]
    if not emulated:
        return f"not applicable: no VM figure was emulated ({len(vm)} VM rows, KVM)"
    leaked = [r for r in emulated if r.ratio is not None]
    slow = [
        f"{r.platform} {r.workload} {r.median / base.median:.3f}x native"
        for r in emulated
        if r.figure.endswith("bogo_ops_per_s")
        and (base := _row(section, section.native or "", r.figure)) is not None
        and base.median
    ]
    verdict = "met" if not leaked else f"missed: {len(leaked)} emulated rows have a ratio"
    return f"{verdict}: {len(emulated)} emulated rows, none in a ratio ({'; '.join(slow)})"


def reading(section: wl.WorkloadsSection, loaded: bool = True) -> list[str]:
    """What the run's figures say against the published shape, for the platforms it had
    (`loaded`: the host's load was at or above its cores when the run began)."""
    platforms = {r.platform for r in section.rows}
    out = []
    if {"runc", "runsc"} <= platforms:
        said = []
        for figure, what in (("get.bogo_ops_per_s", "system calls"),
                             ("switch.bogo_ops_per_s", "context switches")):  # fmt: skip
            a, b = _row(section, "runsc", figure), _row(section, "runc", figure)
            if a is not None and b is not None and b.median:
                ratio = a.median / b.median
                agree = "agrees with" if ratio < WELL_BELOW else "does not show"
                said.append(
                    f"gVisor's {what} ran at {ratio:.2f} of runc's ({agree} gVisor's guide: "
                    "every system call through the Sentry)"
                )
        native = section.native or ""
        for figure in ("cpu.bogo_ops_per_s", stream_figure(section)):
            runc, base = _row(section, "runc", figure), _row(section, native, figure)
            verdict = within_few_percent(runc, base)
            if verdict.startswith("not decided"):
                said.append(
                    f"runc's {figure.split('.')[0]} against native is {verdict} "
                    f"({'loaded' if loaded else 'quiet'} host)"
                )
        cached = [
            f"{r.workload} {r.ratio:.2f}x"
            for r in section.rows
            if r.platform == "runsc" and r.figure in ("read_iops", "write_iops")
            and r.ratio is not None and r.ratio > 1
        ]  # fmt: skip
        if cached:
            said.append(
                "gVisor's 4 KiB O_DIRECT I/O comes out *above* native ("
                + ", ".join(cached)
                + "): this gVisor (20221219) accepts O_DIRECT but does not honour it, so "
                "these IOPS measure caching in the sandbox, not file I/O through its gofer "
                "(docs/design/workloads.md §4)"
            )
        if any(r.platform == "runsc" and (r.cpu_share_pct or 0) > 100 for r in section.rows):
            said.append(
                "runsc's `cpu share` is gVisor's own accounting (it can pass 100%) and is "
                "not comparable with the others'"
            )
        if said:
            out += ["Reading it. " + "; ".join(said) + ".", ""]
    slow = [
        r.median / base.median
        for r in section.rows
        if r.emulated
        and r.figure.endswith("bogo_ops_per_s")
        and (base := _row(section, section.native or "", r.figure)) is not None
        and base.median
        and r.median
    ]
    if slow:
        out += [
            f"Reading it. Under TCG a VM ran its workloads at 1/{1 / min(slow):.0f} to "
            f"1/{1 / max(slow):.0f} of native (bogo-op rates): the "
            "cost of emulating the CPU, not of virtualisation, so no ratio is given (Felter "
            "et al. measured KVM near native on CPU and memory; this host cannot test that "
            "without a usable KVM). The VM's `cpu share` is of its own virtual CPU.",
            "",
        ]
    return out


def table_lines(section: wl.WorkloadsSection) -> list[str]:
    """bench's workloads table (its headline rows) as Markdown."""
    table = [
        "| platform | workload | figure | median | spread | n "
        "| ratio to native (95% CI) | cpu share |",
        "| --- | --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for c in wl.display_rows(section):
        table.append(
            f"| {c['platform']} | {c['workload']} | {c['figure']} | {c['median']} | "
            f"{c['spread (min-max, CV)']} | {c['n']} | {c['ratio to native (95% CI)']} | "
            f"{c['cpu share']} |"
        )
    return table


def load_section(run_dir: Path) -> tuple[Run, wl.WorkloadsSection, dict[str, object]]:
    """A stored run, bench's workloads table of it, and its host's metadata (a run with
    no workload runs stops the benchmark, naming it)."""
    run = load_run(run_dir)
    section = wl.build(run.run_id, run.iter_samples())
    if section is None:
        raise SystemExit(f"{run_dir}: no workload runs in it")
    return run, section, dict(run.metadata.get("host") or {})


def run_text(run_dir: Path) -> str:
    run, section, host = load_section(run_dir)
    meta = run.metadata
    started, finished = str(meta.get("started_at")), str(meta.get("finished_at"))
    scenario = Path(str(meta.get("scenario_path") or "scenarios/workloads.yaml")).name
    scenario = f"scenarios/{scenario}"
    table = table_lines(section)
    checks = [
        ("runc CPU (cpu) within a few percent of native",
         within_few_percent(_row(section, "runc", "cpu.bogo_ops_per_s"),
                            _row(section, section.native or "", "cpu.bogo_ops_per_s"))),
        (f"runc memory bandwidth (stream, {stream_figure(section)}) within a few percent of "
         "native", within_few_percent(_row(section, "runc", stream_figure(section)),
                                      _row(section, section.native or "", stream_figure(section)))),
        ("gVisor's syscall-heavy workload (get) well below runc",
         well_below(section, "get.bogo_ops_per_s", "runsc", "runc")),
        ("gVisor's context switches well below runc",
         well_below(section, "switch.bogo_ops_per_s", "runsc", "runc")),
        ("gVisor's file I/O (4 KiB random read IOPS) well below runc",
         well_below(section, "read_iops", "runsc", "runc")),
        ("gVisor's file I/O (4 KiB random write IOPS) well below runc",
         well_below(section, "write_iops", "runsc", "runc")),
    ]  # fmt: skip
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    checks.append(("every VM figure under TCG marked emulated and left out of ratios",
                   emulated_check(section)))  # fmt: skip
    checks = [(what, verdict) for what, verdict in checks if verdict != "not measured"]
    load, cores = float(host.get("load_avg_1m") or 0), int(host.get("cpu_cores") or 1)
    loaded = load >= cores
    sharing = (
        "other work shared this host, so every CPU figure below measures sharing as much as speed"
        if loaded
        else "the host was otherwise quiet when it began"
    )
    return "\n".join(
        [
            f"## Run {run.run_id}, {started} to {finished}",
            "",
            f"Host: {host_line()}. Host load (1 min) when the run started: "
            f"{host.get('load_avg_1m', 0):.1f} on {host.get('cpu_cores')} cores: "
            f"{sharing} (the `cpu share` column: how "
            f"much of one CPU stress-ng's worker got). `bench run {scenario}`, "
            "then `python benchmarks/workloads.py RUN_DIR`; the table is bench's own "
            "(bench.report.workloads), intervals bootstrapped with seed "
            f"{wl.SEED} ({wl.BOOTSTRAP} resamples).",
            "",
            *table,
            "",
            f"Platforms: {', '.join(run.platforms_recorded)}. "
            "Expected shape (the issue), judged on this run:",
            "",
            *(f"- {what}: **{verdict}**" for what, verdict in checks),
            "",
            *reading(section, loaded),
            "Workload runs that gave no figures:",
            "",
            *failures,
            "",
        ]
    )


def section_text(run_dirs: list[Path]) -> str:
    return "\n".join([HEADING, "", *(run_text(d) for d in run_dirs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    text = section_text(args.run_dirs)
    print(text)
    if not args.no_write:
        write_section(Path(__file__).parent / "results.md", HEADING, text)


if __name__ == "__main__":
    main()
