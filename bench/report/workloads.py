"""The workloads table: each platform's workload figures against native, computed on read.

The samples store each repeat's raw figures (bench.model.records.WorkloadRun under
`extras["workloads"]`); here they become, per (platform, workload, figure): the median
over repeats, its spread (min-max and the coefficient of variation), and the ratio of
the platform's median to the native platform's, with a percentile-bootstrap interval
(each side resampled over its own repeats; fixed seed, so a report is reproducible).

A figure measured under emulation (a VM under TCG) is shown, marked, and given no
ratio: emulation is not virtualisation, and a ratio would read as the cost of a VM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.model import kinds
from bench.model.records import WorkloadRun
from bench.model.units import format_bytes

BOOTSTRAP = 2000
SEED = 0
CONFIDENCE = 0.95
# stress-ng says how much of one CPU each worker got: below this the host was busy
# (other processes, a CPU limit), and a rate says as much about sharing as about speed.
CONTENDED_PCT = 90.0

COLUMNS = (
    "platform",
    "kind",
    "workload",
    "figure",
    "median",
    "spread (min-max, CV)",
    "n",
    "ratio to native (95% CI)",
    "cpu share",
)

WORKLOADS_NOTE = (
    "Median of the repeats (one fresh instance each); spread over them. Ratio: the "
    "platform's median over native's, with a 95% percentile-bootstrap interval; above 1 "
    "means more of the figure ('higher is better' figures: faster). Emulated figures "
    "(VMs under TCG) get no ratio. cpu share: how much of one CPU stress-ng's worker got "
    f"(in a VM, of a virtual CPU); below {CONTENDED_PCT:g}% the machine was shared and rates "
    "measure sharing too."
)


@dataclass
class FigureSeries:
    platform: str
    kind: str | None
    workload: str
    figure: str
    unit: str
    worse: str
    values: list[float] = field(default_factory=list)
    emulated: bool = False
    cpu_share: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class WorkloadRow:
    platform: str
    kind: str | None
    workload: str
    figure: str
    unit: str
    worse: str
    n: int
    median: float
    low: float
    high: float
    cv: float | None
    emulated: bool
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    why_no_ratio: str | None
    cpu_share_pct: float | None
    # Shown in the table and the plot (every row is in the CSV): see `headline`.
    headline: bool = True


@dataclass(frozen=True)
class WorkloadsSection:
    run_id: str
    native: str | None  # the baseline platform, None when the run has none
    rows: list[WorkloadRow]
    failures: list[str]  # "platform workload: why", one per distinct failure


def collect(samples: Iterable[Mapping[str, object]]) -> tuple[dict[tuple, FigureSeries], list[str]]:
    """Each (platform, workload, figure)'s repeats, in first-seen order, and the
    distinct failures."""
    series: dict[tuple, FigureSeries] = {}
    failures: dict[str, None] = {}
    for row in samples:
        extras = row.get("extras")
        runs = extras.get("workloads") if isinstance(extras, Mapping) else None
        if not isinstance(runs, list):
            continue
        platform = str(row.get("platform"))
        stored_kind = row.get("kind")
        kind = stored_kind if isinstance(stored_kind, str) else None
        for raw in runs:
            try:
                run = WorkloadRun.model_validate(raw)
            except ValueError:
                continue
            if run.error:
                failures.setdefault(f"{platform} {run.workload}: {run.error}")
                continue
            for f in run.figures:
                key = (platform, run.workload, f.figure)
                s = series.setdefault(
                    key,
                    FigureSeries(platform, kind, run.workload, f.figure, f.unit, f.worse),
                )
                s.values.append(f.value)
                s.emulated |= run.emulated
                stressor = f.figure.split(".", 1)[0]
                share = run.diagnostics.get(f"{stressor}.cpu_usage_pct")
                if isinstance(share, int | float):
                    s.cpu_share.append(float(share))
    return series, list(failures)


def ratio_interval(
    values: list[float], base: list[float], rng: np.random.Generator
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of median(values) / median(base); None when either
    side has fewer than two repeats (nothing to resample)."""
    if len(values) < 2 or len(base) < 2:
        return None
    a, b = np.asarray(values), np.asarray(base)
    ra = np.median(rng.choice(a, size=(BOOTSTRAP, a.size)), axis=1)
    rb = np.median(rng.choice(b, size=(BOOTSTRAP, b.size)), axis=1)
    ok = rb > 0
    ratios = ra[ok] / rb[ok]
    if ratios.size == 0:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def build(run_id: str, samples: Iterable[Mapping[str, object]]) -> WorkloadsSection | None:
    """The workloads section of a run, None when its samples hold no workload runs."""
    series, failures = collect(samples)
    if not series and not failures:
        return None
    natives = [s.platform for s in series.values() if s.kind == kinds.NATIVE and not s.emulated]
    native = natives[0] if natives else None
    rng = np.random.default_rng(SEED)
    rows = []
    # Grouped by workload and figure (as first seen), platforms along the spectrum.
    # A workload's figures in the order its tool's parser gives them: its headline first
    # (requests/s before the latency percentiles, IOPS before bandwidth).
    first: dict[str, int] = {}
    figure_at: dict[tuple[str, str], int] = {}
    for i, s in enumerate(series.values()):
        first.setdefault(s.workload, i)
        first.setdefault(s.platform, i)
        figure_at.setdefault((s.workload, s.figure), i)
    ordered = sorted(
        series.values(),
        key=lambda s: (
            first[s.workload],
            figure_at[s.workload, s.figure],
            kinds.order(s.kind),
            first[s.platform],
        ),
    )
    # An I/O job with IOPS (a random one) shows them; one without (a sequential job,
    # bench.measurements.workloads.Fio) shows its bandwidth instead.
    with_iops = {(s.platform, s.workload) for s in series.values() if s.figure.endswith("_iops")}
    for s in ordered:
        v = np.asarray(s.values)
        median = float(np.median(v))
        mean = float(np.mean(v))
        cv = float(np.std(v) / mean) if v.size > 1 and mean else None
        base = series.get((native, s.workload, s.figure)) if native else None
        ratio = low = high = None
        why = None
        if s.emulated:
            why = "emulated (TCG): not a VM's cost"
        elif native is None:
            why = "no native platform in the run"
        elif base is None:
            why = "native has no such figure"
        elif s.platform == native:
            why = "baseline"
        else:
            base_median = float(np.median(base.values))
            ratio = median / base_median if base_median else None
            interval = ratio_interval(s.values, base.values, rng)
            if interval is not None:
                low, high = interval
        rows.append(
            WorkloadRow(
                platform=s.platform,
                kind=s.kind,
                workload=s.workload,
                figure=s.figure,
                unit=s.unit,
                worse=s.worse,
                n=int(v.size),
                median=median,
                low=float(v.min()),
                high=float(v.max()),
                cv=cv,
                emulated=s.emulated,
                ratio=ratio,
                ratio_low=low,
                ratio_high=high,
                why_no_ratio=why,
                cpu_share_pct=float(np.median(s.cpu_share)) if s.cpu_share else None,
                headline=not s.figure.endswith("_clat_p99_s")
                and not (
                    s.figure.endswith("_bytes_per_s") and (s.platform, s.workload) in with_iops
                ),
            )
        )
    return WorkloadsSection(run_id, native, rows, failures)


