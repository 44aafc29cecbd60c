"""One function per plot. Each takes the report's Frames and returns a matplotlib Figure,
or raises NoData saying what is missing, so the report skips it with a note instead of
drawing an empty plot.

Figures are built with matplotlib's object API (no pyplot, no global state); PNGs are
written through the Agg canvas, so no display is ever needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from bench.model import kinds
from bench.model.records import number, obj
from bench.model.units import format_seconds, size_unit
from bench.report.frame import Frames, platform_order

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.model.phases import PhaseColumns

    # A colour as matplotlib takes it: a name, or RGB(A) fractions.
    Color = str | tuple[float, float, float] | tuple[float, float, float, float]
    Values = Sequence[float] | np.ndarray | pd.Series

# A metric spanning more than this ratio (max / min) gets a log axis.
LOG_RATIO = 30
# One marker per kind (bench.model.kinds), so a line says where its platform sits from
# container to VM even in grey: circle, diamond, triangle, square.
KIND_MARKERS = {
    kinds.NATIVE: "x",
    kinds.CONTAINER: "o",
    kinds.SANDBOX: "D",
    kinds.MICROVM: "^",
    kinds.VM: "s",
}


class NoData(Exception):
    """This plot has nothing to draw; the message says what is missing and why."""


class NotApplicable(Exception):
    """This plot is not for these runs (hosts.png of a one-host run): skipped silently,
    so that a report does not change shape for a dimension it does not have."""


def ready_distribution(frames: Frames) -> Figure:
    """Ready time of every successful instance, one box (and its points) per platform and N."""
    ok = frames.samples[(frames.samples["ok"] == True) & frames.samples["ready_s"].notna()]  # noqa: E712
    if ok.empty:
        raise NoData("no instance became ready: there is no ready time to plot")
    colors = series_colors(frames)
    groups = [
        (f"{series}  N={n} (n={len(g)})", g["ready_s"].to_numpy(), colors[series])
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


def ready_percentiles(frames: Frames) -> Figure:
    """Ready p50 (solid) and p95 (dashed) against N, one colour per platform; the band is
    the interquartile range of the instances' ready times, n the instances summarised."""
    s = frames.summary.dropna(subset=["ready_p50_s"])
    if s.empty:
        raise NoData("no instance became ready: there is no ready time to plot")
    colors = series_colors(frames)
    spread = _stats(frames, "samples", "ready_s")
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    for series, g in _by_series(s, frames):
        kind = g["kind"].iloc[0]
        marker = KIND_MARKERS.get(kind, "o")
        color = colors[series]
        ax.plot(g["n"], g["ready_p50_s"], marker=marker, color=color, label=f"{series} p50")
        ax.plot(
            g["n"],
            g["ready_p95_s"],
            marker=marker,
            linestyle="--",
            color=color,
            alpha=0.7,
            label=f"{series} p95",
        )
        band = spread[spread["series"] == series]
        if not band.empty:
            ax.fill_between(band["n"], band["low"], band["high"], color=color, alpha=0.15, lw=0)
        _counts(ax, g["n"], g["ready_p95_s"], g["samples"] - g["failures"])
    _n_axis(ax, s["n"])
    _maybe_log(ax, "y", list(s["ready_p50_s"]) + list(s["ready_p95_s"]))
    _seconds_axis(ax, "y")
    ax.set_ylabel("ready time")
    ax.set_title("Ready time p50 / p95 vs N (band: IQR; n: ready instances)")
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


