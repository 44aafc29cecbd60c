"""HTML: report.html, one self-contained page (PNGs embedded as base64, no external
assets) that a reader opens from a CI artifact or a mail, on a phone or a desktop.

The page shows what bench.report.model computed, section by section, as the Markdown
files do; here are only its layout (CSS, tables in scrolling boxes, notes in boxes,
digests shortened with the whole value on hover) and the escaping: every word comes
from a results folder someone else may have written, so all of it is escaped.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import tables

if TYPE_CHECKING:
    import pandas as pd

    from bench.judge.history import History
    from bench.report.model import Changes, ReportModel
    from bench.report.tax import Tax

# Readable from a phone (400 px) to a desktop (1400 px): wide tables scroll inside their
# own box (.scroll), never the page; long words (ids, paths) break; plots shrink.
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.4; overflow-wrap: anywhere; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em;
        overflow-wrap: normal; }
td { max-width: 28em; }
abbr { text-decoration: underline dotted; cursor: help; }
@media (max-width: 600px) { body { margin: 1em auto; padding: 0 0.6em; }
  h1 { font-size: 1.25em; } table { font-size: 0.8em; } }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
table.numbers td { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.6em 1em; }
.anomaly { background: #fde8e8; border-left: 4px solid #c0392b; padding: 0.6em 1em; }
.diff { background: #fde8e8; border-left: 4px solid #c0392b; padding: 0.6em 1em; }
.skipped { color: #666; font-style: italic; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; }
.meta { display: flex; gap: 2em; flex-wrap: wrap; }
.meta > div { min-width: 0; max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2em; }
.nowrap { white-space: nowrap; }
"""


def render_html(
    model: ReportModel,
    plots: list[tuple[str, str, Path]],
    skipped: list[tuple[str, str]],
    history_png: Path | None = None,
) -> str:
    """`plots`: (file name, caption, PNG path) drawn; `skipped`: (file name, why not);
    `history_png`: the history's plot (bench.judge.history.plot), when the model has one."""
    runs = ", ".join(model.run_ids)
    body = [f"<h1>bench report: {escape(runs)}</h1>"]
    if model.tcg:
        body.append(f'<p class="note"><b>Note:</b> {_text(tables.TCG_NOTE)}</p>')
    body += [f'<p class="note"><b>Note:</b> {_text(n)}</p>' for n in model.readiness]
    for run_id, text in model.ready_means.items():
        where = f"run {run_id}: " if model.multi else ""
        body.append(f'<p class="note">{_text(where + text)}.</p>')
    body += _per_run_box(
        model.multi,
        "anomaly",
        "Phase anomalies",
        "one phase of some instances' boot took far longer than the rest of their platform "
        "or than their guest's own boot; their times below are not representative (see "
        "boot-phases.png and the timeline).",
        model.anomalies,
    )
    diff = model.host_differences
    if diff is not None:
        body += [
            '<div class="diff"><b>These runs differ in host, engine or scenario</b>: '
            "differences in the numbers below may come from these, not only from what was "
            f"measured. {_text(tables.POLICY_NOTE)}",
            _table(diff),
            "</div>",
        ]
    body += [
        "<h2>Containers vs VMs, measured</h2>",
        f"<p>{_text(tables.COLUMNS_NOTE)} "
        f"{_text(tables.rows_note([c.table for c in model.classic]))}</p>",
    ]
    for classic in model.classic:
        if classic.host is not None:
            body.append(f"<h3>On host {escape(classic.host)}</h3>")
        body.append(_classic(classic.table))
        if classic.n_differs:
            body.append(f'<p class="note">{_text(classic.n_differs)}</p>')
    if model.workloads is not None:
        body += _workloads(model)
    if model.neighbours is not None:
        body += _neighbours(model)
    if model.boundary is not None:
        body += [
            f"<h2>Isolation boundary, as read: {escape(model.boundary.run_id)}</h2>",
            f"<p>{_text(tables.boundary_note(model.boundary.read, model.boundary.capped))}</p>",
            _table(model.boundary.rows, index=False),
        ]
    body += _memory_views(model)
    body += _tax(model.tax)
    body += _changes(model.changes)
    body += _history(model.history, model.no_history, history_png)
    drop = ("run",) + (() if model.multi_host else ("host",))
    body += [
        "<h2>Summary per run, platform and N</h2>",
        "<p>Times in seconds, sizes in MiB; ready times over successful instances only; "
        "N: instances started together; n: instances summarised (ready ones).</p>",
        _table(
            _human(tables.summary_display(model.table, drop=() if model.multi else drop)),
            index=False,
            classes="numbers",
        ),
        "<h2>Plots</h2>",
    ]
    for _name, caption, path in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(
            f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_text(caption)}</figcaption></figure>"
        )
    for name, why in skipped:
        body.append(f'<p class="skipped">{escape(name)} not drawn: {_text(why)}</p>')
    body.append("<h2>Runs</h2>")
    for run in model.runs:
        body += [
            f"<h3>{escape(run.run_id)}</h3>",
            '<div class="meta">',
            f"<div><b>run and host</b>{_facts(run.host)}</div>",
            f"<div><b>engines per platform</b>{_facts(run.engines)}</div>",
            "</div>",
        ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>bench report: {escape(runs)}</title><style>{CSS}</style></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )


