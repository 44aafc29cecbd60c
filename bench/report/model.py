"""What a report says, computed once: every section of `bench report` as data.

A report used to be computed by each format that showed it: summary.md, report.html and
the terminal each asked whether VMs ran under TCG, which runs had anomalies and how the
runs' hosts differed, and the containers-vs-VMs table was built once per format. Here
`build_model` computes each section once from the runs' Frames (the tables as pandas
DataFrames, the notes as sentences, the verdicts of `bench compare` and `bench history`);
the renderers (render_markdown, render_html, render_csv, render_terminal) only lay it
out, so two formats cannot say different things.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from bench.judge import comparability
from bench.model.records import objs
from bench.report import tables
from bench.report.frame import Frames

if TYPE_CHECKING:
    import pandas as pd

    from bench.judge.history import History
    from bench.model.records import Row
    from bench.report.neighbours import NeighboursSection
    from bench.report.tax import Tax
    from bench.report.workloads import WorkloadsSection


@dataclass(frozen=True)
class HostTable:
    """The containers-vs-VMs table of one host (`host` None: of the whole report), and
    why its memory rows compare different N, when they do."""

    host: str | None
    table: pd.DataFrame
    n_differs: str | None


@dataclass(frozen=True)
class Changes:
    """Several runs: ready p50 per run and the last run's change; `bench compare`'s
    verdict as a table when the runs are comparable; what the reader must know."""

    table: pd.DataFrame
    verdict: pd.DataFrame | None
    notes: list[str]


@dataclass(frozen=True)
class RunFacts:
    """One run's facts for people: run and host facts, engine facts per platform."""

    run_id: str
    host: pd.DataFrame
    engines: pd.DataFrame


@dataclass(frozen=True)
class BoundarySection:
    """The isolation boundary as read from each instance of one run (bench.measurements.
    boundary): one row per platform, a value per fact or "not read (why)"."""

    run_id: str
    rows: pd.DataFrame
    read: int  # instances the table was made from
    capped: bool  # the run has more: the table is of its first `read` instances


@dataclass(frozen=True)
class WorkloadsView:
    """The workloads table of one run (bench.report.workloads): its computed rows, the
    headline table as text cells, every figure unrounded (workloads.csv), failures."""

    section: WorkloadsSection
    table: pd.DataFrame
    numbers: pd.DataFrame


@dataclass(frozen=True)
class NeighboursView:
    """The isolation table of one run (bench.report.neighbours): its computed rows and
    the table as text cells."""

    section: NeighboursSection
    table: pd.DataFrame


# The boundary table reads samples' extras, which the columns leave out: from at most
# this many (a few hundred ms), so a million-sample run is still reported in time.
BOUNDARY_SAMPLES = 20_000


@dataclass
class ReportModel:
    """Every section of a report. `frames` stays for the plots, which draw from it."""

    frames: Frames
    run_ids: list[str]
    tcg: bool  # some VM ran under TCG: its boot times are not representative
    anomalies: dict[str, list[str]]  # run id -> phase-anomaly notes
    memory_disagreements: dict[str, list[str]]  # run id -> why host view and PSS differ
    host_differences: pd.DataFrame | None  # rows: facts; columns: runs, then the policy
    classic: list[HostTable]  # one per host (one table when a single host)
    tax: Tax | None  # what libvirt adds over direct QEMU, when the runs measured it
    changes: Changes | None
    history: History | None  # `bench history` of the runs, when they form one
    no_history: str | None  # else why not (None for one run)
    summary: pd.DataFrame  # summary.csv: every statistic
    table: pd.DataFrame  # the summary as the tables show it (headline statistics)
    runs: list[RunFacts]
    boundary: BoundarySection | None = None  # when the newest run read it
    # Platforms not ready by the serial marker (the debug port; no UART console).
    readiness: list[str] = field(default_factory=list)
    # Run id -> what ready meant where a platform's `ready:` is not the default marker.
    ready_means: dict[str, str] = field(default_factory=dict)
    workloads: WorkloadsView | None = None  # when the newest run ran workloads
    neighbours: NeighboursView | None = None  # when the newest run measured neighbours
    # For the terminal: what a reader of the files must not miss, besides the plots
    # not drawn (known only when drawing): the history's verdict first, the rest after.
    history_note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        return self.frames.multi

    @property
    def multi_host(self) -> bool:
        return self.frames.multi_host


