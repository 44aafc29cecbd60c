"""Network throughput against native (issue 23 §1): a stored run of scenarios/network.yaml
(iperf3 instance -> a server bench runs on the host), read with bench's own reader and
judged with bench's own workloads table and bootstrap (bench.report.workloads), set
beside the published shape (Felter et al. 2014, IBM: Docker's NAT/bridge networking
costs throughput and adds latency against host networking; `--net=host` is as native):

- runc over a bridge below runc on the host's network (the veth + bridge path costs);
- runc on the host's network within a few percent of native (same stack, same path);
- podman over its bridge below native.

Each is reported met, missed or not decided (the 95% interval of the ratio straddles the
band), with the host's load during the run. Writes a section of benchmarks/results.md.

    docker network create bench-net
    bench run scenarios/network.yaml
    docker network rm bench-net
    python benchmarks/network.py RUN_DIR [--no-write]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, tabulate_runs  # noqa: E402  (this script's folder is on sys.path)

from bench.model.records import WorkloadRun  # noqa: E402
from bench.model.results import load_run  # noqa: E402
from bench.report import workloads as wl  # noqa: E402

HEADING = "# Network workloads: TCP throughput against native (issue 23 §1)"
FIGURE = "received_bits_per_s"
FEW_PERCENT = 0.05


def ratio_text(
    series: dict, a: str, b: str, rng: np.random.Generator, workload: str = "tcp"
) -> tuple[str, tuple]:
    """a's median over b's with its 95% bootstrap interval (bench's own), as text and
    numbers (ratio, low, high); low/high None under two repeats."""
    sa, sb = series.get((a, workload, FIGURE)), series.get((b, workload, FIGURE))
    if sa is None or sb is None:
        return "not measured", (None, None, None)
    ratio = statistics.median(sa.values) / statistics.median(sb.values)
    interval = wl.ratio_interval(sa.values, sb.values, rng)
    low, high = interval if interval is not None else (None, None)
    ci = f" ({low:.2f}-{high:.2f})" if low is not None else ""
    return f"{a}/{b} {ratio:.2f}{ci}", (ratio, low, high)


def below(text: str, nums: tuple) -> str:
    ratio, low, high = nums
    if ratio is None:
        return text
    if high is None:
        return f"not decided: {text}, too few repeats"
    if high < 1:
        return f"met: {text}"
    if low > 1:
        return f"missed: {text}"
    return f"not decided: {text} straddles 1"


def within(text: str, nums: tuple) -> str:
    ratio, low, high = nums
    if ratio is None:
        return text
    if high is None:
        return f"not decided: {text}, too few repeats"
    if low >= 1 - FEW_PERCENT and high <= 1 + FEW_PERCENT:
        return f"met: {text}"
    if high < 1 - FEW_PERCENT or low > 1 + FEW_PERCENT:
        return f"missed: {text}"
    return f"not decided: {text} straddles 0.95-1.05"


def retransmits(samples: list[dict]) -> dict[str, float]:
    """Median retransmits per run, per platform (an iperf3 diagnostic)."""
    found: dict[str, list[float]] = {}
    for s in samples:
        for raw in (s.get("extras") or {}).get("workloads") or []:
            run = WorkloadRun.model_validate(raw)
            value = run.diagnostics.get("retransmits")
            if run.workload.startswith("tcp") and isinstance(value, int | float):
                found.setdefault(str(s["platform"]), []).append(float(value))
    return {p: statistics.median(v) for p, v in found.items()}


def run_text(run_dir: Path) -> str:
    run = load_run(run_dir)
    samples = list(run.iter_samples())
    section = wl.build(run.run_id, samples)
    if section is None:
        raise SystemExit(f"{run_dir}: no workload runs in it")
    series, _ = wl.collect(samples)
    retrans = retransmits(samples)
    rng = np.random.default_rng(wl.SEED)
    meta = run.metadata
    host = meta.get("host") or {}
    table = [
        "| platform | path to the server | median | spread | n | ratio to native (95% CI) "
        "| retransmits (median) |",
        "| --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    paths = {
        "native": "host loopback",
        "runc": "veth + bridge (bench-net) to its gateway",
        "runc-host": "host loopback (network: host)",
        "podman": "veth + podman's bridge to its gateway",
    }
    for c in wl.display_rows(section):
        if not str(c["workload"]).startswith("tcp"):
            continue
        p = str(c["platform"])
        path = paths.get(p, "?")
        if c["workload"] == "tcp-loopback":
            path = "its own loopback: gVisor's netstack" if p == "runsc" else "its own loopback"
        table.append(
            f"| {p} | {path} | {c['median']} | {c['spread (min-max, CV)']} | "
            f"{c['n']} | {c['ratio to native (95% CI)']} | {retrans.get(p, float('nan')):.0f} |"
        )
    bridge = ratio_text(series, "runc", "runc-host", rng)
    host_net = ratio_text(series, "runc-host", "native", rng)
    podman = ratio_text(series, "podman", "native", rng)
    netstack = ratio_text(series, "runsc", "runc", rng, "tcp-loopback")
    runc_lo = ratio_text(series, "runc", "native", rng, "tcp-loopback")
    checks = [
        ("gVisor's netstack (runsc, loopback) below runc's (the host kernel)", below(*netstack)),
        ("runc's loopback within a few percent of native's", within(*runc_lo)),
        ("runc over a bridge below runc on the host's network", below(*bridge)),
        ("runc on the host's network within a few percent of native", within(*host_net)),
        ("podman over its bridge below native", below(*podman)),
    ]
    checks = [(what, verdict) for what, verdict in checks if verdict != "not measured"]
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    reading = []
    if any(r.workload == "tcp" for r in section.rows):
        reading.append(
            "Reading it. What differs from Felter et al.'s set-up: their traffic crossed a "
            "10 GbE link between two machines, Docker's through NAT; here it never leaves "
            "this host (loopback, or a veth pair and a Linux bridge to the bridge's own "
            "gateway address: routed, no NAT), so the figure is the kernel's path cost in "
            "CPU time on 2 shared cores, not a wire's. Published latency figures (netperf "
            "request/response): sockperf's round trip, in the section \"Network "
            'workloads: latency and instance to instance" (benchmarks/latency.py).'
        )
    if any(r.workload == "tcp-loopback" for r in section.rows):
        reading.append(
            "Reading it. Over an instance's own loopback nothing crosses a bridge: runc and "
            "podman use the host kernel's stack as native does, and runsc's traffic goes "
            "through gVisor's netstack in its Sentry (gVisor's performance guide: its "
            "network stack is slower than the host's)."
        )
    if "runc" in retrans and "runc-host" in retrans:
        reading.append(
            f"Retransmits (median per 5 s run): {retrans['runc']:.0f} over the bridge "
            f"against {retrans['runc-host']:.0f} on the host's network "
            f"and {retrans.get('native', float('nan')):.0f} natively."
        )
    return "\n".join(
        [
            f"## Run {run.run_id}, {meta.get('started_at')} to {meta.get('finished_at')}",
            "",
            f"Host: {host_line()}. Host load (1 min) when the run started: "
            f"{host.get('load_avg_1m', 0):.1f} on {host.get('cpu_cores')} cores (other "
            "sessions' tests and VMs shared it; iperf3's client and server compete with "
            "them and with each other for the 2 cores). `bench run scenarios/network.yaml` "
            "(or network-loopback.yaml), then `python benchmarks/network.py RUN_DIR`; the "
            "table is bench's own "
            f"(bench.report.workloads), intervals bootstrapped with seed {wl.SEED} "
            f"({wl.BOOTSTRAP} resamples). One TCP stream, 5 s, the client in the instance.",
            "",
            *table,
            "",
            "Expected shape (Felter et al. 2014; the issue), judged on this run:",
            "",
            *(f"- {what}: **{verdict}**" for what, verdict in checks),
            "",
            *(f"{line}\n" for line in reading),
            "Workload runs that gave no figures:",
            "",
            *failures,
            "",
        ]
    )


def main() -> None:
    tabulate_runs(__doc__ or "", HEADING, run_text)


if __name__ == "__main__":
    main()