def _workloads(model: ReportModel) -> list[str]:
    from bench.report.workloads import WORKLOADS_NOTE

    view = model.workloads
    assert view is not None
    section = view.section
    out = [
        f"<h2>Workloads: runtime overhead against native: {escape(section.run_id)}</h2>",
        f"<p>{_text(WORKLOADS_NOTE)}</p>",
    ]
    if section.native is None:
        out.append('<p class="note">No native platform in this run: no ratios.</p>')
    out.append(_table(view.table, index=False))
    if section.failures:
        out.append("<p>Workload runs that gave no figures:</p><ul>")
        out += [f"<li>{_text(line)}</li>" for line in section.failures]
        out.append("</ul>")
    return out


def _neighbours(model: ReportModel) -> list[str]:
    from bench.report.neighbours import NEIGHBOURS_NOTE

    view = model.neighbours
    assert view is not None
    section = view.section
    out = [
        f"<h2>Isolation: noisy neighbours: {escape(section.run_id)}</h2>",
        f"<p>{_text(NEIGHBOURS_NOTE)}</p>",
    ]
    if len(view.table):
        out.append(_table(view.table, index=False))
    if section.failures:
        out.append("<p>Neighbour runs that gave no figure:</p><ul>")
        out += [f"<li>{_text(line)}</li>" for line in section.failures]
        out.append("</ul>")
    return out


def _memory_views(model: ReportModel) -> list[str]:
    """Why the host view and PSS disagree, where they do (what `bench run` prints)."""
    return _per_run_box(
        model.multi,
        "note",
        "Memory views disagree",
        "the host view (drop of MemAvailable) and the process view (PSS) measure different "
        "things; where they differ by more than a quarter, here is why.",
        model.memory_disagreements,
    )


def _per_run_box(
    multi: bool, css: str, title: str, text: str, found: dict[str, list[str]]
) -> list[str]:
    """A boxed list of notes per run (prefixed by the run id when there are several);
    nothing when there is no note."""
    if not found:
        return []
    out = [f'<div class="{css}"><b>{escape(title)}</b>: {escape(text)}<ul>']
    for run_id, lines in found.items():
        prefix = f"{escape(run_id)}: " if multi else ""
        out += [f"<li>{prefix}{_text(line)}</li>" for line in lines]
    return [*out, "</ul></div>"]


def _changes(changes: Changes | None) -> list[str]:
    """Several runs: the change of ready p50, and `bench compare`'s verdict where the
    runs are comparable."""
    if changes is None:
        return []
    out = [
        "<h2>Change between runs</h2>",
        "<p>Ready p50 per run (n: ready instances) and the last run's change against the "
        "first.</p>",
        _table(changes.table, index=False, classes="numbers"),
    ]
    if changes.verdict is not None:
        out += [
            "<h3>Verdict of <code>bench compare</code></h3>",
            _table(changes.verdict, index=False, classes="numbers"),
        ]
    out += [f'<p class="note">{_text(n)}</p>' for n in changes.notes]
    return out


