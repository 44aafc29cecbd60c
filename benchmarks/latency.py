"""Network latency and instance-to-instance traffic against native (issue 23 §1): stored
runs of scenarios/network.yaml (sockperf ping-pong instance -> a server bench runs on
the host), network-loopback.yaml (sockperf over each instance's own loopback) and
network-peer.yaml (iperf3 and sockperf between two instances of a platform on one
network), read with bench's own reader and judged with bench's own workloads table and
bootstrap (bench.report.workloads), set beside the published shape: Felter et al. 2014
(IBM; netperf request/response) found Docker's NAT adds latency while `--net=host` is as
native; gVisor's performance guide: its netstack costs more than the host kernel's.

- runc over a bridge: a longer round trip than runc on the host's network;
- runc on the host's network: the round trip of native (within 10 %);
- podman over its bridge: a longer round trip than native;
- runsc over its own loopback (gVisor's netstack; TCP, and UDP whose server gVisor
  serves): a longer round trip than runc's;
- containers on one bridge, instance to instance: below native's throughput and a
  longer round trip (native's pair meets on the host's loopback).

Each is reported met, missed or not decided (the 95% interval of the ratio straddles the
band), with the host's load during the run. Writes a section of benchmarks/results.md.

    docker network create bench-net
    bench run scenarios/network.yaml; bench run scenarios/network-peer.yaml
    docker network rm bench-net
    bench run scenarios/network-loopback.yaml
    python benchmarks/latency.py RUN_DIR... [--no-write]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results_md import host_line, tabulate_runs  # noqa: E402  (this script's folder is on sys.path)

from bench.model.results import load_run  # noqa: E402
from bench.report import workloads as wl  # noqa: E402

HEADING = "# Network workloads: latency and instance to instance (issue 23 §1)"
P50 = "rtt_p50_s"
BITS = "received_bits_per_s"
SAME = 0.10  # a round trip "as native": within 10 % (latency spreads more than rates)
PATHS = {
    "native": "host loopback",
    "runc": "veth + bridge (bench-net) to its gateway",
    "runc-host": "host loopback (network: host)",
    "podman": "veth + podman's bridge to its gateway",
    "runsc": "its own loopback: gVisor's netstack",
}
PEER_PATHS = {
    "native": "two chroots on the host's loopback",
    "runc": "two containers on bench-net: veth, bridge, veth",
    "podman": "two containers on podman's bridge: veth, bridge, veth",
}


def ratio(series: dict, a: tuple, b: tuple, rng: np.random.Generator) -> tuple[str, tuple]:
    """Series a's median over b's (keys (platform, workload, figure)) with bench's 95%
    bootstrap interval, as text and numbers; ("not measured", Nones) when one is absent."""
    sa, sb = series.get(a), series.get(b)
    if sa is None or sb is None:
        return "not measured", (None, None, None)
    value = statistics.median(sa.values) / statistics.median(sb.values)
    interval = wl.ratio_interval(sa.values, sb.values, rng)
    low, high = interval if interval is not None else (None, None)
    ci = f" ({low:.2f}-{high:.2f})" if low is not None else ""
    return f"{a[0]} {a[1]}/{b[0]} {b[1]} {value:.2f}{ci}", (value, low, high)


def verdict(text: str, nums: tuple, want: str) -> str:
    """`want`: "above" 1, "below" 1, or "same" (within SAME of 1)."""
    value, low, high = nums
    if value is None:
        return text
    if high is None:
        return f"not decided: {text}, too few repeats"
    if want == "above":
        met, missed, band = low > 1, high < 1, "1"
    elif want == "below":
        met, missed, band = high < 1, low > 1, "1"
    else:
        met = low >= 1 - SAME and high <= 1 + SAME
        missed = high < 1 - SAME or low > 1 + SAME
        band = f"{1 - SAME:.2f}-{1 + SAME:.2f}"
    if met:
        return f"met: {text}"
    if missed:
        return f"missed: {text}"
    return f"not decided: {text} straddles {band}"


def run_text(run_dir: Path) -> str:
    run = load_run(run_dir)
    samples = list(run.iter_samples())
    section = wl.build(run.run_id, samples)
    if section is None:
        raise SystemExit(f"{run_dir}: no workload runs in it")
    series, _ = wl.collect(samples)
    rng = np.random.default_rng(wl.SEED)
    meta = run.metadata
    host = meta.get("host") or {}
    table = [
        "| platform | workload | path | figure | median | spread | n | ratio to native (95% CI) |",
        "| --- | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for c in wl.display_rows(section, all_figures=True):
        workload, p = str(c["workload"]), str(c["platform"])
        if not workload.startswith(("latency", "tcp-peer")):
            continue
        if workload.endswith("-peer"):
            path = PEER_PATHS.get(p, "?")
        elif workload.endswith("-loopback"):
            path = PATHS["runsc"] if p == "runsc" else "its own loopback"
        else:
            path = PATHS.get(p, "?")
        table.append(
            f"| {p} | {workload} | {path} | {c['figure']} | {c['median']} | "
            f"{c['spread (min-max, CV)']} | {c['n']} | {c['ratio to native (95% CI)']} |"
        )
    lat, lo, peer = "latency", "latency-loopback", "latency-peer"
    udp = "latency-udp-loopback"
    checks = [
        (
            "runc over a bridge: a longer round trip than runc on the host's network",
            verdict(*ratio(series, ("runc", lat, P50), ("runc-host", lat, P50), rng), "above"),
        ),
        (
            "runc on the host's network: native's round trip (within 10 %)",
            verdict(*ratio(series, ("runc-host", lat, P50), ("native", lat, P50), rng), "same"),
        ),
        (
            "podman over its bridge: a longer round trip than native",
            verdict(*ratio(series, ("podman", lat, P50), ("native", lat, P50), rng), "above"),
        ),
        (
            "runc's loopback: native's round trip (the same kernel stack; within 10 %)",
            verdict(*ratio(series, ("runc", lo, P50), ("native", lo, P50), rng), "same"),
        ),
        (
            "runsc's loopback (gVisor's netstack): a longer round trip than runc's",
            verdict(*ratio(series, ("runsc", lo, P50), ("runc", lo, P50), rng), "above"),
        ),
        (
            "runsc's UDP loopback (gVisor's netstack): a longer round trip than runc's",
            verdict(*ratio(series, ("runsc", udp, P50), ("runc", udp, P50), rng), "above"),
        ),
        (
            "runc instance to instance over a bridge: a longer round trip than native's pair",
            verdict(*ratio(series, ("runc", peer, P50), ("native", peer, P50), rng), "above"),
        ),
        (
            "runc instance to instance over a bridge: below native's pair's throughput",
            verdict(
                *ratio(series, ("runc", "tcp-peer", BITS), ("native", "tcp-peer", BITS), rng),
                "below",
            ),
        ),
    ]
    checks = [(what, v) for what, v in checks if v != "not measured"]
    failures = [f"- {line}" for line in section.failures] or ["- none"]
    reading = []
    if any(r.workload == "latency" for r in section.rows):
        reading.append(
            "Reading it. Felter et al. measured netperf's request/response between two "
            "machines over 10 GbE, Docker's through NAT; here the round trip never leaves "
            "this host (loopback, or veth + bridge to the bridge's own gateway: routed, no "
            "NAT), so a ratio is the extra kernel path (veth, bridge, netfilter hooks) "
            "against a round trip of about ten microseconds. p99 spreads far more than "
            "p50 (the CVs): on 2 cores other sessions load, it measures waiting for a CPU "
            "as much as the path."
        )
    if any(r.workload.endswith("-peer") for r in section.rows):
        reading.append(
            "Reading it. Instance to instance, a container's traffic crosses two veth "
            "pairs and the bridge; native's two chroots share the host's network "
            "namespace and meet on its loopback, the shortest path this host has."
        )
    if any(f.startswith("runsc latency-loopback") for f in section.failures):
        reading.append(
            "runsc's latency-loopback gave no figure: sockperf's server answers with "
            "sendto() on its connected TCP socket, passing an address recvfrom() left "
            "unset; Linux ignores it, gVisor (Debian's 20221219) refuses it (EAFNOSUPPORT) "
            "and the server exits: a compatibility gap, not a latency."
        )
    if any("can't execute 'sockperf'" in f for f in section.failures):
        reading.append(
            "The runs that could not execute sockperf met a bench/workloads image without "
            "it: the engines' image is shared by this session's other work, and another "
            "worktree (whose image packs no sockperf yet) rebuilt it during this run."
        )
    return "\n".join(
        [
            f"## Run {run.run_id}, {meta.get('started_at')} to {meta.get('finished_at')}",
            "",
            f"Host: {host_line()}. Host load (1 min) when the run started: "
            f"{host.get('load_avg_1m', 0):.1f} on {host.get('cpu_cores')} cores (other "
            "sessions' tests shared it; a round trip on 2 shared cores waits for a CPU as "
            "often as for the network). sockperf 3.7 ping-pong over TCP (UDP for "
            "latency-udp-loopback), one 14-byte message "
            "in flight, `--full-rtt` (the whole round trip; sockperf's default is half), "
            "percentiles of the valid period (its first 400 ms are a warm-up); iperf3 one "
            f"stream. The table is bench's own (bench.report.workloads), intervals "
            f"bootstrapped with seed {wl.SEED} ({wl.BOOTSTRAP} resamples); ratio above 1 on "
            "a round trip: slower than native.",
            "",
            *table,
            "",
            "Expected shape (Felter et al. 2014; gVisor's guide; the issue), judged on this run:",
            "",
            *(f"- {what}: **{v}**" for what, v in checks),
            *([] if checks else ["- none measured in this run"]),
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
