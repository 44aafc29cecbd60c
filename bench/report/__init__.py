"""`bench report`: tables, plots and one HTML page from stored runs (never a live engine).

    build_report(["results/quickstart-…"]) -> Report(directory, files, notes)

What a report says is computed once, then laid out per format (as hyperfine has one
exporter per format over one result model). Computing: frame (runs -> DataFrames),
tables (summary, classic containers-vs-VMs table, host differences, changes), tax
(what libvirt adds over direct QEMU), model (every section, once). Laying out:
render_markdown (the .md files, and the verdicts of `bench compare` and `bench ab`),
render_html (the self-contained page), render_csv (summary.csv), render_json (the
verdicts' --json), render_terminal (what the commands print), plots (one function per
PNG). pandas and matplotlib load only when a report is built.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.model.errors import UsageError
from bench.model.paths import fresh

if TYPE_CHECKING:
    from bench.judge.history import History

DEFAULT_ROOT = Path("reports")
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
CLASSIC_MD = "containers-vs-vms.md"
TAX_MD = "libvirt-tax.md"
WORKLOADS_CSV = "workloads.csv"
REPORT_HTML = "report.html"
HISTORY_FILES = ("history.md", "history.json", "history.png")  # write_history

CAPTIONS = {
    "ready-distribution.png": "Ready time of every successful instance, per platform and N "
    "(box: quartiles; points: instances).",
    "ready-percentiles.png": "Ready time p50 (solid) and p95 (dashed) against N; the band "
    "is the interquartile range, n the ready instances summarised.",
    "boot-phases.png": "Where the time to ready goes: each phase's share (queued, create "
    "call, start call, start to ready outside the guest, the guest's own uptime) per "
    "platform and N.",
    "timeline.png": "Every instance of the largest step of each platform on the step's "
    "clock: instances an engine serialises form a staircase.",
    "hosts.png": "The same platform across hosts: ready p50 and p95 against N, one line per host.",
    "memory-per-instance.png": "Memory per instance against N, one panel per view, one "
    "axis rule for all panels.",
    "density.png": "Density search: ready p95 against N, the SLO, the max density reached "
    "and the limit that stopped the search.",
    "disk-per-instance.png": "Disk per instance against N.",
    "neighbours.png": "Noisy neighbours: the victim's median slowdown per aggressor kind, "
    "per platform (whiskers: min-max over the repeats; 1 = no slowdown; hatched: emulated).",
    "workload-ratios.png": "Each platform's workload figures as ratios to native, with 95% "
    "bootstrap intervals; the dashed line is native.",
}


@dataclass
class Report:
    directory: Path
    files: list[Path] = field(default_factory=list)
    # plots skipped, TCG, phase anomalies, host differences
    notes: list[str] = field(default_factory=list)


# What a report folder's own name may hold: a run folder's or a scenario's name.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def default_directory(run_ids: Sequence[str], names: Sequence[str]) -> Path:
    """reports/<run-id>/ for one run; reports/<scenario names>-<n>runs-<hash>/ for many
    (the same runs always land in the same directory).

    `run_ids` are the run folders' own names and `names` the scenarios' names as stored:
    both come from a results folder someone else may have written, so a name that is not
    a plain folder name (`../../x`, `/etc`) is left out, and the folder is refused if
    reports/ or it is a symbolic link (it would lead the report's files elsewhere)."""
    if len(run_ids) == 1:
        if not _FOLDER_NAME.fullmatch(run_ids[0]):
            raise UsageError(f"run folder name {run_ids[0]!r}: name the report's folder with --out")
        directory = DEFAULT_ROOT / run_ids[0]
    else:
        digest = hashlib.sha256("\n".join(sorted(run_ids)).encode()).hexdigest()[:6]
        plain = [n for n in names if isinstance(n, str) and _FOLDER_NAME.fullmatch(n)]
        stem = "+".join(dict.fromkeys(plain))[:100] or "runs"
        directory = DEFAULT_ROOT / f"{stem}-{len(run_ids)}runs-{digest}"
    for p in (DEFAULT_ROOT, directory):
        if p.is_symlink():
            raise UsageError(f"{p} is a symbolic link: bench writes reports only into folders")
    return directory


def runs_in(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders as given; a results folder stands for its runs (bench.judge.history.run_dirs:
    sub-folders that hold a run, by name, so oldest first; links not followed)."""
    from bench.judge.history import run_dirs

    out: list[Path] = []
    for p in map(Path, paths):
        try:
            out += [d for d, _ in run_dirs([p])]
        except UsageError:
            out.append(p)  # load_run says what is wrong with it
    return out


def write_history(history: History, out: Path) -> list[Path]:
    """history.md, .json and .png in `out` (`bench history --out`, and a report of a
    history), as `bench report` writes its folder: never through a link (the folder
    itself, or a file name planted in it)."""
    from bench.judge.history import plot
    from bench.report.render_json import verdict_json
    from bench.report.render_markdown import history_markdown

    if out.is_symlink():
        raise UsageError(f"--out {out}: a symbolic link; name a folder of its own")
    out.mkdir(parents=True, exist_ok=True)
    files = [fresh(out / name) for name in HISTORY_FILES]
    files[0].write_text(history_markdown(history))
    files[1].write_text(verdict_json(history))
    plot(history, files[2])
    return files


def build_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Report:
    from bench.model.records import text
    from bench.report import plots
    from bench.report.frame import load_frames
    from bench.report.model import build_model
    from bench.report.render_csv import summary_csv
    from bench.report.render_html import render_html
    from bench.report.render_markdown import classic_markdown, summary_markdown, tax_file

    frames = load_frames(runs_in(run_dirs))
    names = [text(r.part("scenario").get("name")) or "" for r in frames.runs]
    # Named after the run folders as the user gave them, never after the run ids stored
    # inside them (a stored run id of "../../x" named a folder outside reports/).
    folders = [Path(r.dir).resolve().name for r in frames.runs]
    directory = Path(out) if out else default_directory(folders, names)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--out {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    model = build_model(frames)
    report = Report(directory)

    def write(name: str, text: str) -> None:
        path = fresh(directory / name)
        path.write_text(text)
        report.files.append(path)

    write(SUMMARY_CSV, summary_csv(model))
    # Enough runs of one scenario form a history: `bench history`'s files, beside the rest.
    history_png = None
    if model.history is not None:
        report.files += write_history(model.history, directory)
        history_png = directory / HISTORY_FILES[2]
    else:
        for name in HISTORY_FILES:  # none stale from an older report
            (directory / name).unlink(missing_ok=True)
    if model.history_note is not None:
        report.notes.append(model.history_note)
    # Every workload figure unrounded, when the newest run ran workloads.
    if model.workloads is not None:
        write(WORKLOADS_CSV, model.workloads.numbers.to_csv(index=False))
    else:
        (directory / WORKLOADS_CSV).unlink(missing_ok=True)
    write(SUMMARY_MD, summary_markdown(model))
    write(CLASSIC_MD, classic_markdown(model))
    # Only runs that boot one guest both through libvirt and directly have one.
    if model.tax is not None:
        write(TAX_MD, tax_file(model.tax))
    else:
        (directory / TAX_MD).unlink(missing_ok=True)  # no stale table from an older report

    drawn, skipped = [], []
    for name, draw in plots.PLOTS.items():
        try:
            fig = draw(frames)
        except plots.NotApplicable:
            (directory / name).unlink(missing_ok=True)
            continue
        except plots.NoData as e:
            skipped.append((name, str(e)))
            report.notes.append(f"{name} not drawn: {e}")
            (directory / name).unlink(missing_ok=True)  # no stale plot from an older report
            continue
        path = fresh(directory / name)
        fig.savefig(path, format="png", bbox_inches="tight")  # keeps outside legends
        drawn.append((name, CAPTIONS[name], path))
        report.files.append(path)
    write(REPORT_HTML, render_html(model, drawn, skipped, history_png))
    report.notes += model.notes
    return report
