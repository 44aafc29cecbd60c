"""A results folder from elsewhere cannot choose where `bench report` writes.

The report's folder used to be named after the run id stored in metadata.json, so a
run id of "../../x" or "/abs" wrote summary files, report.html and plots outside
reports/ (and removed same-named plots there). Every path here is under tmp_path; the
symbolic links point at dummy files and folders the test made.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.model.errors import UsageError
from bench.report import build_report
from tests.test_report import quickstart_run


def with_stored_run_id(run: Path, run_id: str) -> Path:
    meta = json.loads((run / "metadata.json").read_text())
    meta["run_id"] = run_id
    (run / "metadata.json").write_text(json.dumps(meta))
    return run


@pytest.mark.parametrize("stored", ["../../escaped", "/tmp/bench-escaped-abs", "../x/../y"])
def test_the_report_folder_is_named_after_the_run_folder_not_its_stored_id(
    tmp_path, monkeypatch, stored
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run = with_stored_run_id(quickstart_run(tmp_path / "results"), stored)
    report = build_report([run])
    assert report.directory == Path("reports") / run.name
    for f in report.files:
        assert f.resolve().is_relative_to(work / "reports" / run.name), f
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/bench-escaped-abs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "work"]


def test_a_symlinked_report_folder_is_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    elsewhere = tmp_path / "elsewhere"
    for d in (work, elsewhere, work / "reports"):
        d.mkdir()
    monkeypatch.chdir(work)
    run = quickstart_run(tmp_path / "results")
    (work / "reports" / run.name).symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symbolic link"):
        build_report([run])
    assert list(elsewhere.iterdir()) == []


def test_a_symlinked_reports_root_is_refused(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "reports").symlink_to(elsewhere)
    monkeypatch.chdir(work)
    with pytest.raises(UsageError, match="symbolic link"):
        build_report([quickstart_run(tmp_path / "results")])
    assert list(elsewhere.iterdir()) == []


def test_a_link_planted_in_the_report_folder_is_replaced_not_written_through(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run = quickstart_run(tmp_path / "results")
    folder = work / "reports" / run.name
    folder.mkdir(parents=True)
    dummy = tmp_path / "dummy.txt"
    dummy.write_text("keep me")
    (folder / "summary.md").symlink_to(dummy)
    build_report([run])
    assert dummy.read_text() == "keep me"
    assert not (folder / "summary.md").is_symlink()


def test_scenario_names_that_are_not_folder_names_are_left_out(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    a = quickstart_run(tmp_path / "results", run_id="q-20261129-000000-aaaa")
    b = quickstart_run(
        tmp_path / "results",
        run_id="q-20261129-000000-bbbb",
        scenario={"name": "../../evil", "platforms": []},
    )
    report = build_report([a, b])
    assert report.directory.parent == Path("reports")
    assert report.directory.name.startswith("quickstart-2runs-")
