"""Rich tables for the terminal: the run summary and a scenario's plan."""

from __future__ import annotations

from typing import Any

from bench.units import format_bytes, format_seconds


def summary_table(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"run {metadata.get('run_id')} ({metadata.get('status')})")
    for col in ("platform", "kind", "accel", "N", "samples", "failures"):
        t.add_column(col, justify="right" if col in ("N", "samples", "failures") else "left")
    for col in ("ready p50", "ready p95", "ready max"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            r["platform"],
            r["kind"],
            r["accel"] or "-",
            str(r["n"]),
            str(r["samples"]),
            f"[red]{r['failures']}[/]" if r["failures"] else "0",
            format_seconds(r["ready_p50_s"]),
            format_seconds(r["ready_p95_s"]),
            format_seconds(r["ready_max_s"]),
        )
    errors = sorted({e for r in rows for e in r["errors"]})
    if errors:
        t.caption = "failures: " + "; ".join(errors[:5])
    return t


def plan_table(scenario: Any) -> Any:
    from rich.table import Table

    t = Table(title=f"{scenario.name}: {scenario.description}".rstrip(": "))
    for col in ("platform", "backend", "image", "memory", "counts", "repeat", "instances"):
        t.add_column(col)
    total = 0
    for p in scenario.platforms:
        counts = scenario.counts_for(p)
        n = sum(counts) * scenario.repeat
        total += n
        t.add_row(
            p.name,
            p.backend,
            p.image,
            format_bytes(p.memory),
            ", ".join(map(str, counts)),
            str(scenario.repeat),
            str(n),
        )
    steps = len(scenario.plan())
    t.caption = (
        f"{steps} steps, {total} instances in total; timeout {scenario.timeout:g}s per "
        f"instance; {scenario.launch.concurrency} launches in flight"
    )
    return t
