"""One function per plot. Each takes the report's Frames and returns a matplotlib Figure,
or raises NoData saying what is missing, so the report skips it with a note instead of
drawing an empty plot.

Figures are built with matplotlib's object API (no pyplot, no global state); PNGs are
written through the Agg canvas, so no display is ever needed.
"""

from __future__ import annotations

import math
from typing import Any

from bench import kinds
from bench.report.frame import Frames, platform_order
from bench.units import format_seconds, size_unit

# A metric spanning more than this ratio (max / min) gets a log axis.
LOG_RATIO = 30
# One marker per kind (bench.kinds), so a line says where its platform sits from
# container to VM even in grey: circle, diamond, triangle, square.
KIND_MARKERS = {kinds.CONTAINER: "o", kinds.SANDBOX: "D", kinds.MICROVM: "^", kinds.VM: "s"}


class NoData(Exception):
    """This plot has nothing to draw; the message says what is missing and why."""


def ready_distribution(frames: Frames) -> Any:
    """Ready time of every successful instance, one box (and its points) per platform and N."""
    ok = frames.samples[(frames.samples["ok"] == True) & frames.samples["ready_s"].notna()]  # noqa: E712
    if ok.empty:
        raise NoData("no instance became ready: there is no ready time to plot")
    colors = series_colors(frames)
    groups = [
        (f"{series}  N={n}", g["ready_s"].to_numpy(), colors[series])
        for (series, n), g in _ordered(ok, frames)
    ]
    longest = max(len(g[0]) for g in groups)
    fig = _figure(6 + 0.075 * longest, 1.2 + 0.42 * len(groups))
    ax = fig.add_subplot()
    data = [g[1] for g in groups]
    positions = list(range(len(groups), 0, -1))  # first group on top
    box = ax.boxplot(
        data,
        positions=positions,
        orientation="horizontal",
        widths=0.6,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": "black"},
    )
    for patch, (_, _, color) in zip(box["boxes"], groups, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.35)
    import numpy as np

    rng = np.random.default_rng(0)
    for y, (_, values, color) in zip(positions, groups, strict=True):
        jitter = rng.uniform(-0.18, 0.18, len(values))
        ax.scatter(values, y + jitter, s=10, color=color, alpha=0.8, zorder=3)
    ax.set_yticks(positions, [g[0] for g in groups])
    all_values = np.concatenate(data)
    _maybe_log(ax, "x", all_values)
    _seconds_axis(ax, "x")
    ax.set_xlabel("ready time: launch call → readiness line")
    failures = int((frames.samples["ok"] != True).sum())  # noqa: E712
    ax.set_title(
        "Ready time per platform and N"
        + (f" ({failures} failed instances not shown)" if failures else "")
    )
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def ready_percentiles(frames: Frames) -> Any:
    """Ready p50 (solid) and p95 (dashed) against N, one colour per platform."""
    s = frames.summary.dropna(subset=["ready_p50_s"])
    if s.empty:
        raise NoData("no instance became ready: there is no ready time to plot")
    colors = series_colors(frames)
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    for series, g in _by_series(s, frames):
        kind = g["kind"].iloc[0]
        marker = KIND_MARKERS.get(kind, "o")
        ax.plot(
            g["n"], g["ready_p50_s"], marker=marker, color=colors[series], label=f"{series} p50"
        )
        ax.plot(
            g["n"],
            g["ready_p95_s"],
            marker=marker,
            linestyle="--",
            color=colors[series],
            alpha=0.7,
            label=f"{series} p95",
        )
    _n_axis(ax, s["n"])
    _maybe_log(ax, "y", list(s["ready_p50_s"]) + list(s["ready_p95_s"]))
    _seconds_axis(ax, "y")
    ax.set_ylabel("ready time")
    ax.set_title("Ready time p50 / p95 vs N (instances started together)")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    fig.tight_layout()
    return fig


MEMORY_VIEWS = (
    ("host view: MemAvailable drop", "steps", "host_drop_per_instance_bytes"),
    ("process view: PSS", "samples", "pss_bytes"),
    ("process view: USS", "samples", "uss_bytes"),
    ("process view: RSS", "samples", "rss_bytes"),
    ("engine view: cgroup / libvirt", "samples", "engine_mem_bytes"),
)