def memory_per_instance(frames: Frames) -> Figure:
    """Memory per instance against N, one panel per view that was measured. Every panel
    takes the same axis rule (log for all when the views together span more than
    LOG_RATIO, else linear for all), so panels can be read side by side."""
    views = []
    for title, source, column in MEMORY_VIEWS:
        stats = _stats(frames, source, column)
        if not stats.empty:
            views.append((title, stats))
    views += _engine_views(frames)
    if not views:
        raise NoData(
            "memory was not measured in these runs (no host drop, PSS, USS, RSS or "
            "engine figures): runs from a bench with memory probes have them"
        )
    colors = series_colors(frames)
    lows = [v for _, st in views for v in st["low"].fillna(st["value"])]
    # A log axis cannot show a negative host drop: then every panel is linear.
    log = _wants_log([v for _, st in views for v in st["value"]]) and min(lows) > 0
    cols = min(len(views), 2)  # two columns stay readable on a narrow screen
    rows = math.ceil(len(views) / cols)
    fig = _figure(4.6 * cols, 3.3 * rows + 0.6)
    for i, (title, stats) in enumerate(views, start=1):
        ax = fig.add_subplot(rows, cols, i)
        _size_panel(ax, stats, colors, log=log)
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(
        "Memory per instance vs N, by view (views are not interchangeable)\n"
        "line: median; band: IQR; n: instances (host view: steps)",
        fontsize="medium",
    )
    _figure_legend(fig, fig.axes[0])
    return fig


def _engine_views(frames: Frames) -> list[tuple[str, pd.DataFrame]]:
    """The engine's own memory (issue 24) as two more panels, when measured: a VM's VMM
    less its guest's RAM beside a container's runtime processes (both RSS; one column,
    each instance has one or the other), and the host kernel's slab growth per instance
    (a step's growth over its N)."""
    s, st = frames.samples, frames.steps
    own = s.assign(engine_own_bytes=s["vmm_overhead_bytes"].fillna(s["runtime_rss_bytes"]))
    slab = st.assign(slab_per_instance_bytes=st["slab_growth_bytes"] / st["n"])
    views = []
    for title, source, column, df in (
        ("engine's own: VMM less guest RAM / runtime, RSS", "samples", "engine_own_bytes", own),
        ("host kernel: Slab growth", "steps", "slab_per_instance_bytes", slab),
    ):
        stats = _stats(frames, source, column, df)
        if not stats.empty:
            views.append((title, stats))
    return views


def density_curve(frames: Frames) -> Figure:
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
        series = frames.series_of(run_id, platform)
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
        # In a ramp a level's p95 is over the instances it added, not all N.
        _counts(ax, ready["n"], ready["ready_p95_s"], ready["samples"] - ready["failures"])
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
        slo = number(obj(block.get("slo")).get("ready_p95"))
        if slo:
            ax.axhline(slo, color=color, linestyle="--", alpha=0.6, label=f"{series} SLO p95")
        if rate_ax is not None:
            ran = steps[steps["status"] == "ran"].groupby("n")["launch_rate_per_s"].median()
            ran = ran.dropna()
            if not ran.empty:
                rate_ax.plot(ran.index, ran.to_numpy(), marker="o", color=color, label=series)
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


