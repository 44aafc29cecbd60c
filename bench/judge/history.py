"""`bench history`: a CI job's runs as time series, judged by their change points.

Per-run `compare` against a handful of baselines cannot tell a 20% slow-down from the
run-to-run drift of a shared host. The history of a job is a series: each run's level
per (platform, N)
(the mean over its steps of the mean log metric, the level `bench compare` uses:
bench.judge.compare.level_of), in the order the runs started. Its change points are found
by Page-Hinkley tests (river, an established online detector; see CHANGE_POINTS below for
why this one), and the verdict is about the newest segment: a **regression** (exit 1) when
the newest runs begin a segment slower than the one before by more than half the
threshold (the rule `ab` and `compare` use) and that segment was found by the job of
one of the newest RECENT runs, **too short** (exit 6) while a series has fewer than MIN_RUNS runs,
otherwise no regression.

Reading 500 runs again and again must be quick: each run's levels are kept in an SQLite
index beside the runs (RESULTS_DIR/.bench-history.sqlite), keyed by the run folder and
the size and mtime of its files, so a run is read once and again only when it changes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

from bench.judge import verdict as v
from bench.judge.comparability import WARNING, Metadata, Mismatch, mismatches
from bench.judge.compare import (
    DEFAULT_METRIC,
    DEFAULT_THRESHOLD,
    check_metric,
    level_of,
    sample_groups,
)
from bench.model.errors import ExitCode, UsageError
from bench.model.records import text
from bench.model.results import METADATA, SAMPLES, STEPS, Run, load_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# CHANGE_POINTS: two one-sided Page-Hinkley tests (Page 1954; river.drift.PageHinkley,
# BSD-3): a CUSUM of each run's distance from the mean of its segment so far, less an
# allowance, that alarms when it rises LIMIT above its minimum; fed run by run (an online
# detector) with the series scaled by a robust noise scale (the MAD of successive
# differences / sqrt 2, which one step barely moves), so one limit serves any drift.
# SLOWER_LIMIT flags slower segments (the gate), FASTER_LIMIT faster ones; after a change
# both restart at its first run, so a faster segment becomes the level a later slow-down
# is measured against. The allowance is ALLOWANCE times the threshold's shift
# (log1p(threshold)) in that scale: the gate exists to catch that shift, and a CUSUM's
# allowance is set from the shift it is for (0.5 in the textbook; 0.3 found more, at the
# same false alarms: 86% against 81-83%, the running mean it is measured from being pulled
# towards the new level). Page-Hinkley says when, not where, and river keeps its
# cumulative sum private: each change is placed by ruptures (BSD-2) as the one
# least-squares break in the runs since the last change. It replaced FOCuS
# (changepoint-online, GPL-3.0: bench depends on permissive libraries only; 80% found),
# which replaced ruptures' PELT alone (offline and two-sided: 72%); an oracle CUSUM told
# the level and the step finds 92% (benchmarks/history_gate.py and history_bound.py,
# figures in benchmarks/results.md). focus-cpt (C++ FOCuS) ships only a source package
# that needs a C++ tool chain; apache-otava (pins numpy 2.2.0, pulls
# google-cloud-bigquery, slack-sdk, pg8000) and MongoDB's signal-processing-algorithms
# (Python 3.11 only, numpy < 2) are offline (e-divisive means).
# The limits were calibrated by benchmarks/history_gate.py (seed and figures in
# benchmarks/results.md): with 7% run-to-run drift and no change, under 1 false change
# point per 100 runs (both directions); the faster detector costs next to nothing there
# (FASTER_LIMIT 8: 0.1 false faster change points per 100 runs) and without it a +10%
# step 20 runs after a 20% speed-up is found within 8 runs 3% of the time instead of 80%.
ALLOWANCE = 0.3
SLOWER_LIMIT = 3.5
FASTER_LIMIT = 8.0
MIN_RUNS = 8  # the shortest series judged: its noise scale needs a few differences
# A slower segment fails the CI jobs of the RECENT runs from the one whose job found it
# (an online alarm is raised once, not by every later job: with 10, as under PELT, 7% of
# jobs of a no-change history exited 1). 2, not 1: the noise scale is estimated from
# the whole series, so the job of the next run now and then finds a change (placed a run
# earlier) that the job of its run did not (benchmarks/history_gate.py: 1 run, 75% found
# within 8 runs and 1.0% of jobs exiting 1 with no change; 2 runs, 80% and 1.9-2.4%; 3
# runs, 81% and 2.6%, measured under FOCuS, the detector before; under Page-Hinkley, 1
# run 79% found, 2 runs 86%). Older, it stays in the
# table and the plot: the new level is what later jobs measure against.
RECENT = 2
INDEX_NAME = ".bench-history.sqlite"
INDEX_VERSION = 2  # 2: each run's metadata kept, for what must match

REGRESSION = v.REGRESSION
TOO_SHORT = "too short"
NO_REGRESSION = "no regression"


class RunSummary(TypedDict):
    """What history keeps of a run (summary_of), as the index stores it in JSON."""

    run_id: str
    started_at: str
    scenario: str | None
    status: str
    # "N\tgroup" -> [mean log level, samples] (a JSON list: the index stores it so).
    groups: dict[str, list[float]]
    # metadata.json; absent from summaries an older bench indexed.
    metadata: NotRequired[Metadata]


class ChangePointDoc(TypedDict):
    run_id: str
    started_at: str
    index: int
    change: float
    found_by_run: int  # the run (numbered from 1) whose history found it


class PointDoc(TypedDict):
    run_id: str
    started_at: str
    level: float


class SeriesDoc(TypedDict):
    """One series in the --json document (Series.to_dict)."""

    group: str
    n: int
    runs: int
    verdict: str
    change: float | None
    change_points: list[ChangePointDoc]
    points: list[PointDoc]


@dataclass(frozen=True)
class Point:
    """One run's level in one series."""

    run_id: str
    started_at: str
    mean_log: float
    samples: int

    @property
    def level(self) -> float:
        return math.exp(self.mean_log)


