"""Rich tables for the terminal: the run summary and a scenario's plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bench.model import kinds
from bench.model.records import Row, obj, text
from bench.model.units import count_of, format_bytes, format_seconds

if TYPE_CHECKING:
    from rich.table import Table

    from bench.judge.summary import Density, SummaryRow
    from bench.plan.scenario import Scenario


def summary_table(
    rows: list[SummaryRow],
    metadata: Row,
    density: Mapping[str, Density] | None = None,
) -> Table:
    from rich.table import Table

    t = Table(title=f"run {metadata.get('run_id')} ({metadata.get('status')})")
    columns = [
        ("platform", "left"),
        ("accel", "left"),
        ("N", "right"),
        ("ok/all", "right"),
        ("ready p50", "right"),
        ("p95", "right"),
        ("max", "right"),
        ("mem host", "right"),
        ("mem PSS", "right"),
        ("mem engine", "right"),
        ("disk rw", "right"),
        ("storage", "right"),
    ]
    for name, justify in columns:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    # Several hosts: each row says which (statistics never pool hosts).
    several = len({r.get("host") for r in rows}) > 1
    for r in spectrum_order(rows):
        samples, failures = _count(r, "samples"), _count(r, "failures")
        ok = samples - failures
        platform = str(r["platform"])
        t.add_row(
            f"{platform} @ {r.get('host')}" if several else platform,
            str(r["accel"] or "-"),
            str(r["n"]),
            f"[red]{ok}/{samples}[/]" if failures else f"{ok}/{samples}",
            format_seconds(_statistic(r, "ready_p50_s")),
            format_seconds(_statistic(r, "ready_p95_s")),
            format_seconds(_statistic(r, "ready_max_s")),
            format_bytes(_statistic(r, "mem_host_per_instance_bytes")),
            format_bytes(_statistic(r, "mem_pss_per_instance_bytes")),
            format_bytes(_statistic(r, "mem_engine_per_instance_bytes")),
            format_bytes(_statistic(r, "disk_per_instance_bytes")),
            format_bytes(_statistic(r, "storage_per_instance_bytes")),
        )
    notes = [
        "per instance (medians): mem host = drop of host MemAvailable; disk rw = its own "
        "writable layer/overlay; storage = growth of the engine's storage"
    ]
    searches = obj(metadata.get("searches"))
    for platform, d in (density or {}).items():
        # Runs written before ramps existed all restarted from zero at every N.
        mode = obj(searches.get(platform)).get("mode", "restart")
        notes.append(
            f"max density {platform}: {d['max_density']} ({mode} mode; "
            f"stopped by {d['limit']}: {d['limit_detail']})"
        )
    errors = sorted({e for r in rows for e in _texts(r, "errors")})
    if errors:
        notes.append("failures: " + "; ".join(errors[:5]))
    t.caption = "\n".join(notes)
    return t


def _count(row: SummaryRow, key: str) -> int:
    v = row[key]
    return v if isinstance(v, int) else 0


def _statistic(row: SummaryRow, key: str) -> float | None:
    v = row[key]
    return v if isinstance(v, int | float) else None


def _texts(row: SummaryRow, key: str) -> list[str]:
    v = row[key]
    return v if isinstance(v, list) else []


def spectrum_order(rows: list[SummaryRow]) -> list[SummaryRow]:
    """Summary rows with platforms from container to VM, as the report orders them; a
    kind's platforms, and each platform's rows, in the order they ran."""
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(str(r["platform"]), i)
    return sorted(rows, key=lambda r: (kinds.order(text(r.get("kind"))), first[str(r["platform"])]))


def plan_table(scenario: Scenario) -> Table:
    from rich.table import Table

    t = Table(title=f"{scenario.name}: {scenario.description}".rstrip(": "))
    # What ready means, when some platform waits for more than the default marker.
    ready = {p.name: p.ready.describe(short=True) for p in scenario.platforms}
    shown_ready = any(label != "BENCH_READY" for label in ready.values())
    cols = ("platform", "backend", "image", "memory", "counts", "repeat", "instances")
    for col in cols + (("ready",) if shown_ready else ()):
        t.add_column(col)
    total = 0
    searches = False
    for p in scenario.platforms:
        counts = scenario.counts_for(p)
        n = sum(counts) * scenario.repeat
        total += n
        search = scenario.search_for(p)
        if search is not None:
            searches = True
            grow = f"+{search.step}" if search.step else f"x{search.factor or 2:g}"
            slo = search.slo.ready_p95
            shown = f"density search {counts[0]}..{counts[-1]} ({grow})" + (
                f", until p95 > {slo:g}s" if slo is not None else ""
            )
        else:
            shown = ", ".join(map(str, counts))
        t.add_row(
            p.name,
            p.backend,
            p.image,
            format_bytes(p.memory),
            shown,
            str(scenario.repeat),
            f"<= {n}" if search is not None else str(n),
            *((ready[p.name],) if shown_ready else ()),
        )
    steps = len(scenario.plan())
    t.caption = (
        f"{'at most ' if searches else ''}{count_of(steps, 'step')}, "
        f"{count_of(total, 'instance')} in total; timeout "
        f"{format_seconds(scenario.timeout, trim=True)} per instance; "
        f"{count_of(scenario.launch.concurrency, 'launch', 'launches')} in flight"
    )
    t.caption_justify = "left"
    return t
