"""CSV: summary.csv, the report's one table for spreadsheets and scripts.

One row per (run, host, platform, N), every statistic bench.judge.summary declares, units in
the column names (sizes in MiB: `_mib`), numbers unrounded and missing ones empty:
the reading side (people) rounds in the Markdown and HTML renderers, never here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.report.model import ReportModel


def summary_csv(model: ReportModel) -> str:
    """summary.csv's text."""
    return model.summary.to_csv(index=False)