def disk_per_instance(frames: Frames) -> Figure:
    """Disk per instance against N: the writable layer / overlay, and the engine storage's
    growth for the step divided by N. A panel where nothing was written says so."""
    panels = []
    writable = _stats(frames, "samples", "disk_writable_bytes")
    if not writable.empty:
        panels.append(("writable layer (container) / overlay (VM)", writable))
    steps = frames.steps.copy()
    steps["disk_growth_per_instance_bytes"] = steps["disk_growth_bytes"] / steps["n"]
    growth = _stats(frames, "steps", "disk_growth_per_instance_bytes", steps)
    if not growth.empty:
        panels.append(("engine storage growth for the step / N", growth))
    if not panels:
        raise NoData(
            "disk was not measured in these runs (no writable-layer or storage-growth "
            "figures): runs from a bench with disk probes have them"
        )
    colors = series_colors(frames)
    fig = _figure(4.6 * len(panels), 3.9)
    drawn = None
    for i, (title, stats) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.set_title(title, fontsize="medium")
        if (stats["high"].fillna(stats["value"]) == 0).all():
            # An axis of 0.000-0.054 bytes says nothing: say it in words.
            ax.text(
                0.5,
                0.5,
                f"nothing written\n(0 B per instance at every N, n={int(stats['count'].sum())})",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#555",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        _size_panel(ax, stats, colors)
        ax.grid(alpha=0.3, which="both")
        drawn = drawn or ax
    fig.suptitle("Disk per instance vs N (line: median; band: IQR; n: samples)", fontsize="medium")
    _figure_legend(fig, drawn if drawn is not None else fig.axes[0])
    return fig


# The phases of one instance's boot, in order (bench.model.phases: differences of host-
# clock instants), each with its colour: waiting and engine calls warm, the guest's
# firmware and kernel cool, what no recorded instant explains grey-red.
PHASES = (
    ("queued", "queued (behind `concurrency`)", "#bdbdbd"),
    ("vmm_start", "VMM process start", "#ff9da7"),
    ("create_engine", "create call → engine's create event", "#ffbe7d"),
    ("create_return", "engine's create event → create call returned", "#d37295"),
    ("create", "create call", "#f28e2b"),
    ("start_engine", "start call → engine's start event (runtime start)", "#f1ce63"),
    ("start_return", "engine's start event → start call returned", "#b6992d"),
    ("start", "start call", "#edc948"),
    ("firmware", "firmware and kernel loading", "#9c755f"),
    ("decompression", "kernel decompression", "#b07aa1"),
    ("firmware_decompression", "to the kernel's first line (firmware, decompression)", "#d4a6c8"),
    ("kernel", "kernel init", "#4e79a7"),
    ("userspace", "userspace until the marker", "#76b7b2"),
    ("first_output", "start call → first output byte", "#59a14f"),
    ("marker", "first output → marker", "#8cd17d"),
    # Runs stored before the kernel's lines were timed: the guest's own clock at ready
    # is what is known of its boot.
    ("uptime", "the guest's own uptime at ready (kernel lines not recorded)", "#a0cbe8"),
    ("unattributed", "unattributed (no recorded instant explains it)", "#e15759"),
)


COLORS = {key: color for key, _, color in PHASES}
LABELS = {key: label for key, label, _ in PHASES}


def _floats(g: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats, NaN where missing or not a number (or absent altogether)."""
    import numpy as np
    import pandas as pd

    if name not in g:
        return np.full(len(g), np.nan)
    return pd.to_numeric(g[name], errors="coerce").to_numpy(dtype=np.float64)


def _phases_of(g: pd.DataFrame) -> PhaseColumns:
    """bench.model.phases of a frame's samples."""
    import numpy as np

    from bench.model.phases import phase_columns

    vm = np.array([kinds.is_vm(k) for k in g["kind"].tolist()], dtype=bool)
    return phase_columns(lambda name: _floats(g, name), vm)


def boot_phases(frames: Frames) -> Figure:
    """Where the time to ready goes, per platform and N: each phase's share of the sum
    of their medians (queued_s, then bench.model.phases for each ready instance, then
    what no recorded instant explains). Older runs, which timed no kernel line, show
    their guest's own uptime instead (sandboxes and VMs: a container's is the host's)."""
    import numpy as np

    ok = frames.samples[(frames.samples["ok"] == True) & frames.samples["ready_s"].notna()]  # noqa: E712
    ok = ok[ok["create_s"].notna() | ok["start_s"].notna()]
    if ok.empty:
        raise NoData("no ready instance recorded its create and start times")
    groups = []
    shown: set[str] = set()
    for (series, n), g in _ordered(ok, frames):
        found = _phases_of(g)
        parts, rest = found.seconds, found.unattributed
        own = kinds.own_kernel_mask(g["kind"])
        timed = ~np.isnan(_floats(g, "kernel_start_s"))
        uptime = np.where(own & ~timed, np.nan_to_num(_floats(g, "guest_uptime_s")), 0.0)
        guest = np.clip(np.minimum(uptime, rest), 0, None)
        parts = {
            "queued": np.clip(np.nan_to_num(_floats(g, "queued_s")), 0, None),
            **{k: np.nan_to_num(v) for k, v in parts.items()},
            "uptime": guest,
            "unattributed": np.clip(rest - guest, 0, None),
        }
        medians = [float(np.median(parts[key])) for key, _, _ in PHASES]
        shown |= {key for (key, _, _), m in zip(PHASES, medians, strict=True) if m > 0}
        ready_p50 = float(np.median(_floats(g, "ready_s")))
        groups.append((f"{series}  N={n}", medians, ready_p50, len(g)))
    fig = _figure(8.5, 1.6 + 0.42 * len(groups))
    ax = fig.add_subplot()
    ys = list(range(len(groups), 0, -1))
    for i, (key, label, color) in enumerate(PHASES):
        if key not in shown:
            continue  # a phase no group has: no legend entry for it
        left = [sum(m[:i]) / (sum(m) or 1) for _, m, _, _ in groups]
        width = [m[i] / (sum(m) or 1) for _, m, _, _ in groups]
        ax.barh(ys, width, left=left, color=color, height=0.6, label=label.replace("`", ""))
    for y, (_, _, ready_p50, count) in zip(ys, groups, strict=True):
        ax.text(1.01, y, f"{format_seconds(ready_p50)}, n={count}", va="center", fontsize="small")
    ax.set_yticks(ys, [g[0] for g in groups])
    ax.set_xlim(0, 1)
    from matplotlib.ticker import PercentFormatter

    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of queue + launch call → readiness line (medians per phase)")
    ax.set_title("Boot phases per platform and N (right: median ready time, n instances)")
    ax.legend(
        fontsize="small",
        loc="upper left",
        bbox_to_anchor=(0.0, -0.13 - 0.5 / len(groups)),
        ncols=2,
        frameon=False,
    )
    # The legend sits below the axes on purpose: bbox_inches="tight" when saving keeps it,
    # while tight_layout() would only warn that it cannot make room for it.
    fig.subplots_adjust(left=0.2, right=0.85)
    return fig


def timeline(frames: Frames) -> Figure:
    """Each instance of the largest step of each platform on the step's clock: queued,
    create, start, then until ready. Instances an engine serialises show as a staircase."""
    s = frames.samples[frames.samples["queued_s"].notna() | frames.samples["create_s"].notna()]
    if s.empty:
        raise NoData("no instance recorded its launch times (queued_s, create_s)")
    steps = []
    for series in series_order(frames):
        g = s[s["series"] == series]
        if g.empty:
            continue
        g = g[g["n"] == g["n"].max()]
        g = g[g["repeat"] == g["repeat"].min()].sort_values("index")
        steps.append((series, g))
    import numpy as np

    heights = [0.9 + 0.16 * min(len(g), 24) for _, g in steps]
    shown: set[str] = set()
    clock_marks = False
    fig = _figure(8.5, sum(heights) + 0.9)
    grid = fig.add_gridspec(len(steps), 1, height_ratios=heights)
    for i, (series, g) in enumerate(steps):
        ax = fig.add_subplot(grid[i])
        queued = g["queued_s"].fillna(0).to_numpy()
        ready = g["ready_s"].to_numpy()
        rows = list(range(len(g), 0, -1))
        found = _phases_of(g)
        # Where each instance's time went, on the step's clock: its queue, then each
        # recorded phase where it started; what no phase covers shows through as the
        # unattributed colour underneath.
        _hbars(ax, rows, queued, ready, COLORS["unattributed"])
        _hbars(ax, rows, 0 * queued, queued, COLORS["queued"])
        for key, seconds in found.seconds.items():
            _hbars(ax, rows, queued + found.starts[key], seconds, COLORS[key])
            if np.isfinite(seconds).any():
                shown.add(key)
        own = kinds.own_kernel_mask(g["kind"])
        uptime = _floats(g, "guest_uptime_s")
        guest = own & (uptime > 0) & np.isfinite(ready)
        if guest.any():
            # When the guest's own clock says it started: ready less its uptime.
            at = (queued + ready - uptime)[guest]
            ax.plot(at, np.asarray(rows)[guest], "|", color="black", markersize=7)
            clock_marks = True
        failed = [r for r, ok in zip(rows, g["ok"], strict=True) if ok is not True]
        if failed:
            ends = [q + (r if r == r else 0) for q, r in zip(queued, ready, strict=True)]
            ax.plot([ends[len(g) - r] for r in failed], failed, "x", color="red")
        ax.set_yticks([])
        ax.set_ylabel(f"{len(g)} inst.", fontsize="small")
        n, repeat = int(g["n"].iloc[0]), int(g["repeat"].iloc[0])
        ax.set_title(f"{series}: N={n}, repeat {repeat}", fontsize="medium", loc="left")
        ax.set_xlim(left=0)
        _seconds_axis(ax, "x")
        ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("time since the step started (each panel its own scale)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    keys = ["queued", *(k for k, _, _ in PHASES if k in shown), "unattributed"]
    handles: list[Patch | Line2D] = [Patch(color=COLORS[k]) for k in keys]
    labels = [LABELS[k].replace("`", "") for k in keys]
    if clock_marks:
        handles.append(Line2D([], [], color="black", marker="|", linestyle="none"))
        labels.append("the guest's clock starts (ready less its own uptime)")
    fig.legend(handles, labels, loc="lower center", ncols=3, fontsize="small", frameon=False)
    fig.suptitle("Instances of the largest step of each platform, on the step's clock")
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil((len(handles)) / 3), 1, 1))
    return fig


def hosts_plot(frames: Frames) -> Figure:
    """The same platform across hosts: ready p50 (solid) and p95 (dashed) against N, one
    panel per platform, one line per host (and run)."""
    if not frames.multi_host:
        raise NotApplicable("one host")
    s = frames.summary.dropna(subset=["ready_p50_s"])
    if s.empty:
        raise NoData("no instance became ready: there is no ready time to plot")
    platforms = [p for p in platform_order(frames.runs) if p in set(s["platform"])]
    cols = min(len(platforms), 2)
    rows = math.ceil(len(platforms) / cols)
    fig = _figure(4.8 * cols, 3.5 * rows + 0.5)
    palette = _palette()
    lines = list(dict.fromkeys(zip(s["run"], s["host"], strict=True)))
    for i, platform in enumerate(platforms, start=1):
        ax = fig.add_subplot(rows, cols, i)
        rows_p = s[s["platform"] == platform]
        for j, (run, host) in enumerate(lines):
            g = rows_p[(rows_p["run"] == run) & (rows_p["host"] == host)].sort_values("n")
            if g.empty:
                continue
            label = f"{host} · {frames.labels[run]}" if frames.labels[run] else str(host)
            color = palette[j % len(palette)]
            ax.plot(g["n"], g["ready_p50_s"], marker="o", color=color, label=f"{label} p50")
            ax.plot(g["n"], g["ready_p95_s"], marker="o", ls="--", color=color, alpha=0.7)
            _counts(ax, g["n"], g["ready_p95_s"], g["samples"] - g["failures"])
        _n_axis(ax, rows_p["n"])
        _maybe_log(ax, "y", list(rows_p["ready_p50_s"]) + list(rows_p["ready_p95_s"]))
        _seconds_axis(ax, "y")
        ax.set_ylabel("ready time")
        ax.set_title(platform, fontsize="medium")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.suptitle("One platform across hosts: ready p50 (solid) / p95 (dashed) vs N")
    fig.tight_layout()
    return fig


def neighbour_slowdown(frames: Frames) -> Figure:
    """The newest run's isolation table as bars: the victim's median slowdown per
    aggressor kind, one bar per platform, whiskers over the repeats' min-max."""
    import numpy as np

    from bench.report import neighbours

    run = frames.runs[-1]
    section = neighbours.build(run.run_id, run.steps)
    if section is None:
        raise NotApplicable
    if not section.rows:
        raise NoData("no victim run gave a slowdown (see the isolation table's failures)")
    platforms = list(dict.fromkeys(r.platform for r in section.rows))
    kinds_ = list(dict.fromkeys(r.aggressor for r in section.rows))
    palette = _palette()
    fig = _figure(max(4.6, 1.3 * len(kinds_) * max(1, len(platforms)) / 2 + 2), 3.9)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(platforms)
    for i, platform in enumerate(platforms):
        rows = {r.aggressor: r for r in section.rows if r.platform == platform}
        xs = np.arange(len(kinds_)) + (i - (len(platforms) - 1) / 2) * width
        med = np.array([rows[k].median if k in rows else np.nan for k in kinds_])
        lo = np.array([rows[k].low if k in rows else np.nan for k in kinds_])
        hi = np.array([rows[k].high if k in rows else np.nan for k in kinds_])
        emulated = any(r.emulated for r in rows.values())
        ax.bar(
            xs,
            med,
            width,
            color=palette[i % len(palette)],
            label=platform + (" (emulated)" if emulated else ""),
            hatch="//" if emulated else None,
        )
        ax.errorbar(xs, med, yerr=[med - lo, hi - med], fmt="none", ecolor="black", capsize=3)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(np.arange(len(kinds_)), kinds_)
    ax.set_xlabel("aggressor kind")
    ax.set_ylabel("victim slowdown (alone / with neighbours)")
    ax.set_title(f"Noisy neighbours: {section.rows[0].victim} victim", fontsize="medium")
    ax.grid(alpha=0.3, axis="y")
    _legend(ax)
    fig.tight_layout()
    return fig


LOG_RATIO_SPAN = 10.0  # workload ratios spanning more than this go on a log axis


def workload_ratios(frames: Frames) -> Figure:
    """Each platform's workload figures as ratios to native, with their bootstrap
    intervals (bench.report.workloads), one row per (workload figure, platform); figures
    measured under emulation (TCG) are left out and named in the title."""
    from itertools import islice

    from bench.report import workloads

    run = frames.runs[-1]
    section = workloads.build(run.run_id, islice(run.iter_samples(), 10_000))
    if section is None:
        raise NotApplicable("no workloads")
    rows = [r for r in section.rows if r.ratio is not None and workloads.headline(r)]
    if not rows:
        why = "no native platform" if section.native is None else "no platform had a ratio"
        raise NoData(f"no ratio to native to plot ({why})")
    emulated = sorted({r.platform for r in section.rows if r.emulated})
    colors = series_colors(frames)
    fig = _figure(7.5, 1.2 + 0.32 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ratio = cast(float, r.ratio)
        color = colors.get(r.platform, "C0")
        if r.ratio_low is not None and r.ratio_high is not None:
            ax.errorbar(
                [ratio],
                [y],
                xerr=[[ratio - r.ratio_low], [r.ratio_high - ratio]],
                fmt="none",
                ecolor=color,
                capsize=3,
            )
        ax.plot([ratio], [y], marker=KIND_MARKERS.get(r.kind or "", "o"), color=color)
    better = {"lower": "higher is better", "higher": "lower is better"}
    labels = [
        f"{r.platform} · {r.workload}: {r.figure} (n={r.n}, {better.get(r.worse, '')})"
        for r in rows
    ]
    ax.set_yticks(range(len(rows)), labels[::-1], fontsize="small")
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    # Ratios are factors: when they span more than tenfold (gVisor's HTTP at 1/20 of
    # native beside its cached I/O at 5x), a linear axis squeezes every ratio near 1
    # into one point; a log axis keeps 1/2 and 2 equally far from native.
    ends = [v for r in rows for v in (r.ratio_low, r.ratio, r.ratio_high) if v and v > 0]
    log = bool(ends) and max(ends) / min(ends) > LOG_RATIO_SPAN
    if log:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, not 10⁻¹
    ax.set_xlabel(
        f"ratio to native ({section.native}), 95% bootstrap interval"
        + (" (log scale)" if log else "")
    )
    ax.grid(alpha=0.3, axis="x")
    title = "Workloads: each platform against native"
    if emulated:
        title += f"\n(left out, emulated under TCG: {', '.join(emulated)})"
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


# name of the PNG -> the function that draws it, in the order the report shows them
PLOTS = {
    "ready-distribution.png": ready_distribution,
    "ready-percentiles.png": ready_percentiles,
    "boot-phases.png": boot_phases,
    "timeline.png": timeline,
    "hosts.png": hosts_plot,
    "memory-per-instance.png": memory_per_instance,
    "density.png": density_curve,
    "disk-per-instance.png": disk_per_instance,
    "neighbours.png": neighbour_slowdown,
    "workload-ratios.png": workload_ratios,
}


# --- helpers ---------------------------------------------------------------------


def series_colors(frames: Frames) -> dict[str, Color]:
    """A colour per series, in the report's order (series_order)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    return {name: palette[i % len(palette)] for i, name in enumerate(series_order(frames))}


def series_order(frames: Frames) -> list[str]:
    """Series run by run (first run first), each run's platforms in the tables' order:
    along the spectrum from container to VM (frame.platform_order)."""
    return frames.series_order


def _hbars(
    ax: Axes, y: Values, left: Values, width: Values, color: Color, height: float = 0.8
) -> None:
    """The bars ax.barh(y, width, left=left, height=height) draws, as one collection:
    barh makes an artist per bar, minutes for a step of thousands of instances."""
    import numpy as np
    from matplotlib.collections import PolyCollection

    at, x0 = np.asarray(y, dtype=float), np.asarray(left, dtype=float)
    x1 = x0 + np.asarray(width, dtype=float)
    keep = np.isfinite(x0) & np.isfinite(x1)  # a failed instance has no bar to ready
    at, x0, x1 = at[keep], x0[keep], x1[keep]
    lo, hi = at - height / 2, at + height / 2
    corners = [np.column_stack(c) for c in ((x0, lo), (x0, hi), (x1, hi), (x1, lo))]
    # An (N, 4, 2) array (matplotlib's fast path), which its stubs do not list.
    bars = PolyCollection(np.stack(corners, axis=1), facecolors=color, edgecolors="none")  # type: ignore[arg-type]
    ax.add_collection(bars, autolim=True)
    ax.autoscale_view()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _ordered(df: pd.DataFrame, frames: Frames) -> list[tuple[tuple[str, int], pd.DataFrame]]:
    order = {s: i for i, s in enumerate(series_colors(frames))}
    # Keys as the frame holds them: (series name, N).
    groups = [(cast(tuple[str, int], k), g) for k, g in df.groupby(["series", "n"], sort=False)]
    return sorted(groups, key=lambda kv: (order.get(kv[0][0], 0), kv[0][1]))


def _by_series(summary: pd.DataFrame, frames: Frames) -> list[tuple[str, pd.DataFrame]]:
    summary = summary.assign(
        series=[
            frames.series_of(r, p, h)
            for r, p, h in zip(summary["run"], summary["platform"], summary["host"], strict=True)
        ]
    )
    return [(str(k), g.sort_values("n")) for k, g in summary.groupby("series", sort=False)]


def _stats(
    frames: Frames, source: str, column: str, df: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (series, N) of successful samples, or steps that ran: the median of `column`
    (`value`), its quartiles (`low`, `high`) and how many values (`count`)."""
    if df is None:
        df = frames.samples if source == "samples" else frames.steps
    keep = df["ok"] == True if source == "samples" else df["status"] == "ran"  # noqa: E712
    df = df[keep]
    df = df.dropna(subset=[column])
    if df.empty:
        return df.assign(value=[], low=[], high=[], count=[])
    grouped = df.groupby(["series", "n"], sort=False)[column]
    out = df.groupby(["series", "n"], sort=False).agg(kind=("kind", "first"))
    out["value"] = grouped.median()
    out["low"] = grouped.quantile(0.25)
    out["high"] = grouped.quantile(0.75)
    out["count"] = grouped.count()
    out = out.reset_index()
    position = {s: i for i, s in enumerate(series_order(frames))}
    out["position"] = [position.get(s, len(position)) for s in out["series"]]
    return out.sort_values(["position", "n"], kind="stable").drop(columns="position")


def _counts(ax: Axes, xs: Values, ys: Values, counts: Values) -> None:
    """ "n=K" over each point: how many values a summarised point stands for."""
    for x, y, k in zip(xs, ys, counts, strict=True):
        if y == y:  # not NaN
            ax.annotate(
                f"n={int(k)}",
                (x, y),
                textcoords="offset points",
                xytext=(0, 5),
                ha="center",
                fontsize=6.5,
                color="#555",
            )


# Legend entries beside a plot: more would run off the figure (a report of a CI job's
# 60 runs has 120); the rest are named in one last entry.
MAX_LEGEND = 20


def _legend(ax: Axes) -> None:
    """Inside the axes when short; right of them when it would hide the data (below,
    it would collide with the axis label)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > MAX_LEGEND:
        more = len(handles) - (MAX_LEGEND - 1)
        handles = [*handles[: MAX_LEGEND - 1], Line2D([], [], linestyle="none")]
        labels = [*labels[: MAX_LEGEND - 1], f"... {more} more (see the summary table)"]
    if len(handles) <= 3:
        ax.legend(handles, labels, fontsize="small")
    else:
        ax.legend(
            handles,
            labels,
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )


def _figure_legend(fig: Figure, ax: Axes) -> None:
    """One legend for a figure of panels, under them (panels stay free of it), then the
    layout, leaving the legend's rows free."""
    handles, labels = ax.get_legend_handles_labels()
    rows = math.ceil(len(labels) / 3)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncols=min(len(labels), 3),
            fontsize="small",
            frameon=False,
        )
    fig.tight_layout(rect=(0, min(0.4, 0.25 * rows / fig.get_figheight()), 1, 1))


def _palette() -> list[Color]:
    import matplotlib

    return matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap


def _wants_log(values: Values) -> bool:
    import numpy as np

    xs = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    xs = xs[~np.isnan(xs)]
    return bool(len(xs)) and xs.min() > 0 and xs.max() / xs.min() > LOG_RATIO


def _size_panel(
    ax: Axes, stats: pd.DataFrame, colors: dict[str, Color], log: bool | None = None
) -> None:
    """Median bytes per instance against N, one line per series, its IQR as a band and
    its count over each point, in a readable binary unit. `log`: the figure's axis rule
    (None: decide from this panel's values)."""
    unit, factor = size_unit(stats["value"])
    for series, g in stats.groupby("series", sort=False):
        color = colors.get(str(series), "black")
        ax.plot(
            g["n"],
            g["value"] / factor,
            marker=KIND_MARKERS.get(g["kind"].iloc[0], "o"),
            color=color,
            label=series,
        )
        if (g["high"] > g["low"]).any():
            ax.fill_between(g["n"], g["low"] / factor, g["high"] / factor, color=color, alpha=0.15)
        _counts(ax, g["n"], g["value"] / factor, g["count"])
    _n_axis(ax, stats["n"])
    if log is None:
        log = _wants_log(stats["value"])
    if log and (stats["low"].fillna(stats["value"]) > 0).all():
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.margins(y=0.12)  # room for the counts over the top points
    else:
        low = min(0.0, float(stats["low"].fillna(stats["value"]).min()) / factor)
        ax.set_ylim(bottom=low * 1.1 if low < 0 else 0)
        if low < 0:  # a negative host drop: memory came back during the step (noise)
            ax.axhline(0, color="grey", linewidth=0.6)
    if unit == "B":
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{'bytes' if unit == 'B' else unit} per instance")


def _maybe_log(ax: Axes, axis: str, values: Values) -> None:
    if _wants_log(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _n_axis(ax: Axes, ns: Values) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    values = sorted({int(n) for n in ns})
    if values and values[0] > 0 and values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("N (instances started together)")


def _seconds_axis(ax: Axes, axis: str) -> None:
    """Ticks read as "200 ms", "1 s", "5 s"; on a log axis at 1-2-5 steps, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    def fmt(v: float, _pos: int | None) -> str:
        return format_seconds(v, digits=4, trim=True)

    target = ax.xaxis if axis == "x" else ax.yaxis
    if target.get_scale() == "log":
        target.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        target.set_minor_formatter(NullFormatter())
    else:  # labels like "750 ms" are wide: fewer of them
        target.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(FuncFormatter(fmt))