def build_model(frames: Frames) -> ReportModel:
    """Every section of the report of `frames`, each computed once."""
    from bench.report.tax import libvirt_tax

    found = comparability.mismatches(
        [r.metadata for r in frames.runs], accels=tables.run_accels(frames)
    )
    history, no_history = tables.run_history(frames, found)
    classic = []
    for host in frames.hosts if frames.multi_host else [None]:
        table = tables.classic_table(frames, host)
        classic.append(HostTable(host, table, tables.n_differs_note(table)))
    changes = None
    change_table = tables.run_changes(frames)
    if change_table is not None:
        verdict, verdict_notes = tables.compare_verdict(frames, found)
        changes = Changes(change_table, verdict, verdict_notes)
    model = ReportModel(
        frames=frames,
        run_ids=[r.run_id for r in frames.runs],
        tcg=tables.any_tcg(frames),
        anomalies=frames.anomalies,
        memory_disagreements=tables.memory_disagreements(frames),
        host_differences=tables.host_differences(frames, found),
        classic=classic,
        tax=libvirt_tax(frames),
        changes=changes,
        history=history,
        no_history=no_history,
        summary=frames.summary,
        table=frames.table,
        runs=[RunFacts(*facts) for facts in tables.run_metadata(frames)],
        boundary=_boundary(frames),
        workloads=_workloads(frames),
        neighbours=_neighbours(frames),
    )
    if model.boundary is not None or model.neighbours is not None:
        from bench.report.neighbours import worst

        rows = model.boundary.rows if model.boundary is not None else None
        slowest = worst(model.neighbours.section) if model.neighbours is not None else None
        model.classic = [
            HostTable(c.host, tables.with_isolation(c.table, rows, slowest), c.n_differs)
            for c in model.classic
        ]
    if model.workloads is not None:
        cells = overhead_cells(frames, model.workloads.section)
        if cells:
            model.classic = [
                HostTable(c.host, tables.with_runtime_overhead(c.table, cells), c.n_differs)
                for c in model.classic
            ]
    model.ready_means = _ready_means(frames)
    if history is not None:
        model.history_note = f"history of {history.runs} runs: {history.verdict_in_words()}"
    model.readiness = [
        (f"run {r.run_id}: " if model.multi else "") + line
        for r in frames.runs
        for line in _readiness_notes(r.metadata)
    ]
    model.notes = _notes(model)
    return model


def _boundary(frames: Frames) -> BoundarySection | None:
    """The newest run's boundary table, None when its samples hold no boundary facts
    (runs stored before the measurement existed)."""
    import pandas as pd

    from bench.measurements.boundary import COLUMNS, boundary_table

    run = frames.runs[-1]
    counted = {"read": 0, "stored": 0}

    def samples() -> Iterator[Row]:
        for row in islice(run.iter_samples(), BOUNDARY_SAMPLES):
            counted["read"] += 1
            extras = row.get("extras")
            counted["stored"] += isinstance(extras, dict) and "boundary" in extras
            yield row

    rows = boundary_table(samples(), list(run.platforms_recorded))
    if not counted["stored"]:
        return None
    return BoundarySection(
        run.run_id,
        pd.DataFrame(rows, columns=list(COLUMNS)),
        counted["read"],
        counted["read"] == BOUNDARY_SAMPLES,
    )


def _workloads(frames: Frames) -> WorkloadsView | None:
    """The newest run's workloads table, None when it ran none."""
    import pandas as pd

    from bench.report import workloads

    run = frames.runs[-1]
    section = workloads.build(run.run_id, islice(run.iter_samples(), BOUNDARY_SAMPLES))
    if section is None:
        return None
    table = pd.DataFrame(workloads.display_rows(section), columns=list(workloads.COLUMNS))
    return WorkloadsView(section, table, pd.DataFrame(workloads.numbers(section)))


