"""The terminal: what `bench report`, `bench compare`, `bench ab` and `bench history`
print, and on which stream.

stdout carries what a script or a CI step keeps: the verdict (Markdown, or JSON with
--json) and, for `bench report`, the files written then the report's folder as the
last line. stderr carries what a person reads while it runs: warnings and notes, in
colour. Text from a results folder (run ids, platform names, notes) is shown as text,
never as rich markup or terminal escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from bench.report import Report


def print_report(report: Report, err: Console) -> None:
    """The report's notes on stderr; its files, then its folder (the last line), on
    stdout."""
    from rich.markup import escape

    from bench.machines.console import visible

    for note in report.notes:
        # Notes quote run ids, statuses and platform names from a results folder: shown
        # as text, never as markup or terminal escapes.
        err.print(f"[yellow]note:[/] {escape(visible(note))}", soft_wrap=True)
    for f in report.files:
        print(f)
    print(report.directory)


def print_warnings(warnings: Sequence[str], err: Console, as_text: bool = False) -> None:
    """A verdict's warnings on stderr; `as_text`: escaped from rich markup (those that
    quote a setting's value as stored)."""
    from rich.markup import escape

    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w) if as_text else w}", soft_wrap=True)


def print_verdict(markdown: str, json_text: str | None) -> None:
    """The verdict on stdout: its JSON when --json asked for it, else its Markdown."""
    print(json_text if json_text is not None else markdown, end="")
