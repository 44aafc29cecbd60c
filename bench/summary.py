"""The end-of-run summary, computed from the stored raw samples and step records."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

from bench import kinds
from bench.records import Sample, StepRecord, metrics
from bench.stats import percentile

# Host drop and summed PSS further apart than this get a one-line explanation.
MEMORY_DISAGREEMENT = 0.25


def _median(values: list[Any]) -> float | None:
    xs = [v for v in values if v is not None]
    return median(xs) if xs else None


_STATISTICS = {
    "median": _median,
    "p50": lambda xs: percentile([x for x in xs if x is not None], 50),
    "p95": lambda xs: percentile([x for x in xs if x is not None], 95),
    "max": lambda xs: max((x for x in xs if x is not None), default=None),
}


def summary_columns() -> list[str]:
    """Every statistic column of a summary row, as bench.records declares them."""
    return [
        col
        for model in (Sample, StepRecord)
        for info in metrics(model).values()
        for col in info.summary
    ]


def summarize(
    samples: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per (host, platform, N) in the order they ran, refused steps included.

    The one place these statistics are computed: the terminal summary and the
    report's summary.csv both come from here. Which statistics: every metric of
    bench.records with its declared summary columns (sample metrics over ready
    instances, step metrics over the steps that ran).
    """

    # Statistics never pool hosts: one row per (host, platform, N).
    def key(r: dict[str, Any]) -> tuple[Any, str, int]:
        return (r.get("host"), r["platform"], r["n"])

    groups: dict[tuple[Any, str, int], list[dict[str, Any]]] = defaultdict(list)
    step_groups: dict[tuple[Any, str, int], list[dict[str, Any]]] = defaultdict(list)
    for st in steps or []:
        groups.setdefault(key(st), [])
        if st.get("status", "ran") == "ran":
            step_groups[key(st)].append(st)
    for s in samples:
        groups[key(s)].append(s)
    heads = {key(st): st for st in steps or []}
    rows = []
    for (host, platform, n), group in groups.items():
        # Ready instances only: one still booting at its timeout is no steady state.
        ok = [s for s in group if s["ok"]]
        first = group[0] if group else heads[(host, platform, n)]
        accels = sorted({s["accel"] for s in ok if s.get("accel")})
        row: dict[str, Any] = {
            "platform": platform,
            "host": host,
            "backend": first.get("backend"),
            "kind": first.get("kind"),
            "accel": ",".join(accels) or None,
            "n": n,
            "samples": len(group),
            "failures": sum(1 for s in group if not s["ok"]),
        }
        sources = ((Sample, ok), (StepRecord, step_groups.get((host, platform, n), [])))
        for model, records in sources:
            for name, info in metrics(model).items():
                values = [r.get(name) for r in records]
                if info.per_instance:
                    values = [v / n if v is not None else None for v in values]
                for column, statistic in info.summary.items():
                    row[column] = _STATISTICS[statistic](values)
        row["errors"] = sorted({s["error"] for s in group if s["error"]})
        rows.append(row)
    return rows


def density_of(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """One platform's density search: the largest N whose every step met every limit,
    and the limit of the first step that broke one ("max": the search reached its max)."""
    bad_ns = {
        st["n"]
        for st in steps
        if st.get("status", "ran") != "ran" or st.get("failures") or st.get("limit")
    }
    good = [st["n"] for st in steps if st["n"] not in bad_ns]
    stopper = next((st for st in steps if st.get("limit")), None)
    return {
        "max_density": max(good) if good else 0,
        "limit": stopper["limit"] if stopper else "max",
        "limit_detail": stopper.get("limit_detail") if stopper else "reached the search's max",
    }


def density_results(
    steps: list[dict[str, Any]], searches: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """density_of() for each platform that searched (fixed-count platforms have none).

    `searches` is the run's metadata["searches"]: which platforms searched is decided
    once, by the scenario, when the run is written (bench.results upgrades older runs).
    """
    by_platform: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for st in steps:
        if st["platform"] in searches:
            by_platform[st["platform"]].append(st)
    return {platform: density_of(sts) for platform, sts in by_platform.items()}


def memory_disagreements(rows: list[dict[str, Any]]) -> list[str]:
    """One line per platform whose summed PSS and host drop disagree by > 25% at some N."""
    by_platform: dict[str, list[tuple[dict[str, Any], float]]] = defaultdict(list)
    rose: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        host, pss = r["mem_host_per_instance_bytes"], r["mem_pss_per_instance_bytes"]
        if host is not None and host <= 0:
            rose[r["platform"]].append(r["n"])
            continue
        if not host or not pss:
            continue
        gap = abs(host - pss) / max(host, pss)
        if gap > MEMORY_DISAGREEMENT:
            by_platform[r["platform"]].append((r, gap))
    lines = []
    for platform, found in by_platform.items():
        host_higher = sum(
            1
            for r, _ in found
            if r["mem_host_per_instance_bytes"] > r["mem_pss_per_instance_bytes"]
        )
        first = found[0][0]
        if host_higher * 2 >= len(found):
            # A sandbox is still a container to the host: cgroups, overlay, the daemons.
            why = (
                "the host drop also counts kernel memory no process owns (page tables, "
                "cgroup and overlay bookkeeping) and the engine daemons' own growth"
                if not kinds.is_vm(first["kind"])
                else "the host drop also counts kernel memory (page tables, KVM/TCG "
                "structures)"
                # QEMU launched directly is in PSS already; libvirt's daemons are not.
                + (" and libvirt's own growth" if first.get("backend") != "qemu" else "")
            )
        else:
            why = (
                "PSS counts pages the host already had in use or could reclaim (shared "
                "libraries, cached or KSM-merged pages)"
            )
        ns = ", ".join(f"N={r['n']} ({gap:.0%})" for r, gap in found)
        lines.append(
            f"{platform}: host view and PSS per instance differ by more than "
            f"{MEMORY_DISAGREEMENT:.0%} at {ns}; {why}; at small N the host view is "
            "mostly noise"
        )
    for platform, counts in rose.items():
        lines.append(
            f"{platform}: host MemAvailable rose during the step at "
            f"{', '.join(f'N={n}' for n in counts)} (the kernel reclaimed cache, or other "
            "processes freed memory): the host view there is noise; use PSS or a larger N"
        )
    return lines