def _neighbours(frames: Frames) -> NeighboursView | None:
    """The newest run's isolation (noisy-neighbour) table, None when it measured none."""
    import pandas as pd

    from bench.report import neighbours

    run = frames.runs[-1]
    section = neighbours.build(run.run_id, run.steps)
    if section is None:
        return None
    table = pd.DataFrame(neighbours.display_rows(section), columns=list(neighbours.COLUMNS))
    return NeighboursView(section, table)


def overhead_cells(frames: Frames, section: WorkloadsSection) -> dict[str, str]:
    """The runtime-overhead row's cells for the workloads' run, N read from its samples."""
    from bench.report import workloads

    s = frames.samples
    mine = s[s["run"] == section.run_id]
    counts = {str(p): int(g["n"].max()) for p, g in mine.groupby("platform")}
    return workloads.overhead_cells(section, counts)


def _notes(model: ReportModel) -> list[str]:
    """TCG, phase anomalies, host differences, readiness channels, each run's own notes
    and status."""
    notes = []
    if model.tcg:
        notes.append("VMs ran under TCG (software emulation): not representative of KVM")
    for run_id, lines in model.anomalies.items():
        prefix = f"run {run_id}: " if model.multi else ""
        notes += [prefix + line for line in lines]
    if model.host_differences is not None:
        notes.append("the runs differ in host, engine or scenario: see report.html")
    notes += model.readiness
    for run_id, text in model.ready_means.items():
        notes.append(f"run {run_id}: {text}" if model.multi else text)
    for r in model.frames.runs:
        notes += r.notes
        prefix = f"run {r.run_id}: " if model.multi else ""
        for slot, why in r.part("left_out").items():
            notes.append(f"{prefix}platform {slot} was not run (optional, this host cannot): {why}")
        if r.status != "complete":
            notes.append(f"run {r.run_id} is {r.status}: its report may miss steps")
    return notes


def _readiness_notes(metadata: Mapping[str, object]) -> list[str]:
    """Platforms whose ready_s is not the serial marker's: ready by the VM's debug port
    (ready: {channel: debugcon}), some booted without a kernel console on the UART
    (console: false). Their figures sit in the same tables as the others'."""
    scenario = metadata.get("scenario")
    platforms = scenario.get("platforms") if isinstance(scenario, dict) else None
    port, quiet = [], []
    for p in platforms if isinstance(platforms, list) else []:
        ready = p.get("ready") if isinstance(p, dict) else None
        if isinstance(ready, dict) and ready.get("channel") == "debugcon":
            port.append(str(p.get("name")))
            if p.get("console") is False:
                quiet.append(str(p.get("name")))
    notes = []
    if port:
        notes.append(
            "ready by a byte on the VM's debug port 0xe9, not by its serial marker: "
            + ", ".join(port)
        )
    if quiet:
        notes.append(
            "booted with no kernel console on the UART (8250.nr_uarts=0), so no boot phase "
            "past the firmware is seen: " + ", ".join(quiet)
        )
    return notes


def _ready_means(frames: Frames) -> dict[str, str]:
    """Per run, what ready meant for platforms whose `ready:` is not the default marker
    (a port, an HTTP status, an exit, a pattern): ready_s is not comparable across kinds
    without knowing it."""
    from pydantic import ValidationError

    from bench.model.settings import DEFAULT_MARKER, ReadyRule

    out = {}
    for r in frames.runs:
        said = []
        for p in objs(r.part("scenario").get("platforms")):
            try:
                rule = ReadyRule.model_validate(p.get("ready") or {})
            except ValidationError:
                continue  # a rule this version cannot read: say nothing rather than guess
            if rule.kind == "marker" and rule.marker == DEFAULT_MARKER:
                continue
            what = f"the console marker {rule.marker}" if rule.kind == "marker" else rule.describe()
            said.append(f"{p.get('name')}: {what}")
        if said:
            out[r.run_id] = f"ready means {'; '.join(said)}"
    return out