def _history(history: History | None, why: str | None, png: Path | None) -> list[str]:
    """Enough runs of one scenario: `bench history`'s verdict in words, its table and
    its plot (`png`, drawn by bench.judge.history.plot as `bench history --out` draws it);
    else the one line saying why there is none."""
    if history is None or png is None:
        return [f'<p class="skipped">{_text(why)}</p>'] if why else []
    from bench.judge import history as h

    data = base64.b64encode(png.read_bytes()).decode("ascii")
    css = "diff" if history.exit_code == h.ExitCode.REGRESSION else "note"
    return [
        "<h2>History</h2>",
        f"<p>The runs as a series, as <code>bench history</code> judges them: "
        f"{escape(history.metric)} per run, {history.runs} runs. "
        f"{_text(history.explanation())}</p>",
        f'<div class="{css}"><b>{_text(history.verdict_in_words())}</b><ul>',
        *(f"<li>{_text(s.in_words(history.threshold))}</li>" for s in history.series),
        "</ul></div>",
        # Beside the verdict they qualify (a setting that changed where the series steps).
        *(f'<p class="note"><b>Warning:</b> {_text(w)}</p>' for w in history.warnings),
        _table(tables.history_table(history), index=False),
        f'<figure><img alt="{escape(h.CAPTION)}" src="data:image/png;base64,{data}">'
        f"<figcaption>history.png: {_text(h.CAPTION)}</figcaption></figure>",
    ]


def _tax(tax: Tax | None) -> list[str]:
    if tax is None:
        return []
    out = ["<h2>What libvirt adds, measured</h2>"]
    for section in tax.sections:
        out.append(f"<h3>{escape(section.heading)}</h3>")
        out += [_table(df, index=False, classes="numbers") for df in section.tables]
        out += [f'<p class="note">{_text(n)}</p>' for n in section.notes]
    return out


def _human(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns=tables.human_column)


def _table(df: pd.DataFrame, index: bool = True, classes: str | None = None) -> str:
    """A table in its own scrolling box: a wide table never widens the page."""
    html = df.to_html(index=index, border=0, na_rep="-", escape=True, classes=classes)
    return f'<div class="scroll">{html}</div>'


# A digest (sha256:…, a 64-hex image id or rootfs hash): shortened, full value on hover.
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{32,}$")


def _facts(df: pd.DataFrame) -> str:
    """Run, host and engine facts, with digests shortened to 12 hex digits (the whole
    value on hover)."""

    def cell(v: object) -> str:
        text = str(v)
        if _DIGEST.match(text):
            short = text.removeprefix("sha256:")[:12]
            return f'<abbr title="{escape(text)}"><code>{escape(short)}…</code></abbr>'
        return escape(text, quote=False)

    cells = df.astype(str).map(cell)
    cells.index = [escape(str(i), quote=False) for i in cells.index]
    cells.columns = [escape(str(c), quote=False) for c in cells.columns]
    return f'<div class="scroll">{cells.to_html(border=0, na_rep="-", escape=False)}</div>'


def _classic(df: pd.DataFrame) -> str:
    """The containers-vs-VMs table: "measured" heads the row names (not a row of its own),
    and what a cell has in parentheses stays on one line: a kernel release such as
    6.1.0-57-amd64 must not break at its hyphens in a narrow column."""
    cells = df.astype(str).map(
        lambda v: re.sub(
            r"\(([^()]*)\)", r'(<span class="nowrap">\1</span>)', escape(v, quote=False)
        )
    )
    # Element content only: like pandas' own escaping, quotes stay as they are.
    cells.index = [escape(str(i), quote=False) for i in cells.index]
    cells.columns = [escape(str(c), quote=False) for c in cells.columns]
    cells = cells.rename_axis(index=None, columns=escape(str(df.index.name or ""), quote=False))
    return f'<div class="scroll">{cells.to_html(border=0, na_rep="-", escape=False)}</div>'


def _text(text: str) -> str:
    """Escaped text, with `backticked` words as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))