def headline(row: WorkloadRow) -> bool:
    """The figures the table shows: a stressor's rate (and its per-switch or memory
    rate), a random I/O job's IOPS, a sequential one's bandwidth, a round trip's and a
    request's percentiles; the rest (a random job's bandwidth, fio's completion-latency
    percentiles) is in the CSV."""
    return row.headline


def format_value(value: float, unit: str) -> str:
    if unit == "bytes/s":
        return f"{format_bytes(value)}/s"
    if unit == "s":
        # A request's milliseconds (an application's) read better as ms than as µs.
        return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.1f} µs"
    if unit == "bit/s":
        return f"{value / 1e9:.2f} Gbit/s" if value >= 1e8 else f"{value / 1e6:.1f} Mbit/s"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def display_rows(section: WorkloadsSection, all_figures: bool = False) -> list[dict[str, object]]:
    """The table as text cells, one dict per row, keyed by COLUMNS."""
    out: list[dict[str, object]] = []
    for r in section.rows:
        if not all_figures and not headline(r):
            continue
        better = "higher is better" if r.worse == "lower" else "lower is better"
        if r.ratio is not None:
            ratio = f"{r.ratio:.2f}"
            if r.ratio_low is not None and r.ratio_high is not None:
                ratio += f" ({r.ratio_low:.2f}-{r.ratio_high:.2f})"
        else:
            ratio = r.why_no_ratio or "-"
        spread = f"{format_value(r.low, r.unit)} - {format_value(r.high, r.unit)}"
        if r.cv is not None:
            spread += f", CV {r.cv * 100:.0f}%"
        share = "-"
        if r.cpu_share_pct is not None:
            share = f"{r.cpu_share_pct:.0f}%"
            if r.cpu_share_pct < CONTENDED_PCT:
                share += " (contended)"
        out.append(
            {
                "platform": r.platform,
                "kind": kinds.label(r.kind),
                "workload": r.workload,
                "figure": f"{r.figure} ({better})",
                "median": format_value(r.median, r.unit) + (" (emulated)" if r.emulated else ""),
                "spread (min-max, CV)": spread,
                "n": r.n,
                "ratio to native (95% CI)": ratio,
                "cpu share": share,
            }
        )
    return out


