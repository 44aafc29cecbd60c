"""An application, random memory and sequential disk bandwidth against native (issue 23
§1): a stored run of scenarios/app.yaml, read with bench's own reader and judged with
bench's own workloads table (bench.report.workloads: medians, spreads, ratios to native
with bootstrap intervals), set beside the published shape:

- runc's and podman's random memory access (stress-ng vm, prime strides over 256 MiB)
  within a few percent of native (Felter et al. 2014: Docker equal to native on HPCC
  RandomAccess);
- runc's sequential bandwidth on a volume within 10 % of native (Felter et al.: Docker's
  sequential fio on a volume as native's);
- runc's HTTP requests/s (busybox httpd and wrk over the instance's own loopback, no
  NAT) within 10 % of native (Felter et al.: Docker with host networking near native
  on Redis and MySQL; its cost was NAT's);
- gVisor's HTTP requests/s well below runc's (gVisor's performance guide: a
  system-call-heavy server pays the Sentry on each call);
- gVisor's sequential file I/O below runc's (the same guide: file I/O through its gofer).

Each is reported met, missed or not decided (the 95% interval of the ratio straddles the
band), with the host's load during the run. Writes a section of benchmarks/results.md.

    bench run scenarios/app.yaml
    python benchmarks/app.py RUN_DIR [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, tabulate_runs  # noqa: E402  (this script's folder is on sys.path)
from workloads import (  # noqa: E402
    FEW_PERCENT,
    load_section,
    table_lines,
    well_below,
    within_few_percent,
)

from bench.report import workloads as wl  # noqa: E402

HEADING = "# Workloads: an application, random memory, sequential I/O (issue 23 §1)"
BAND = 0.10  # "as native's" for I/O and the application: within 10 %


def row(
    section: wl.WorkloadsSection, platform: str, workload: str, figure: str
) -> wl.WorkloadRow | None:
    return next(
        (
            r
            for r in section.rows
            if (r.platform, r.workload, r.figure) == (platform, workload, figure)
        ),
        None,
    )


def near(
    section: wl.WorkloadsSection,
    platform: str,
    workload: str,
    figure: str,
    band: float = FEW_PERCENT,
) -> str:
    """Whether the platform's ratio to native lies within 1 +/- band (and if undecided,
    how many repeats would decide it at the measured CVs)."""
    base = row(section, section.native or "", workload, figure)
    return within_few_percent(row(section, platform, workload, figure), base, band)


def below(section: wl.WorkloadsSection, workload: str, figure: str, who: str, than: str) -> str:
    a, b = row(section, who, workload, figure), row(section, than, workload, figure)
    if a is None or b is None or not b.median:
        return "not measured"
    ratio = a.median / b.median
    return f"{'met' if ratio < 1 else 'missed'}: {who}/{than} {ratio:.2f}"


def reading(section: wl.WorkloadsSection) -> list[str]:
    """What the figures that miss the published shape say, where this run shows it."""
    out = []
    fast = [
        name
        for name, figure in (("seqread-volume", "read_bytes_per_s"),
                             ("seqwrite-volume", "write_bytes_per_s"))
        if (r := row(section, "runsc", name, figure)) is not None
        and r.ratio_low is not None
        and r.ratio_low > 1
    ]  # fmt: skip
    if fast:
        out += [
            f"Reading it. gVisor's O_DIRECT sequential I/O on a volume ({', '.join(fast)}) "
            "ran *above* native, the interval wholly above 1: as its random I/O did "
            '(section "Workloads: fio on an attached volume"), this gVisor accepts O_DIRECT '
            "without reaching the disk as native does, so the figure is its cache's, not "
            "file I/O through its gofer: the guide's shape cannot be tested with O_DIRECT "
            "under runsc.",
            "",
        ]
    http = row(section, "runsc", "http-loopback", "requests_per_s")
    if http is not None and http.ratio is not None and http.ratio < 0.5:
        out += [
            f"gVisor served HTTP at {http.ratio:.2f} of native: busybox httpd forks a child "
            "per connection and makes a handful of system calls per request, each through "
            "the Sentry (and its loopback is gVisor's netstack), the cost the guide names "
            "for system-call-heavy servers.",
            "",
        ]
    return out


def run_text(run_dir: Path) -> str:
    run, section, host = load_section(run_dir)
    meta = run.metadata
    started, finished = str(meta.get("started_at")), str(meta.get("finished_at"))
    checks = [
        ("runc random memory (randmem) within a few percent of native",
         near(section, "runc", "randmem", "vm.bogo_ops_per_s")),
        ("podman random memory (randmem) within a few percent of native",
         near(section, "podman", "randmem", "vm.bogo_ops_per_s")),
        ("runc sequential reads on a volume within 10 % of native",
         near(section, "runc", "seqread-volume", "read_bytes_per_s", BAND)),
        ("runc sequential writes on a volume within 10 % of native",
         near(section, "runc", "seqwrite-volume", "write_bytes_per_s", BAND)),
        ("runc HTTP requests/s (httpd + wrk on its loopback) within 10 % of native",
         near(section, "runc", "http-loopback", "requests_per_s", BAND)),
        ("gVisor's HTTP requests/s well below runc",
         well_below(section, "requests_per_s", "runsc", "runc")),
        ("gVisor's sequential reads on a volume below runc",
         below(section, "seqread-volume", "read_bytes_per_s", "runsc", "runc")),
        ("gVisor's sequential writes on a volume below runc",
         below(section, "seqwrite-volume", "write_bytes_per_s", "runsc", "runc")),
    ]  # fmt: skip
    checks = [(what, verdict) for what, verdict in checks if verdict != "not measured"]
    load, cores = float(host.get("load_avg_1m") or 0), int(host.get("cpu_cores") or 1)
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    state = "loaded: CPU figures measure sharing too" if load >= cores else "quiet"
    return "\n".join(
        [
            f"## Run {run.run_id}, {started} to {finished}",
            "",
            f"Host: {host_line()}. Host load (1 min) when the run started: {load:.1f} on "
            f"{cores} cores ({state}). `bench run scenarios/app.yaml`, then "
            "`python benchmarks/app.py RUN_DIR`; the table is bench's own "
            "(bench.report.workloads), intervals bootstrapped with "
            f"seed {wl.SEED} ({wl.BOOTSTRAP} resamples).",
            "",
            *table_lines(section),
            "",
            f"Platforms: {', '.join(run.platforms_recorded)}. Expected shape, judged on this run:",
            "",
            *(f"- {what}: **{verdict}**" for what, verdict in checks),
            "",
            *reading(section),
            "Workload runs that gave no figures:",
            "",
            *failures,
            "",
        ]
    )


if __name__ == "__main__":
    tabulate_runs(__doc__ or "", HEADING, run_text)