@dataclass
class Segment:
    start: int  # index of its first run in the series
    end: int  # one past its last run
    mean_log: float
    found: int = 0  # runs in the series when its start was found (0: the first segment)


@dataclass
class Series:
    group: str  # platform, or platform@host when the runs measured it on several hosts
    n: int
    points: list[Point]
    segments: list[Segment] = field(default_factory=list)
    verdict: str = NO_REGRESSION
    change: float | None = None  # newest segment against the one before, as a ratio - 1

    @property
    def name(self) -> str:
        return f"{self.group} N={self.n}"

    def in_words(self, threshold: float) -> str:
        """The verdict as a sentence; runs are numbered from 1 in start order, as the
        plot's axis numbers them."""
        k = len(self.points)
        if self.verdict == TOO_SHORT:
            return f"{self.name}: {k} run(s), too few to judge (a series needs {MIN_RUNS})."
        if len(self.segments) < 2 or self.change is None:
            return f"{self.name}: no change point in {k} runs: no regression."
        pairs = list(zip(self.segments, self.segments[1:], strict=False))
        cps = ", ".join(
            f"run {s.start + 1} ({math.expm1(s.mean_log - prev.mean_log):+.1%})"
            for prev, s in pairs
        )
        before, newest = pairs[-1]
        c, half = self.change, v.REGRESSION_FRACTION * threshold
        text = (
            f"{self.name}: change point{'s' if len(pairs) > 1 else ''} at {cps}. The newest "
            f"{newest.end - newest.start} runs, from run {newest.start + 1} "
            f"({self.points[newest.start].run_id}), are {abs(c):.1%} "
            f"{'slower' if c > 0 else 'faster'} than the {before.end - before.start} before"
        )
        if self.verdict == REGRESSION:
            return text + ": a regression."
        if c <= half:
            return text + f": no regression (not slower by more than {half:.0%})."
        return text + (
            f": no regression now (found by the job of run {newest.found}; a slower segment "
            f"fails the jobs of the {RECENT} runs from the one that found it)."
        )

    def to_dict(self) -> SeriesDoc:
        return {
            "group": self.group,
            "n": self.n,
            "runs": len(self.points),
            "verdict": self.verdict,
            "change": self.change,
            "change_points": [
                {
                    "run_id": self.points[s.start].run_id,
                    "started_at": self.points[s.start].started_at,
                    "index": s.start,
                    "change": math.expm1(s.mean_log - prev.mean_log),
                    "found_by_run": s.found,
                }
                for prev, s in zip(self.segments, self.segments[1:], strict=False)
            ],
            "points": [
                {"run_id": p.run_id, "started_at": p.started_at, "level": p.level}
                for p in self.points
            ],
        }


