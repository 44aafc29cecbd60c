"""Stored runs as pandas DataFrames: one row per sample, per step, per (run, platform, N).

Fields written by newer runners (memory, disk, density verdicts) are optional: a
column that no run carries is still present, filled with NaN, so tables and plots
can test for data instead of for columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from bench.model import kinds
from bench.model.errors import UsageError
from bench.model.records import Row, Sample, StepRecord, fields_of, obj, text
from bench.model.results import Run, load_run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from bench.judge.summary import SummaryRow

MIB = 2**20

# Columns of the sample and step frames: the run, then every field bench.model.records declares.
SAMPLE_FIELDS = ("run", *(f for f in Sample.model_fields if f != "extras"))
STEP_FIELDS = ("run", *(f for f in StepRecord.model_fields if f != "extras"))
# Declared numbers (metrics and values with a unit) are floats in the frames.
NUMERIC = {
    name
    for model in (Sample, StepRecord)
    for name, info in fields_of(model).items()
    if info.metric or info.unit
} - {"settle_s"}
KEYS = ["run", "host", "platform", "backend", "kind", "accel", "n", "samples", "failures"]
# What the report's tables show, in this order (sizes in MiB); summary.csv has these
# first, then every other statistic bench.model.records declares.
HEADLINE = [
    "ready_p50_s",
    "ready_p95_s",
    "ready_max_s",
    "mem_host_per_instance_mib",
    "mem_pss_per_instance_mib",
    "disk_per_instance_mib",
    # Beyond the writable layer: what a step added to the engine's storage, per instance
    # (container dirs and layer metadata; libvirt's per-domain files and overlays).
    "storage_per_instance_mib",
]
SUMMARY_COLUMNS = KEYS + HEADLINE
DENSITY_COLUMNS = ["max_density", "density_limit"]


def csv_name(column: str) -> str:
    """Summary columns in bytes are shown in MiB (the unit stays in the name)."""
    return column.removesuffix("_bytes") + "_mib" if column.endswith("_bytes") else column


def more_columns() -> list[str]:
    """Every declared summary statistic the headline leaves out, in declaration order."""
    from bench.judge.summary import summary_columns

    return [c for c in map(csv_name, summary_columns()) if c not in HEADLINE]


@dataclass
class Frames:
    """Everything a report is made of, computed once from the stored runs."""

    runs: list[Run]
    labels: dict[str, str]  # run id -> short label for legends ("" for a single run)
    samples: pd.DataFrame  # SAMPLE_FIELDS + `series`
    steps: pd.DataFrame  # STEP_FIELDS + `series`
    summary: pd.DataFrame  # SUMMARY_COLUMNS (+ DENSITY_COLUMNS when any run has a search)
    density: dict[tuple[str, str], Row]  # (run, platform) -> its search block
    names: dict[tuple[str, str], str]  # (run, platform) -> legend name (`series` column)
    hosts: list[str]  # host keys the samples and steps carry, in the order they appear
    # Run id -> bench.judge.summary.summarize of its samples and steps, computed once: several
    # tables start from it, and a run may hold a million samples.
    summaries: dict[str, list[SummaryRow]]

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    @property
    def multi_host(self) -> bool:
        """Several hosts: tables and plots get a host dimension (never pooled)."""
        return len(self.hosts) > 1

    def series_of(self, run: str, platform: str, host: object = None) -> str:
        """The legend name of (run, platform) on `host`: the host only when several."""
        return series_name(self.names, run, platform, host, self.multi_host)

    @cached_property
    def anomalies(self) -> dict[str, list[str]]:
        """Run id -> its phase-anomaly notes (bench.judge.anomalies), for runs that have some.
        Found once: the summary, the page and the terminal all show them."""
        from bench.judge.anomalies import anomaly_notes

        notes = {r.run_id: anomaly_notes(r.frame) for r in self.runs}
        return {run_id: lines for run_id, lines in notes.items() if lines}

    @cached_property
    def series_order(self) -> list[str]:
        """Series run by run (first run first), each run's platforms in the tables'
        order: along the spectrum from container to VM (platform_order). Found once:
        every plot asks, and a run may hold a million samples."""
        position = {p: i for i, p in enumerate(platform_order(self.runs))}
        run_index = {r.run_id: i for i, r in enumerate(self.runs)}
        seen: dict[str, tuple[int, int]] = {}
        for df in (self.samples, self.steps):
            # Each (run, platform, series) once, in the order first seen.
            first = df[["run", "platform", "series"]].drop_duplicates()
            for run, platform, series in first.itertuples(index=False):
                key = (run_index.get(run, len(run_index)), position.get(platform, len(position)))
                seen.setdefault(series, key)
        return sorted(seen, key=lambda s: seen[s])  # stable: ties keep their first appearance

    @property
    def table(self) -> pd.DataFrame:
        """The summary as the report's tables show it: keys and headline statistics."""
        return self.summary.drop(columns=more_columns())