def numbers(section: WorkloadsSection) -> list[dict[str, object]]:
    """Every figure unrounded, units in the column names: workloads.csv's rows."""
    return [
        {
            "run": section.run_id,
            "platform": r.platform,
            "kind": r.kind,
            "workload": r.workload,
            "figure": r.figure,
            "unit": r.unit,
            "worse": r.worse,
            "n": r.n,
            "median": r.median,
            "min": r.low,
            "max": r.high,
            "cv": r.cv,
            "emulated": r.emulated,
            "ratio_to_native": r.ratio,
            "ratio_low": r.ratio_low,
            "ratio_high": r.ratio_high,
            "no_ratio_because": r.why_no_ratio,
            "cpu_share_pct": r.cpu_share_pct,
        }
        for r in section.rows
    ]


# The classic table's runtime-overhead row: which figures stand for each resource.
# (label, does this row's figure count for it)
OVERHEAD_PARTS: tuple[tuple[str, Callable[[WorkloadRow], bool]], ...] = (
    ("CPU", lambda r: r.workload == "cpu" and r.figure.endswith("bogo_ops_per_s")),
    ("memory bw", lambda r: r.workload == "stream" and r.figure.endswith("bogo_ops_per_s")),
    ("random memory", lambda r: r.workload == "randmem" and r.figure.endswith("bogo_ops_per_s")),
    ("IOPS", lambda r: r.figure.endswith("_iops")),
    # A sequential job's bandwidth (a random job's is not a headline: its IOPS are).
    ("disk bw", lambda r: r.unit == "bytes/s" and r.headline),
    ("network", lambda r: r.unit == "bit/s"),
    # A round trip's ratio: above 1 is slower than native (its note says so).
    ("latency", lambda r: r.figure == "rtt_p50_s"),
    ("HTTP", lambda r: r.figure == "requests_per_s"),
)
OVERHEAD_EMULATED = "emulated (TCG): left out of ratios"


def overhead_cells(section: WorkloadsSection, counts: Mapping[str, int]) -> dict[str, str]:
    """Per platform, its ratios to native for each resource of OVERHEAD_PARTS (CPU, memory
    bandwidth, random memory, IOPS, disk bandwidth, network, latency, HTTP: the
    median over that resource's figures, each itself a ratio of medians), with N (the
    instances of its step, `counts`) and n (repeats). Only measured, non-emulated ratios;
    a platform with none of them says why."""
    by_platform: dict[str, list[WorkloadRow]] = {}
    for r in section.rows:
        by_platform.setdefault(r.platform, []).append(r)
    cells: dict[str, str] = {}
    for platform, rows in by_platform.items():
        if platform == section.native:
            cells[platform] = "baseline (1.00)"
            continue
        if any(r.emulated for r in rows):
            cells[platform] = OVERHEAD_EMULATED
            continue
        parts = []
        repeats: set[int] = set()
        for label, counts_for in OVERHEAD_PARTS:
            ratios = [r.ratio for r in rows if counts_for(r) and r.ratio is not None]
            if ratios:
                parts.append(f"{label} {float(np.median(ratios)):.2f}")
                repeats.update(r.n for r in rows if counts_for(r) and r.ratio is not None)
        if not parts:
            why = next((r.why_no_ratio for r in rows if r.why_no_ratio), None)
            cells[platform] = why or "-"
            continue
        n = "/".join(str(k) for k in sorted(repeats))
        big_n = counts.get(platform)
        cells[platform] = ", ".join(parts) + (f" (N={big_n}, n={n})" if big_n else f" (n={n})")
    return cells