@dataclass
class History:
    metric: str
    threshold: float
    series: list[Series]
    runs: int
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        verdicts = {s.verdict for s in self.series}
        if REGRESSION in verdicts:
            return ExitCode.REGRESSION
        if TOO_SHORT in verdicts:
            return ExitCode.INCONCLUSIVE
        return ExitCode.OK

    def to_dict(self) -> dict[str, object]:
        """The --json document (bench.report.render_json)."""
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "runs": self.runs,
            "method": (
                "Page-Hinkley (river), one-sided each way, on levels standardised by the "
                "MAD of successive differences, allowance "
                f"{ALLOWANCE} of the threshold's shift; slower flagged at {SLOWER_LIMIT}, "
                f"faster at {FASTER_LIMIT}, both restarted at each change point, placed by "
                "ruptures (one least-squares break since the last); a run's level: mean "
                "over its steps of the mean log metric"
            ),
            "min_runs": MIN_RUNS,
            "exit_code": int(self.exit_code),
            "series": [s.to_dict() for s in self.series],
            "warnings": self.warnings,
        }

    def verdict_in_words(self) -> str:
        """One sentence for all series, with the exit code `bench history` gives."""
        regressed = [s.name for s in self.series if s.verdict == REGRESSION]
        short = [s.name for s in self.series if s.verdict == TOO_SHORT]
        if regressed:
            return (
                f"Regression in {', '.join(regressed)}: the newest runs begin a slower "
                "segment (`bench history` exits 1)."
            )
        if short:
            return (
                f"Too short to tell for {', '.join(short)}: a series needs {MIN_RUNS} runs "
                "(`bench history` exits 6)."
            )
        return f"No regression in {len(self.series)} series (`bench history` exits 0)."

    def rows(self) -> list[dict[str, str]]:
        """The table's rows (history.md and `bench report`'s History section)."""
        unit = _unit(self.metric)
        out = []
        for s in self.series:
            d = s.to_dict()
            cps = "; ".join(
                f"run {c['index'] + 1}: {c['run_id']} ({str(c['started_at'])[:16]}) "
                f"{c['change']:+.1%}"
                for c in d["change_points"]
            )
            seg = (
                f"{len(s.points) - s.segments[-1].start} runs, {s.change:+.1%}"
                if s.change is not None
                else "-"
            )
            out.append(
                {
                    "series": s.name,
                    "runs": str(len(s.points)),
                    "newest level": unit(s.points[-1].level) if s.points else "-",
                    "change points (first run after, change)": cps or "none",
                    "newest segment": seg,
                    "verdict": s.verdict.upper() if s.verdict == REGRESSION else s.verdict,
                }
            )
        return out

    def explanation(self) -> str:
        return (
            "Change points by Page-Hinkley tests (river), an online detector: each run is "
            "tested for a change since the last change point as it comes. A regression is a "
            f"newest segment slower than the one before by more than "
            f"{v.REGRESSION_FRACTION * self.threshold:.0%} (half the {self.threshold:.0%} "
            f"threshold) found by the job of one of the newest {RECENT} runs; older, it "
            "stays in the table."
        )


def _unit(metric: str) -> Callable[[float], str]:
    if metric.endswith("_s"):
        return lambda x: f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"
    return lambda x: f"{x:.4g}"


# --- change points ----------------------------------------------------------------------


def noise_scale(z: Sequence[float]) -> float:
    """The series' run-to-run sd, robust to steps: MAD of successive differences / sqrt 2."""
    import numpy as np

    d = np.diff(np.asarray(z, dtype=float))
    if len(d) == 0:
        return math.nan
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / math.sqrt(2))


@dataclass(frozen=True)
class Change:
    start: int  # index of the first run of the new segment
    slower: bool  # flagged by the slower detector (else by the faster one)
    found: int  # runs fed when it was found: the job of run `found` found it


