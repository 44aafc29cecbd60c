"""Performance isolation, noisy neighbours (issue 23 §2): a stored run of
scenarios/isolation.yaml, read with bench's own reader and judged with bench's own
isolation table (bench.report.neighbours: the victim's slowdown per aggressor kind,
median and min-max over repeats), set beside the Isolation Benchmark Suite's published
shape (Matthews et al., "Quantifying the performance isolation properties of
virtualization systems", ExpCS 2007):

- containers (OS-level virtualisation) isolate CPU well when given limits;
- they isolate memory (bandwidth, pressure) and disk I/O poorly;
- full VMs isolate memory and disk better than containers.

Each expectation is reported met, missed or not measured, with the host's load. Writes
a section of benchmarks/results.md.

    bench run scenarios/isolation.yaml            (containers and VMs; TCG here)
    python benchmarks/neighbours.py RUN_DIR... [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, tabulate_runs  # noqa: E402  (this script's folder is on sys.path)

from bench.model.results import load_run  # noqa: E402
from bench.report import neighbours as nb  # noqa: E402

HEADING = "# Isolation: noisy neighbours (issue 23 §2)"
WELL = 1.10  # "well isolated": the victim at most 10% slower with its neighbour
POORLY = 1.25  # "poorly isolated": at least 25% slower


def _rows(section: nb.NeighboursSection, aggressor: str, vm: bool) -> list[nb.NeighbourRow]:
    return [
        r
        for r in section.rows
        if r.aggressor == aggressor and ((r.kind in ("microvm", "vm")) == vm)
    ]


def judge(section: nb.NeighboursSection, aggressor: str, expect: str) -> str:
    """Containers' slowdown under `aggressor` against `expect` (well or poorly)."""
    rows = _rows(section, aggressor, vm=False)
    if not rows:
        return "not measured"
    said = ", ".join(f"{r.platform} {r.median:.2f}x ({r.low:.2f}-{r.high:.2f})" for r in rows)
    if expect == "well":
        ok = [r for r in rows if r.high <= WELL]
        bad = [r for r in rows if r.low > WELL]
        band = f"every repeat <= {WELL:.2f}x"
    else:
        ok = [r for r in rows if r.low >= POORLY]
        bad = [r for r in rows if r.high < POORLY]
        band = f"every repeat >= {POORLY:.2f}x"
    if len(ok) == len(rows):
        verdict = "met"
    elif len(bad) == len(rows):
        verdict = "missed"
    else:
        verdict = "mixed"
    return f"{verdict} ({band}): {said}"


def reading(section: nb.NeighboursSection, load: float, cores: object) -> list[str]:
    """What this run's figures say, from the figures themselves (clear slowdowns, noise,
    emulation), so that the text stays true of whichever run it is written for."""
    containers = [r for r in section.rows if r.kind not in ("microvm", "vm")]
    vms = [r for r in section.rows if r.kind in ("microvm", "vm")]
    clear = [r for r in containers if r.low >= POORLY]
    faster = [r for r in section.rows if r.median < 1.0]
    out = []
    if containers:
        out.append(
            "Reading it. Slowdowns of containers whose every repeat is at or above "
            f"{POORLY:.2f}x, whatever the host's noise: "
            + (
                ", ".join(f"{r.platform} {r.aggressor} {r.median:.2f}x" for r in clear)
                if clear
                else "none"
            )
            + ". "
            + (
                f"Medians below 1 ({len(faster)} of {len(section.rows)} rows: "
                + ", ".join(f"{r.platform} {r.aggressor} {r.median:.2f}x" for r in faster[:6])
                + ("..." if len(faster) > 6 else "")
                + ") mean the victim ran faster beside its neighbour: the host's other load "
                f"(1-min load {load:.1f} on {cores} cores when the run began) moved more "
                "between its alone and contended windows than the neighbour did, and a "
                "few repeats of a few seconds cannot separate a 10-20% effect from that. "
                if faster
                else ""
            )
            + "`cpus: 1` is a cap, not a reservation: every other runnable task on the "
            "host takes a share of the victim's core too."
        )
    if vms:
        out.append(
            "Under TCG every VM figure is emulated: QEMU translates each guest "
            "instruction on a host thread, so a VM victim's rate is set by how much host "
            "CPU its QEMU gets, not by the guest's isolation; these rows say that VM "
            "neighbours run and are measured (their `io` aggressor on the VM's own virtio "
            "disk), not that VMs isolate better or worse than containers."
            if all(r.emulated for r in vms)
            else "The VMs ran with hardware virtualisation: their rows compare with the "
            "containers' directly."
        )
    return [line for text in out for line in (text, "")]


