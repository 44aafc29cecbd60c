"""`bench report` of a CI job's runs: the History section (bench.judge.history's verdict, table
and plot) when there are enough runs of one scenario, one line saying why not otherwise.
Runs are written in bench's format by the history tests' own writer."""

from __future__ import annotations

import base64
import json

import pytest

from bench.judge import history
from bench.report import build_report
from bench.report.render_json import verdict_json
from tests.test_history import write_history

PNG = b"\x89PNG\r\n\x1a\n"


# 60 runs make 120 legend entries: the plots must still lay out (no matplotlib warning).
@pytest.mark.filterwarnings("error::UserWarning")
def test_a_synthetic_history_is_judged_in_the_report(tmp_path):
    # 18 runs, 1% drift, +10% from run index 16 (the 17th run): 2 runs of a slower
    # segment, found by the job of run 17 or 18, so new enough to fail the job. N=1's
    # levels (4 instances a run) are noisier than the drift: seed 1 is one where both
    # series place the step at its run (how soon and how exactly a step is found is
    # benchmarks/history_gate.py's to measure).
    results = tmp_path / "results"
    ids = write_history(results, 18, step_at=16, seed=1, drift=0.01)
    out = tmp_path / "report"
    report = build_report([results / i for i in ids], out)

    html = (out / "report.html").read_text()
    section = html[html.index("<h2>History</h2>") : html.index("<h2>Summary per run")]
    # The change is named by its run id and its number on the plot's axis, in words.
    assert ids[16] in section and "from run 17" in section
    assert "Regression in container N=1, container N=4" in section
    assert section.count("a regression.</li>") == 2
    # The plot is the one history --out writes, beside the report and embedded in it.
    png = out / "history.png"
    assert png in report.files and png.read_bytes()[:8] == PNG
    assert f"base64,{base64.b64encode(png.read_bytes()).decode()}" in section
    summary = (out / "summary.md").read_text()
    assert "## bench history: ready_s, 18 runs" in summary and ids[16] in summary
    assert "![history](history.png)" in summary
    assert any(n.startswith("history of 18 runs: Regression") for n in report.notes)

    # The same verdict as `bench history` (through its index) gives for these runs.
    doc = json.loads((out / "history.json").read_text())
    direct = json.loads(verdict_json(history.read_history([results])))
    assert doc["series"] == direct["series"] and doc["exit_code"] == direct["exit_code"] == 1
    for s in doc["series"]:
        assert [c["run_id"] for c in s["change_points"]][-1] == ids[16]
        assert 0.05 < s["change_points"][-1]["change"] < 0.2  # +10%, measured in noise


def test_two_runs_have_one_line_and_no_stale_history(tmp_path):
    results = tmp_path / "results"
    ids = write_history(results, 8)
    out = tmp_path / "report"
    build_report([results / i for i in ids], out)
    assert (out / "history.png").is_file()

    # The same folder, now a report of two runs: no section, no history files left.
    report = build_report([results / i for i in ids[:2]], out)
    html = (out / "report.html").read_text()
    assert "<h2>History</h2>" not in html
    assert "No history: 2 runs of ci-startup; <code>bench history</code> judges 8 runs" in html
    assert "## History\n\nNo history: 2 runs" in (out / "summary.md").read_text()
    for name in ("history.md", "history.json", "history.png"):
        assert not (out / name).exists()
        assert out / name not in report.files


def test_runs_of_several_scenarios_have_no_history(tmp_path):
    results = tmp_path / "results"
    a = write_history(results, 8, scenario="ci-startup")
    b = write_history(results, 8, scenario="other", seed=9)
    out = tmp_path / "report"
    build_report([results / i for i in a + b], out)
    html = (out / "report.html").read_text()
    assert "<h2>History</h2>" not in html
    assert "the runs are of 2 scenarios (ci-startup, other)" in html
    assert not (out / "history.png").exists()


def test_one_run_says_nothing_of_a_history(tmp_path):
    results = tmp_path / "results"
    ids = write_history(results, 1)
    out = tmp_path / "report"
    build_report([results / ids[0]], out)
    assert "history" not in (out / "report.html").read_text().lower()
    assert "history" not in (out / "summary.md").read_text().lower()


def test_a_results_folder_stands_for_its_runs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    ids = write_history(results, 10, step_at=6, step=0.5, seed=2, drift=0.01)
    (results / "not-a-run").mkdir()  # a stray folder is no run: left out
    monkeypatch.chdir(tmp_path)
    report = build_report([results])
    assert report.directory.name.startswith("ci-startup-10runs-")
    html = (report.directory / "report.html").read_text()
    assert html.index(ids[0]) < html.index(ids[-1])  # oldest first: the last is current
    doc = json.loads((report.directory / "history.json").read_text())
    assert doc["runs"] == 10 and [p["run_id"] for p in doc["series"][0]["points"]] == ids
    # The report reads the runs; it writes no index into the results folder.
    assert not (results / history.INDEX_NAME).exists()


def test_a_setting_that_changed_is_named_at_its_run(tmp_path):
    # As in the real ci-startup history: the command changed where the series steps.
    results = tmp_path / "results"
    ids = write_history(results, 10, step_at=6, step=0.5, seed=2, drift=0.01)
    for k, i in enumerate(ids):  # a run stores its whole scenario, unset keys as null
        meta = json.loads((results / i / "metadata.json").read_text())
        command = "sleep 0.03; init" if k >= 6 else None
        meta["scenario"]["platforms"] = [{"name": "container", "command": command}]
        (results / i / "metadata.json").write_text(json.dumps(meta))
    out = tmp_path / "report"
    build_report([results / i for i in reversed(ids)], out)  # numbered by start, not order
    warning = (
        "the runs differ in what must match (scenario.platforms.container.command, changing "
        "at run 7): a change point may come from that alone."
    )
    assert warning in (out / "summary.md").read_text()
    assert warning in (out / "report.html").read_text()
    assert warning in json.loads((out / "history.json").read_text())["warnings"]
