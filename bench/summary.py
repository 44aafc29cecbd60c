"""The end-of-run summary, computed from the stored raw samples."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.stats import percentile


def summarize(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (platform, N), in the order the platforms ran."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        groups[(s["platform"], s["n"])].append(s)
    rows = []
    for (platform, n), group in groups.items():
        ready = [s["ready_s"] for s in group if s["ok"]]
        first = group[0]
        rows.append(
            {
                "platform": platform,
                "backend": first["backend"],
                "kind": first["kind"],
                "accel": first.get("accel"),
                "n": n,
                "samples": len(group),
                "failures": sum(1 for s in group if not s["ok"]),
                "ready_p50_s": percentile(ready, 50),
                "ready_p95_s": percentile(ready, 95),
                "ready_max_s": max(ready) if ready else None,
                "errors": sorted({s["error"] for s in group if s["error"]}),
            }
        )
    return rows