def memory_per_instance(frames: Frames) -> Any:
    """Memory per instance against N, one panel per view that was measured."""
    views = []
    for title, source, column in MEMORY_VIEWS:
        medians = _medians(frames, source, column)
        if not medians.empty:
            views.append((title, medians))
    if not views:
        raise NoData(
            "memory was not measured in these runs (no host drop, PSS, USS, RSS or "
            "engine figures): runs from a bench with memory probes have them"
        )
    colors = series_colors(frames)
    cols = min(len(views), 3)
    rows = math.ceil(len(views) / cols)
    fig = _figure(4.3 * cols, 3.4 * rows)
    for i, (title, medians) in enumerate(views, start=1):
        ax = fig.add_subplot(rows, cols, i)
        _size_panel(ax, medians, colors)
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3, which="both")
        if i == 1:
            ax.legend(fontsize="small")
    fig.suptitle("Memory per instance vs N, by view (views are not interchangeable)")
    fig.tight_layout()
    return fig


def density_curve(frames: Frames) -> Any:
    """For platforms that ran a density search: ready p95 and launch rate against N, with
    the SLO, the max density reached and the limit that stopped the search."""
    if not frames.density:
        raise NoData("no density search in these runs (the scenario has `counts`, not `density`)")
    colors = series_colors(frames)
    s = frames.summary
    has_rate = frames.steps["launch_rate_per_s"].notna().any()
    fig = _figure(11 if has_rate else 7, 4.3)
    ax = fig.add_subplot(1, 2 if has_rate else 1, 1)
    rate_ax = fig.add_subplot(1, 2, 2) if has_rate else None
    for (run_id, platform), block in frames.density.items():
        rows = s[(s["run"] == run_id) & (s["platform"] == platform)]
        if rows.empty:
            continue
        steps = frames.steps[
            (frames.steps["run"] == run_id) & (frames.steps["platform"] == platform)
        ]
        series = frames.names.get((run_id, platform), platform)
        color = colors.get(series, "black")
        ready = rows.dropna(subset=["ready_p95_s"])
        best, limit = rows["max_density"].iloc[0], rows["density_limit"].iloc[0]
        stop = "search max reached" if limit == "max" else f"stopped by {limit}"
        ax.plot(
            ready["n"],
            ready["ready_p95_s"],
            marker="o",
            color=color,
            label=f"{series} p95: max density {best} ({stop})",
        )
        ax.axvline(best, color=color, linestyle=":", alpha=0.8)
        for _, st in steps[steps["limit"].notna()].drop_duplicates("n").iterrows():
            row = ready[ready["n"] == st["n"]]
            if row.empty:  # refused before launch: no ready time, mark it on the N axis
                ax.plot(
                    [st["n"]],
                    [0.03],
                    transform=ax.get_xaxis_transform(),
                    marker="v",
                    markersize=9,
                    color="red",
                    linestyle="none",
                    label=f"{series} N={st['n']} refused ({st['limit']})",
                )
            else:
                ax.plot([st["n"]], [row["ready_p95_s"].iloc[0]], "X", markersize=11, color="red")
        slo = (block.get("slo") or {}).get("ready_p95")
        if slo:
            ax.axhline(slo, color=color, linestyle="--", alpha=0.6, label=f"{series} SLO p95")
        if rate_ax is not None:
            ran = steps[steps["status"] == "ran"].groupby("n")["launch_rate_per_s"].median()
            ran = ran.dropna()
            if not ran.empty:
                rate_ax.plot(ran.index, ran.values, marker="o", color=color, label=series)
    _n_axis(ax, s["n"])
    _maybe_log(ax, "y", s["ready_p95_s"].dropna())
    _seconds_axis(ax, "y")
    ax.set_ylabel("ready p95")
    ax.set_title("Density: ready p95 vs N (red: the step that broke a limit)")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    if rate_ax is not None:
        _n_axis(rate_ax, s["n"])
        rate_ax.set_ylabel("instances ready per second")
        rate_ax.set_title("Launch rate vs N")
        rate_ax.grid(alpha=0.3, which="both")
        rate_ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def disk_per_instance(frames: Frames) -> Any:
    """Disk per instance against N: the writable layer / overlay, and the engine storage's
    growth for the step divided by N."""
    panels = []
    writable = _medians(frames, "samples", "disk_writable_bytes")
    if not writable.empty:
        panels.append(("writable layer (container) / overlay (VM)", writable))
    steps = frames.steps.copy()
    steps["disk_growth_per_instance_bytes"] = steps["disk_growth_bytes"] / steps["n"]
    growth = _medians(frames, "steps", "disk_growth_per_instance_bytes", steps)
    if not growth.empty:
        panels.append(("engine storage growth for the step / N", growth))
    if not panels:
        raise NoData(
            "disk was not measured in these runs (no writable-layer or storage-growth "
            "figures): runs from a bench with disk probes have them"
        )
    colors = series_colors(frames)
    fig = _figure(5.2 * len(panels), 3.8)
    for i, (title, medians) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        _size_panel(ax, medians, colors)
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.suptitle("Disk per instance vs N")
    fig.tight_layout()
    return fig