def vm_check(vms: list[nb.NeighbourRow]) -> str:
    if not vms:
        return "not measured"
    said = ", ".join(
        f"{r.platform} {r.aggressor} {r.median:.2f}x ({r.low:.2f}-{r.high:.2f})"
        for r in vms
        if r.aggressor in ("stream", "vm", "io")
    )
    if all(r.emulated for r in vms):
        return f"not decided: every VM figure is emulated (TCG): {said}"
    return f"compare with the containers' rows: {said}"


def run_text(run_dir: Path) -> str:
    run = load_run(run_dir)
    section = nb.build(run.run_id, run.steps)
    if section is None:
        raise SystemExit(f"{run_dir}: no neighbour runs in it")
    meta = run.metadata
    host = meta.get("host") or {}
    started, finished = str(meta.get("started_at")), str(meta.get("finished_at"))
    name = str((meta.get("scenario") or {}).get("name") or "isolation")
    scenario = f"scenarios/{name}.yaml"
    table = [
        "| " + " | ".join(nb.COLUMNS) + " |",
        "| --- | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for c in nb.display_rows(section):
        table.append("| " + " | ".join(str(c[k]) for k in nb.COLUMNS) + " |")
    vms = [r for r in section.rows if r.kind in ("microvm", "vm")]
    checks = [
        ("containers isolate CPU well with limits (cpu aggressor)", judge(section, "cpu", "well")),
        ("containers isolate memory bandwidth poorly (stream aggressor)",
         judge(section, "stream", "poorly")),
        ("containers isolate memory pressure poorly (vm aggressor)",
         judge(section, "vm", "poorly")),
        ("containers isolate disk I/O poorly (io aggressor)", judge(section, "io", "poorly")),
        ("containers under a fork aggressor (IBS: fork bombs hurt OS-level systems)",
         judge(section, "fork", "poorly")),
        ("containers under a network-stack aggressor (no IBS expectation: its network "
         "tests ran between hosts)", judge(section, "net", "poorly")),
        ("VMs isolate memory and disk better than containers", vm_check(vms)),
    ]  # fmt: skip
    checks = [(what, verdict) for what, verdict in checks if verdict != "not measured"]
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    return "\n".join(
        [
            f"## Run {run.run_id}, {started} to {finished}",
            "",
            f"Host: {host_line()}. Host load (1 min) when the run started: "
            f"{host.get('load_avg_1m', 0):.1f} on {host.get('cpu_cores')} cores: other "
            "sessions' test suites, engines and VMs shared this host the whole time, so "
            "the victim had more neighbours than its aggressor, alone and contended alike. "
            f"`bench run {scenario}`, then "
            "`python benchmarks/neighbours.py RUN_DIR`; the table is bench's own "
            "(bench.report.neighbours). Victim and aggressor: one CPU each (containers "
            "`cpus: 1`, `memory: 512MiB`; VMs `vcpus: 1`, `memory: 1GiB`).",
            "",
            *table,
            "",
            f"Platforms: {', '.join(run.platforms_recorded)}. The Isolation Benchmark "
            "Suite's shape, judged on this run:",
            "",
            *(f"- {what}: **{verdict}**" for what, verdict in checks),
            "",
            *reading(section, float(host.get("load_avg_1m") or 0), host.get("cpu_cores")),
            "Neighbour runs that gave no figure:",
            "",
            *failures,
            "",
        ]
    )


def main() -> None:
    tabulate_runs(__doc__ or "", HEADING, run_text)


if __name__ == "__main__":
    main()
