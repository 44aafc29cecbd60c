"""One report model, one renderer per format (issue 22): bench.report.model computes each
section once, and the renderers only lay it out (they compute nothing: with every
computing function made to fail, they still render what `bench report` wrote)."""

from __future__ import annotations

import pytest

from bench.judge import comparability
from bench.report import CAPTIONS, build_report, runs_in, tables, tax
from bench.report.frame import load_frames
from bench.report.model import build_model
from bench.report.render_csv import summary_csv
from bench.report.render_html import render_html
from bench.report.render_markdown import classic_markdown, summary_markdown
from tests.conftest import REPO

RUNS = REPO / "tests" / "fixtures" / "report-runs"
# What the model computes; the renderers may call tables' display helpers
# (summary_display, human_column, history_table) and nothing else of it.
COMPUTING = (
    "any_tcg",
    "classic_table",
    "n_differs_note",
    "memory_disagreements",
    "host_differences",
    "mismatches",
    "run_accels",
    "run_changes",
    "compare_verdict",
    "run_history",
    "run_metadata",
)


def counting(monkeypatch, module, name, calls):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


# (runs, hosts in them, whether the runs share a group to judge a change in)
@pytest.mark.parametrize(
    "folder,hosts,judged",
    [
        ("quickstart", 2, False),
        ("multi-host", 2, False),
        ("spectrum", 1, False),
        ("history", 1, True),
    ],
)
def test_each_section_is_computed_once(monkeypatch, tmp_path, folder, hosts, judged):
    calls: dict[str, int] = {}
    for name in COMPUTING:
        counting(monkeypatch, tables, name, calls)
    counting(monkeypatch, tax, "libvirt_tax", calls)
    build_report([RUNS / folder], tmp_path / "out")
    # One table per host; every other section once; the runs' mismatches (which
    # host differences, compare's verdict and the history's warnings share) once,
    # so tables.mismatches (for a caller without them) is never needed.
    assert calls.pop("classic_table") == calls.pop("n_differs_note") == hosts
    calls.pop("run_accels")  # the mismatches' input, and compare's when it judges
    assert "mismatches" not in calls
    skip = ("classic_table", "n_differs_note", "mismatches", "run_accels")
    expected = {name: 1 for name in COMPUTING if name not in skip}
    if not judged:
        expected.pop("compare_verdict")  # no change between runs to judge
    assert calls == {**expected, "libvirt_tax": 1}


def test_the_runs_mismatches_are_found_once(monkeypatch, tmp_path):
    # Two runs whose hosts differ in what must match: compare gives no verdict, so
    # the only search for mismatches is the model's.
    calls: dict[str, int] = {}
    counting(monkeypatch, comparability, "mismatches", calls)
    build_report([RUNS / "quickstart"], tmp_path / "out")
    assert calls == {"mismatches": 1}


def test_renderers_compute_nothing(monkeypatch, tmp_path):
    out = tmp_path / "out"
    report = build_report([RUNS / "quickstart"], out)
    model = build_model(load_frames(runs_in([RUNS / "quickstart"])))

    def refuse(*args, **kwargs):
        raise AssertionError("a renderer computed a section")

    for name in COMPUTING:
        monkeypatch.setattr(tables, name, refuse)
    monkeypatch.setattr(tax, "libvirt_tax", refuse)
    assert summary_csv(model) == (out / "summary.csv").read_text()
    assert summary_markdown(model) == (out / "summary.md").read_text()
    assert classic_markdown(model) == (out / "containers-vs-vms.md").read_text()
    drawn = [(p.name, CAPTIONS[p.name], p) for p in report.files if p.name in CAPTIONS]
    skipped = [tuple(n.split(" not drawn: ", 1)) for n in report.notes if " not drawn: " in n]
    page = render_html(model, drawn, skipped)
    assert "These runs differ in host, engine or scenario" in page
    # The page as written, its images aside (their bytes are the same files').
    assert page == (out / "report.html").read_text()