# name of the PNG -> the function that draws it, in the order the report shows them
PLOTS = {
    "ready-distribution.png": ready_distribution,
    "ready-percentiles.png": ready_percentiles,
    "memory-per-instance.png": memory_per_instance,
    "density.png": density_curve,
    "disk-per-instance.png": disk_per_instance,
}


# --- helpers ---------------------------------------------------------------------


def series_colors(frames: Frames) -> dict[str, Any]:
    """A colour per series, in the report's order (series_order)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(series_order(frames))}


def series_order(frames: Frames) -> list[str]:
    """Series run by run (first run first), each run's platforms in the tables' order:
    along the spectrum from container to VM (frame.platform_order)."""
    position = {p: i for i, p in enumerate(platform_order(frames.runs))}
    run_index = {r.run_id: i for i, r in enumerate(frames.runs)}
    seen: dict[str, tuple[int, int]] = {}
    for df in (frames.samples, frames.steps):
        for run, platform, series in zip(df["run"], df["platform"], df["series"], strict=True):
            key = (run_index.get(run, len(run_index)), position.get(platform, len(position)))
            seen.setdefault(series, key)
    return sorted(seen, key=lambda s: seen[s])  # stable: ties keep their first appearance


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _ordered(df: Any, frames: Frames) -> list[tuple[tuple[str, int], Any]]:
    order = {s: i for i, s in enumerate(series_colors(frames))}
    groups = list(df.groupby(["series", "n"], sort=False))
    return sorted(groups, key=lambda kv: (order.get(kv[0][0], 0), kv[0][1]))


def _by_series(summary: Any, frames: Frames) -> list[tuple[str, Any]]:
    summary = summary.assign(
        series=[
            frames.names.get((r, p), p)
            for r, p in zip(summary["run"], summary["platform"], strict=True)
        ]
    )
    return [(k, g.sort_values("n")) for k, g in summary.groupby("series", sort=False)]


def _medians(frames: Frames, source: str, column: str, df: Any = None) -> Any:
    """Median of `column` per (series, N): successful samples, or steps that ran."""
    if df is None:
        df = frames.samples if source == "samples" else frames.steps
    keep = df["ok"] == True if source == "samples" else df["status"] == "ran"  # noqa: E712
    df = df[keep]
    df = df.dropna(subset=[column])
    if df.empty:
        return df.assign(value=[])
    out = df.groupby(["series", "n"], sort=False).agg(
        value=(column, "median"), kind=("kind", "first")
    )
    out = out.reset_index()
    position = {s: i for i, s in enumerate(series_order(frames))}
    out["position"] = [position.get(s, len(position)) for s in out["series"]]
    return out.sort_values(["position", "n"], kind="stable").drop(columns="position")


def _legend(ax: Any) -> None:
    """Inside the axes when short; under them when it would hide the data."""
    if len(ax.get_legend_handles_labels()[0]) <= 3:
        ax.legend(fontsize="small")
    else:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)


def _size_panel(ax: Any, medians: Any, colors: dict[str, Any]) -> None:
    """Median bytes per instance against N, one line per series, in a readable unit."""
    unit, factor = size_unit(medians["value"])
    for series, g in medians.groupby("series", sort=False):
        ax.plot(
            g["n"],
            g["value"] / factor,
            marker=KIND_MARKERS.get(g["kind"].iloc[0], "o"),
            color=colors[series],
            label=series,
        )
    _n_axis(ax, medians["n"])
    _maybe_log(ax, "y", medians["value"])
    if ax.get_yscale() == "linear":
        low = min(0.0, float(medians["value"].min()) / factor)
        ax.set_ylim(bottom=low * 1.1 if low < 0 else 0)
        if low < 0:  # a negative host drop: memory came back during the step (noise)
            ax.axhline(0, color="grey", linewidth=0.6)
    if unit == "B":
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{'bytes' if unit == 'B' else unit} per instance (median)")


def _maybe_log(ax: Any, axis: str, values: Any) -> None:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if xs and min(xs) > 0 and max(xs) / min(xs) > LOG_RATIO:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _n_axis(ax: Any, ns: Any) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    values = sorted({int(n) for n in ns})
    if values and values[0] > 0 and values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("N (instances started together)")


def _seconds_axis(ax: Any, axis: str) -> None:
    """Ticks read as "200 ms", "1 s", "5 s"; on a log axis at 1-2-5 steps, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    def fmt(v: float, _pos: Any) -> str:
        return format_seconds(v, digits=4, trim=True)

    target = ax.xaxis if axis == "x" else ax.yaxis
    if target.get_scale() == "log":
        target.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        target.set_minor_formatter(NullFormatter())
    else:  # labels like "750 ms" are wide: fewer of them
        target.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(FuncFormatter(fmt))
