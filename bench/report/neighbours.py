"""The isolation table: a victim's slowdown per aggressor kind, per platform, on read.

Each step of a neighbours scenario stores the victim's runs raw
(bench.model.records.NeighbourRun under the step's `extras["neighbours"]`): alone, then
under each aggressor kind. Here each step gives one slowdown per kind, its victim's
figure alone over the same figure contended (for a figure where higher is worse, the
other way round), so above 1 means slower with neighbours; a platform's row is the
median over its repeats with their min-max. Alone and contended come from the same
instance in the same step: the pair shares its placement and the host's state.

Runs under emulation (a VM under TCG) are shown, marked: TCG's slowness, not the VM's
isolation, sets how much a neighbour takes from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.model import kinds
from bench.model.records import NeighbourRun, WorkloadRun

COLUMNS = (
    "platform",
    "kind",
    "victim",
    "aggressors",
    "aggressor kind",
    "slowdown",
    "spread (min-max)",
    "n",
)

NEIGHBOURS_NOTE = (
    "The victim's figure alone over the same figure while the aggressors (other "
    "instances of its platform, with its limits) ran that kind of stressor, per repeat "
    "(one step each: alone and contended in the same instance); median over the repeats, "
    "their min-max, n repeats. Above 1: slower with neighbours. Emulated: a VM under TCG, "
    "whose slowdown says more about emulation than isolation."
)


@dataclass
class Series:
    platform: str
    kind: str | None
    victim: str
    figure: str
    aggressor: str
    aggressors: int
    slowdowns: list[float] = field(default_factory=list)
    emulated: bool = False


@dataclass(frozen=True)
class NeighbourRow:
    platform: str
    kind: str | None
    victim: str
    figure: str
    aggressor: str
    aggressors: int
    n: int
    median: float
    low: float
    high: float
    emulated: bool


@dataclass(frozen=True)
class NeighboursSection:
    run_id: str
    rows: list[NeighbourRow]
    failures: list[str]  # "platform aggressor: why", one per distinct failure


def _headline(run: WorkloadRun) -> tuple[str, float, str] | None:
    """The victim's figure the slowdown is of: its first (stress-ng's real-time rate,
    fio's IOPS), with its direction."""
    if run.error or not run.figures:
        return None
    f = run.figures[0]
    return f.figure, f.value, f.worse


def slowdown(alone: float, contended: float, worse: str) -> float | None:
    """Above 1: the victim did worse with neighbours. None when a side is not positive."""
    if alone <= 0 or contended <= 0:
        return None
    return alone / contended if worse == "lower" else contended / alone


def build(run_id: str, steps: Iterable[Mapping[str, object]]) -> NeighboursSection | None:
    """The isolation section of a run, None when its steps hold no neighbour runs."""
    series: dict[tuple[str, str], Series] = {}
    failures: dict[str, None] = {}
    found = False
    for step in steps:
        extras = step.get("extras")
        stored = extras.get("neighbours") if isinstance(extras, Mapping) else None
        if not isinstance(stored, list):
            continue
        found = True
        platform = str(step.get("platform"))
        kind = step.get("kind") if isinstance(step.get("kind"), str) else None
        runs = []
        for raw in stored:
            try:
                runs.append(NeighbourRun.model_validate(raw))
            except ValueError:
                continue
        alone = next((r for r in runs if r.aggressor == "alone"), None)
        base = _headline(alone.victim) if alone is not None else None
        if alone is not None and alone.victim.error:
            failures.setdefault(f"{platform} alone: {alone.victim.error}")
        for r in runs:
            if r.aggressor == "alone":
                continue
            for e in r.aggressor_errors:
                failures.setdefault(f"{platform} {r.aggressor} aggressor {e}")
            if r.victim.error:
                failures.setdefault(f"{platform} under {r.aggressor}: {r.victim.error}")
            got = _headline(r.victim)
            if base is None or got is None or got[0] != base[0]:
                continue
            value = slowdown(base[1], got[1], base[2])
            if value is None:
                continue
            s = series.setdefault(
                (platform, r.aggressor),
                Series(platform, kind, r.victim.workload, base[0], r.aggressor, r.aggressors),  # type: ignore[arg-type]
            )
            s.slowdowns.append(value)
            s.emulated |= r.victim.emulated or alone.victim.emulated  # type: ignore[union-attr]
    if not found:
        return None
    first: dict[str, int] = {}
    for i, s in enumerate(series.values()):
        first.setdefault(s.platform, i)
        first.setdefault(s.aggressor, i)
    ordered = sorted(
        series.values(), key=lambda s: (kinds.order(s.kind), first[s.platform], first[s.aggressor])
    )
    rows = []
    for s in ordered:
        v = np.asarray(s.slowdowns)
        rows.append(
            NeighbourRow(
                platform=s.platform,
                kind=s.kind,
                victim=s.victim,
                figure=s.figure,
                aggressor=s.aggressor,
                aggressors=s.aggressors,
                n=int(v.size),
                median=float(np.median(v)),
                low=float(v.min()),
                high=float(v.max()),
                emulated=s.emulated,
            )
        )
    return NeighboursSection(run_id, rows, list(failures))


def display_rows(section: NeighboursSection) -> list[dict[str, object]]:
    """The table's cells as text."""
    return [
        {
            "platform": r.platform,
            "kind": r.kind or "",
            "victim": f"{r.victim} ({r.figure})",
            "aggressors": r.aggressors,
            "aggressor kind": r.aggressor,
            "slowdown": f"{r.median:.2f}x" + (" (emulated)" if r.emulated else ""),
            "spread (min-max)": f"{r.low:.2f}-{r.high:.2f}",
            "n": r.n,
        }
        for r in section.rows
    ]


def worst(section: NeighboursSection) -> dict[str, str]:
    """Platform -> its worst neighbour slowdown in words, for the containers-vs-VMs
    table's isolation row."""
    out: dict[str, str] = {}
    for platform in dict.fromkeys(r.platform for r in section.rows):
        rows = [r for r in section.rows if r.platform == platform]
        w = max(rows, key=lambda r: r.median)
        out[platform] = (
            f"worst neighbour slowdown {w.median:.2f}x ({w.aggressor}, "
            f"{w.low:.2f}-{w.high:.2f}, n={w.n}" + (", emulated)" if w.emulated else ")")
        )
    return out