def load_frames(run_dirs: Sequence[str | Path]) -> Frames:
    if not run_dirs:
        raise UsageError("give at least one results/<run-id>/ directory")
    # By columns: a report reads no sample as a dict (a run may hold a million).
    runs = [load_run(d, columns=True) for d in run_dirs]
    seen: dict[str, Path] = {}
    for r in runs:
        if r.run_id in seen:
            raise UsageError(f"run {r.run_id} is given twice ({seen[r.run_id]} and {r.dir})")
        seen[r.run_id] = r.dir
    return frames_of(runs)


def frames_of(runs: list[Run]) -> Frames:
    labels = run_labels(runs)
    samples = samples_frame(runs)
    steps = steps_frame(runs)
    density = {(r.run_id, name): block for r in runs for name, block in density_searches(r).items()}
    names = series_names(samples, labels)
    hosts = list(
        dict.fromkeys(
            h for df in (samples, steps) for h in df["host"].drop_duplicates() if isinstance(h, str)
        )
    )
    for df in (samples, steps):
        df["series"] = _per_key(
            df,
            ["run", "platform", "host"],
            lambda r, p, h: series_name(names, r, p, h, len(hosts) > 1),
        )
    from bench.judge.summary import summarize

    summaries = {r.run_id: summarize(r.frame, r.steps) for r in runs}
    summary = summary_frame(runs, summaries, density)
    return Frames(runs, labels, samples, steps, summary, density, names, hosts, summaries)


def _per_key(df: pd.DataFrame, keys: list[str], f: Callable[..., object]) -> np.ndarray:
    """f(*key) for each row, computed once per distinct key (a million samples come down
    to a handful of keys)."""
    import numpy as np

    if df.empty:
        return np.empty(0, dtype=object)
    codes = df.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    firsts = np.unique(codes, return_index=True)[1]
    values = np.empty(len(firsts), dtype=object)
    values[:] = [f(*(df[k].iat[i] for k in keys)) for i in firsts]
    return values[codes]


def series_name(
    names: dict[tuple[str, str], str], run: str, platform: str, host: object, multi_host: bool
) -> str:
    name = names.get((run, platform), platform)
    # Statistics never pool hosts: with several, each host's instances are their own series.
    return f"{name} @ {host}" if multi_host and isinstance(host, str) else name


def series_names(samples: pd.DataFrame, labels: dict[str, str]) -> dict[tuple[str, str], str]:
    """Legend name per (run, platform): the platform, its accel when not native (a TCG VM
    must never pass for a KVM one in a plot shown alone), and the run when several."""
    out = {}
    for (run_key, platform_key), g in samples.groupby(["run", "platform"], sort=False):
        run, platform = str(run_key), str(platform_key)  # the frame's names: strings
        accels = sorted(g["accel"].dropna().astype(str).unique())
        name = f"{platform} [{','.join(accels)}]" if accels else platform
        out[(run, platform)] = f"{name} · {labels[run]}" if labels[run] else name
    return out


_RUN_ID_RE = re.compile(r"^(?P<name>.+)-(?P<date>\d{8})-(?P<time>\d{6})-(?P<id>[0-9a-f]+)$")


def run_labels(runs: list[Run]) -> dict[str, str]:
    """Short, unique legend labels: run ids without what all of them share (scenario
    name, date), e.g. "033745-2d57" for two runs of one scenario on one day."""
    if len(runs) == 1:
        return {runs[0].run_id: ""}
    ids = [r.run_id for r in runs]
    parts = [m for i in ids if (m := _RUN_ID_RE.match(i))]
    if len(parts) < len(ids):
        return {i: i for i in ids}
    keep = [k for k in ("name", "date") if len({m[k] for m in parts}) > 1]
    labels = {
        i: "-".join([*(m[k] for k in keep), m["time"], m["id"]])
        for i, m in zip(ids, parts, strict=True)
    }
    if len(set(labels.values())) < len(labels):
        return {i: i for i in ids}
    return labels