def changes(z: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> list[Change]:
    """The change points, in order: the series fed run by run to two one-sided
    Page-Hinkley detectors (river), restarted at each change found (none for a series
    too short to judge). `threshold`: the change the gate exists to catch; each
    detector's allowance is half of it, in the series' noise scale."""
    import numpy as np
    import ruptures as rpt
    from river.drift import PageHinkley

    if len(z) < MIN_RUNS:
        return []
    scale = noise_scale(z)
    x = np.asarray(z, dtype=float)
    if not scale > 0:  # identical runs: nothing to standardise by; no change in noise
        scale = max(float(np.std(x)), 1e-12)
    y = ((x - x[0]) / scale).tolist()
    delta = ALLOWANCE * math.log1p(threshold) / scale
    found: list[Change] = []
    start = 0
    while True:
        # alpha 1: no forgetting (a plain CUSUM); min_instances 1: MIN_RUNS already
        # keeps a series too short to judge out, and a restart must not wait.
        slower = PageHinkley(
            min_instances=1, delta=delta, threshold=SLOWER_LIMIT, alpha=1.0, mode="up"
        )
        faster = PageHinkley(
            min_instances=1, delta=delta, threshold=FASTER_LIMIT, alpha=1.0, mode="down"
        )
        for t in range(start, len(y)):
            slower.update(y[t])
            faster.update(y[t])
            hit = slower if slower.drift_detected else faster if faster.drift_detected else None
            if hit is not None:
                # Page-Hinkley says when, not where: river keeps its cumulative sum
                # private, so the change is placed by ruptures as the one break that best
                # splits the runs since the last change (least squares: the maximum
                # likelihood change in mean). At least 1 run in, so start advances.
                seg = np.asarray(y[start : t + 1])
                if len(seg) < 2:
                    at = 1
                else:
                    bkps = rpt.Binseg(model="l2", min_size=1, jump=1).fit(seg).predict(n_bkps=1)
                    at = max(1, int(bkps[0]))
                start += at
                found.append(Change(start, hit is slower, t + 1))
                break
        else:
            return found


def change_points(z: Sequence[float]) -> list[int]:
    """Indexes where a new segment begins (none for a series too short to judge)."""
    return [c.start for c in changes(z)]


def judge(series: Series, threshold: float) -> Series:
    z = [p.mean_log for p in series.points]
    if len(z) < MIN_RUNS:
        series.verdict = TOO_SHORT
        return series
    found = changes(z, threshold)
    bounds = [0, *(c.start for c in found), len(z)]
    series.segments = [
        Segment(a, b, sum(z[a:b]) / (b - a), c.found if c else 0)
        for a, b, c in zip(bounds, bounds[1:], [None, *found], strict=False)
    ]
    if len(series.segments) >= 2:
        before, newest = series.segments[-2], series.segments[-1]
        series.change = math.expm1(newest.mean_log - before.mean_log)
        recent = len(z) - newest.found < RECENT
        if recent and series.change > v.REGRESSION_FRACTION * threshold:
            series.verdict = REGRESSION
    return series


# --- reading runs, through the index ----------------------------------------------------


def run_dirs(paths: Sequence[Path]) -> list[tuple[Path, Path | None]]:
    """(run folder, index folder) for each argument: a run folder, or a results folder
    whose run sub-folders are taken (and which holds their index)."""
    out: list[tuple[Path, Path | None]] = []
    for p in paths:
        if p.is_symlink() or not p.is_dir():
            raise UsageError(f"{p}: not a run or results folder (links are not followed)")
        if (p / METADATA).is_file():
            out.append((p, None))
            continue
        subs = sorted(d for d in p.iterdir() if not d.is_symlink() and (d / METADATA).is_file())
        if not subs:
            raise UsageError(f"{p}: holds no bench run (no */{METADATA})")
        out += [(d, p) for d in subs]
    return out


def _signature(d: Path) -> str:
    parts = []
    for name in (METADATA, SAMPLES, STEPS):
        try:
            st = os.lstat(d / name)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except FileNotFoundError:
            parts.append("-")
    return ",".join(parts)


class Index:
    """Each run's levels per metric, in RESULTS_DIR/.bench-history.sqlite. Used only in
    a results folder the user owns and can write, and no one else can; a file there
    that is not a sound index (a link, a corrupt or foreign database) is replaced or, if
    it cannot be, ignored."""

    def __init__(self, folder: Path | None):
        self.db: sqlite3.Connection | None = None
        if folder is None:
            return
        path = folder / INDEX_NAME
        try:
            st = os.stat(folder)
            # Only a folder no one else can plant a file in: a link put there between
            # the check below and the open would be followed.
            if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not os.access(folder, os.W_OK):
                return
            if path.is_symlink() or (path.exists() and not path.is_file()):
                return  # not ours to replace: read without an index
            self.db = self._open(path)
        except (OSError, sqlite3.Error):
            self.db = None

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            return Index._connect(path)
        except sqlite3.DatabaseError:
            path.unlink()  # a corrupt or foreign file: rebuilt from the runs
            return Index._connect(path)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path)
        if db.execute("PRAGMA user_version").fetchone()[0] not in (0, INDEX_VERSION):
            db.close()
            raise sqlite3.DatabaseError("another index version")
        db.execute(
            "CREATE TABLE IF NOT EXISTS levels (run TEXT, metric TEXT, sig TEXT, doc TEXT, "
            "PRIMARY KEY (run, metric))"
        )
        db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
        return db

    def get(self, run: str, metric: str, sig: str) -> RunSummary | None:
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT doc FROM levels WHERE run = ? AND metric = ? AND sig = ?", (run, metric, sig)
        ).fetchone()
        # JSON this module wrote (put), read back as the summary it was.
        return cast(RunSummary, json.loads(row[0])) if row else None

    def put(self, run: str, metric: str, sig: str, doc: RunSummary) -> None:
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO levels VALUES (?, ?, ?, ?)",
                (run, metric, sig, json.dumps(doc)),
            )

    def close(self) -> None:
        if self.db is not None:
            self.db.commit()
            self.db.close()


