"""The end-of-run summary, computed from the stored raw samples and step records."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

from bench.stats import percentile

# Host drop and summed PSS further apart than this get a one-line explanation.
MEMORY_DISAGREEMENT = 0.25


def _median(values: list[Any]) -> float | None:
    xs = [v for v in values if v is not None]
    return median(xs) if xs else None


def summarize(
    samples: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per (platform, N) in the order they ran, refused steps included (0 samples).

    The one place these statistics are computed: the terminal summary and the
    report's summary.csv both come from here.
    """
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    step_groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for st in steps or []:
        groups.setdefault((st["platform"], st["n"]), [])
        if st.get("status", "ran") == "ran":
            step_groups[(st["platform"], st["n"])].append(st)
    for s in samples:
        groups[(s["platform"], s["n"])].append(s)
    heads = {(st["platform"], st["n"]): st for st in steps or []}
    rows = []
    for (platform, n), group in groups.items():
        ok = [s for s in group if s["ok"]]
        ready = [s["ready_s"] for s in ok]
        first = group[0] if group else heads[(platform, n)]
        accels = sorted({s["accel"] for s in ok if s.get("accel")})
        st = step_groups.get((platform, n), [])
        rows.append(
            {
                "platform": platform,
                "backend": first.get("backend"),
                "kind": first.get("kind"),
                "accel": ",".join(accels) or None,
                "n": n,
                "samples": len(group),
                "failures": sum(1 for s in group if not s["ok"]),
                "ready_p50_s": percentile(ready, 50),
                "ready_p95_s": percentile(ready, 95),
                "ready_max_s": max(ready) if ready else None,
                "mem_host_per_instance_bytes": _median(
                    [x.get("host_drop_per_instance_bytes") for x in st]
                ),
                # Ready instances only: one still booting at its timeout is no steady state.
                "mem_pss_per_instance_bytes": _median([s.get("pss_bytes") for s in ok]),
                "mem_engine_per_instance_bytes": _median([s.get("engine_mem_bytes") for s in ok]),
                "disk_per_instance_bytes": _median([s.get("disk_writable_bytes") for s in ok]),
                "disk_growth_per_instance_bytes": _median(
                    [
                        x["disk_growth_bytes"] / n
                        for x in st
                        if x.get("disk_growth_bytes") is not None
                    ]
                ),
                "launch_rate_per_s": _median([x.get("launch_rate_per_s") for x in st]),
                "errors": sorted({s["error"] for s in group if s["error"]}),
            }
        )
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


def searched_platforms(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Platforms of a stored scenario that ran a density search, with their search block.

    A platform's own `density` wins; a platform with its own `counts` does not search;
    otherwise the scenario's `density` applies (as Scenario.search_for decides).
    """
    out = {}
    for p in scenario.get("platforms", []):
        if p.get("density"):
            out[p["name"]] = p["density"]
        elif not p.get("counts") and scenario.get("density"):
            out[p["name"]] = scenario["density"]
    return out


def density_results(
    steps: list[dict[str, Any]], scenario: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """density_of() for each platform that searched (fixed-count platforms have none)."""
    searched = searched_platforms(scenario)
    by_platform: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for st in steps:
        if st["platform"] in searched:
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
        kind = found[0][0]["kind"]
        if host_higher * 2 >= len(found):
            why = (
                "the host drop also counts kernel memory no process owns (page tables, "
                "cgroup and overlay bookkeeping) and the engine daemons' own growth"
                if kind == "container"
                else "the host drop also counts kernel memory (page tables, KVM/TCG "
                "structures) and libvirt's own growth"
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
    for platform, ns in rose.items():
        lines.append(
            f"{platform}: host MemAvailable rose during the step at "
            f"{', '.join(f'N={n}' for n in ns)} (the kernel reclaimed cache, or other "
            "processes freed memory): the host view there is noise; use PSS or a larger N"
        )
    return lines