def samples_frame(runs: list[Run]) -> pd.DataFrame:
    return _frame(runs, "samples", SAMPLE_FIELDS)


def steps_frame(runs: list[Run]) -> pd.DataFrame:
    return _frame(runs, "steps", STEP_FIELDS)


def _frame(runs: list[Run], attr: str, fields: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    # One frame per run, the run as a column: no copy of every row with its run added.
    # Samples come from the run's columns (Run.frame), steps (a few per run) from dicts.
    tables = [r.frame if attr == "samples" else pd.DataFrame(r.steps) for r in runs]
    parts = [t.assign(run=r.run_id) for r, t in zip(runs, tables, strict=True) if len(t)]
    if len(parts) == 1:
        df = parts[0]
    else:
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for f in fields:
        if f not in df.columns:
            df[f] = pd.NA
    for f in NUMERIC & set(df.columns):
        df[f] = pd.to_numeric(df[f], errors="coerce").astype(float)
    if "status" in df.columns:
        # Steps written before density searches existed all ran.
        df["status"] = df["status"].fillna("ran")
    return df[list(fields) + [c for c in df.columns if c not in fields]]


def platform_order(runs: list[Run]) -> list[str]:
    """Platform names along the spectrum, container → sandboxed container → microVM → VM
    (bench.model.kinds.order), each kind's in the order the scenarios list them (first run
    first). A platform's kind is its first recorded sample's or step's; one that never
    ran (nothing recorded) comes last."""
    names: list[str] = []
    kind_of: dict[str, str | None] = {}
    for r in runs:
        listed = obj(r.metadata.get("scenario")).get("platforms")
        for p in map(obj, listed if isinstance(listed, list) else []):
            name = text(p.get("name"))
            if name is not None and name not in names:
                names.append(name)
        for platform, kind in r.platforms_recorded.items():
            if platform not in names:
                names.append(platform)
            if kind_of.get(platform) is None:
                kind_of[platform] = kind
    return sorted(names, key=lambda name: kinds.order(kind_of.get(name)))  # stable


def density_searches(run: Run) -> dict[str, Row]:
    """Platforms of this run that ran a density search, with their search block."""
    return {name: obj(block) for name, block in obj(run.metadata.get("searches")).items()}


def max_density(steps: list[Row]) -> tuple[int, str]:
    """The largest N whose steps all met every limit, and what stopped the search."""
    from bench.judge.summary import density_of

    d = density_of(steps)
    return d["max_density"], d["limit"]


def summary_frame(
    runs: list[Run],
    summaries: dict[str, list[SummaryRow]],
    density: dict[tuple[str, str], Row],
) -> pd.DataFrame:
    """One row per (run, platform, N): SUMMARY_COLUMNS, plus DENSITY_COLUMNS if any search,
    then every other statistic bench.model.records declares (more_columns()).

    The statistics are bench.judge.summary.summarize's, the same the terminal summary shows.
    """
    import pandas as pd

    order = {name: i for i, name in enumerate(platform_order(runs))}
    rows = []
    for r in runs:
        summary = sorted(
            summaries[r.run_id],
            key=lambda x: (order.get(str(x["platform"]), len(order)), x["n"]),
        )
        for x in summary:
            platform = x["platform"]
            row: dict[str, object] = {"run": r.run_id}
            for column, v in x.items():
                if column.endswith("_bytes"):
                    v = v / MIB if isinstance(v, int | float) else float("nan")
                row[csv_name(column)] = v
            if density:
                row["max_density"], row["density_limit"] = pd.NA, None
                if (r.run_id, platform) in density:
                    p_steps = [s for s in r.steps if s["platform"] == platform]
                    row["max_density"], row["density_limit"] = max_density(p_steps)
            rows.append(row)
    columns = SUMMARY_COLUMNS + (DENSITY_COLUMNS if density else []) + more_columns()
    df = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column.endswith(("_s", "_mib")):
            df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    if density:
        df["max_density"] = df["max_density"].astype("Int64")
    return df