def _summary(d: Path, metric: str) -> RunSummary:
    return summary_of(load_run(d), metric)


def summary_of(run: Run, metric: str) -> RunSummary:
    """What history keeps of a run: its id, start, scenario and level per group (what
    the index stores; `bench report` makes it from the runs it has already read)."""
    if run.samples:
        check_metric(metric, run.samples)
    groups: dict[str, list[float]] = {}
    for (group, n), rows in sample_groups(run.samples).items():
        level = level_of(rows, metric)
        if level.mean_log is not None:
            groups[f"{n}\t{group}"] = [level.mean_log, level.samples]
    return {
        "run_id": run.run_id,
        "started_at": str(run.metadata.get("started_at") or ""),
        "scenario": text(run.part("scenario").get("name")),
        "status": run.status,
        "groups": groups,
        # What must match between runs (bench.judge.comparability) is judged from these.
        "metadata": run.metadata,
    }


def read_history(
    paths: Sequence[Path],
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    scenario: str | None = None,
) -> History:
    dirs = run_dirs(paths)
    indexes: dict[Path | None, Index] = {}
    summaries: list[RunSummary] = []
    try:
        for d, folder in dirs:
            if folder not in indexes:
                indexes[folder] = Index(folder)
            index = indexes[folder]
            sig = _signature(d)
            doc = index.get(d.name, metric, sig)
            if doc is None:
                doc = _summary(d, metric)
                index.put(d.name, metric, sig, doc)
            summaries.append(doc)
    finally:
        for index in indexes.values():
            index.close()
    return history_of(summaries, metric, threshold, scenario, where=", ".join(map(str, paths)))


def history_of_order(summaries: list[RunSummary]) -> list[RunSummary]:
    """Runs' summaries in the order a history numbers them: by start, then run id."""
    return sorted(summaries, key=lambda s: (s["started_at"], s["run_id"]))


def history_of(
    summaries: list[RunSummary],
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    scenario: str | None = None,
    where: str = "these runs",
    found: Sequence[Mismatch] | None = None,
) -> History:
    """The history of runs' summaries (summary_of), in any order: sorted by start.

    `found`: the runs' differences (bench.judge.comparability.mismatches), values in the order
    of `summaries`, when the caller has them (the report, with its samples' accels);
    else they are found from the summaries' metadata."""
    warnings = []
    if scenario is not None:
        summaries = [s for s in summaries if s["scenario"] == scenario]
        if not summaries:
            raise UsageError(f"no run of scenario {scenario!r} in {where}")
    scenarios = sorted({str(s["scenario"]) for s in summaries})
    if len(scenarios) > 1:
        warnings.append(
            f"the runs are of {len(scenarios)} scenarios ({', '.join(scenarios)}): "
            "pick one with --scenario"
        )
    unfinished = [s["run_id"] for s in summaries if s["status"] not in ("complete",)]
    if unfinished:
        warnings.append(
            f"{len(unfinished)} run(s) did not complete ({', '.join(unfinished[:3])}"
            f"{', ...' if len(unfinished) > 3 else ''}): their levels are included"
        )
    if found is None:
        found = _mismatches(summaries)
    place = {s["run_id"]: i for i, s in enumerate(summaries)}
    summaries = history_of_order(summaries)
    must = must_match_warning(found, [place[s["run_id"]] for s in summaries])
    if must:
        warnings.append(must)
    by_group: dict[tuple[str, int], list[Point]] = {}
    for s in summaries:
        for key, (mean_log, samples) in s["groups"].items():
            n, group = key.split("\t", 1)
            point = Point(s["run_id"], s["started_at"], mean_log, cast(int, samples))
            by_group.setdefault((group, int(n)), []).append(point)
    series = [judge(Series(g, n, pts), threshold) for (g, n), pts in sorted(by_group.items())]
    if not series:
        raise UsageError(f"no ready sample with a usable {metric} in these runs")
    return History(metric, threshold, series, len(summaries), warnings)


