"""report.html: one self-contained file (PNGs embedded as base64, no external assets)."""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path
from typing import Any

from bench.report import tables
from bench.report.frame import Frames

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
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
code { background: #f4f4f4; padding: 0 0.2em; }
.nowrap { white-space: nowrap; }
"""


def render_html(
    frames: Frames,
    plots: list[tuple[str, str, Path]],
    skipped: list[tuple[str, str]],
    tax: Any = None,
) -> str:
    """`plots`: (file name, caption, PNG path) drawn; `skipped`: (file name, why not);
    `tax`: bench.report.tax.Tax when the runs measured one guest via libvirt and directly."""
    runs = ", ".join(r.run_id for r in frames.runs)
    body = [f"<h1>bench report: {escape(runs)}</h1>"]
    if tables.any_tcg(frames):
        body.append(f'<p class="note"><b>Note:</b> {_text(tables.TCG_NOTE)}</p>')
    odd = tables.anomalies(frames)
    if odd:
        body.append(
            '<div class="anomaly"><b>Phase anomalies</b>: one phase of some instances\' '
            "boot took far longer than the rest of their platform or than their guest's own "
            "boot; their times below are not representative.<ul>"
        )
        for run_id, lines in odd.items():
            prefix = f"{escape(run_id)}: " if frames.multi else ""
            body += [f"<li>{prefix}{escape(line)}</li>" for line in lines]
        body.append("</ul></div>")
    diff = tables.host_differences(frames)
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
        f"<p>{_text(tables.COLUMNS_NOTE)} {_text(tables.ROWS_NOTE)}</p>",
        _classic(tables.classic_table(frames)),
        *_tax(tax),
        "<h2>Summary per run, platform and N</h2>",
        "<p>Times in seconds, sizes in MiB; ready times over successful instances only.</p>",
        _table(
            tables.summary_display(frames.table, drop=() if frames.multi else ("run", "host")),
            index=False,
            classes="numbers",
        ),
        "<h2>Plots</h2>",
    ]
    for _name, caption, path in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(
            f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    for name, why in skipped:
        body.append(f'<p class="skipped">{escape(name)} not drawn: {escape(why)}</p>')
    body.append("<h2>Runs</h2>")
    for run_id, host_df, engines_df in tables.run_metadata(frames):
        body += [
            f"<h3>{escape(run_id)}</h3>",
            '<div class="meta">',
            f"<div><b>run and host</b>{_table(host_df)}</div>",
            f"<div><b>engines per platform</b>{_table(engines_df)}</div>",
            "</div>",
        ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>bench report: {escape(runs)}</title><style>{CSS}</style></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )


def _tax(tax: Any) -> list[str]:
    if tax is None:
        return []
    from bench.report.tax import tax_sections

    out = ["<h2>What libvirt adds, measured</h2>"]
    for heading, frames, notes in tax_sections(tax.table, tax.pairs):
        out.append(f"<h3>{escape(heading)}</h3>")
        out += [_table(df, index=False, classes="numbers") for df in frames]
        out += [f'<p class="note">{_text(n)}</p>' for n in notes]
    return out


def _table(df: Any, index: bool = True, classes: str | None = None) -> str:
    return df.to_html(index=index, border=0, na_rep="-", escape=True, classes=classes)


def _classic(df: Any) -> str:
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
    return cells.to_html(border=0, na_rep="-", escape=False)


def _text(text: str) -> str:
    """Escaped text, with `backticked` words as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))