def _mismatches(summaries: Sequence[RunSummary]) -> list[Mismatch]:
    metadatas = [s.get("metadata") for s in summaries]
    if len(metadatas) < 2 or not all(isinstance(m, dict) for m in metadatas):
        return []  # summaries made by an older bench: nothing to compare
    return mismatches([m for m in metadatas if isinstance(m, dict)])


def must_match_warning(found: Sequence[Mismatch], order: Sequence[int]) -> str | None:
    """One warning naming what must match but differs between the runs, and at which
    runs of the history (numbered in `order`: positions in the mismatches' values) it
    changes. What `bench compare` refuses a verdict for: a history is still judged (a
    change point may be exactly where a setting changed), with the reason beside it."""
    must = []
    for m in found:
        if m.severity != WARNING:
            continue
        values = [repr(m.values[i]) for i in order]
        at = [k + 1 for k in range(1, len(values)) if values[k] != values[k - 1]]
        runs = ", ".join(map(str, at[:5])) + (", ..." if len(at) > 5 else "")
        must.append(f"{m.label}, changing at run {runs}" if at else m.label)
    if not must:
        return None
    return (
        f"the runs differ in what must match ({'; '.join(must)}): a change point may "
        "come from that alone."
    )


# --- the plot ---------------------------------------------------------------------------


CAPTION = (
    "Each run's level (the geometric mean of its metric over its steps) in the order the "
    "runs started, one panel per platform and N; black lines: each segment's level; "
    "dashed lines: change points (red: slower after, green: faster), labelled with the "
    "change and the first run after it."
)


def figure(history: History) -> Figure:
    """Each series' levels in run order (runs numbered from 1), change points as dashed
    lines and each segment's level as a horizontal line: history.png, here and in
    `bench report`."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    series = history.series
    cols = 2 if len(series) > 1 else 1
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(6.4 * cols, 0.4 + 3.2 * rows), layout="constrained")
    scale, unit = (1000, "ms") if history.metric.endswith("_s") else (1, "")
    for i, s in enumerate(series):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = range(1, len(s.points) + 1)
        ax.plot(xs, [p.level * scale for p in s.points], "o-", ms=3, lw=0.8, color="#4477aa")
        for seg in s.segments:
            ax.hlines(
                math.exp(seg.mean_log) * scale, seg.start + 0.6, seg.end + 0.4, color="#222222"
            )
        for j, (prev, seg) in enumerate(zip(s.segments, s.segments[1:], strict=False)):
            color = "#cc3311" if seg.mean_log > prev.mean_log else "#228833"
            ax.axvline(seg.start + 0.5, ls="--", color=color)
            # Labels on two rows (change points a few runs apart), left of their line in
            # the last third (they would run off the panel).
            left = seg.start > 0.65 * len(s.points)
            ax.annotate(
                f"{math.expm1(seg.mean_log - prev.mean_log):+.0%} from run {seg.start + 1}",
                (seg.start + 0.5, 1),
                xycoords=("data", "axes fraction"),
                xytext=(-3 if left else 3, -12 - 13 * (j % 2)),
                textcoords="offset points",
                ha="right" if left else "left",
                color=color,
                fontsize=9,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1},
            )
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.2 * (high - low))  # room for the labels above the data
        verdict = s.verdict.upper() if s.verdict == REGRESSION else s.verdict
        ax.set_title(f"{s.name}: {verdict}", fontsize=10)
        ax.set_xlabel("run (1 = oldest, in start order)")
        ax.set_ylabel(f"{history.metric}, level per run ({unit})" if unit else history.metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(
        handles=[
            Line2D([], [], marker="o", ms=3, lw=0.8, color="#4477aa", label="a run's level"),
            Line2D([], [], color="#222222", label="segment level"),
            Line2D([], [], ls="--", color="#cc3311", label="change point, slower after"),
            Line2D([], [], ls="--", color="#228833", label="change point, faster after"),
        ],
        loc="outside lower center",
        ncols=4,
        fontsize=9,
        frameon=False,
    )
    return fig


def plot(history: History, path: Path) -> None:
    figure(history).savefig(path, dpi=110)
