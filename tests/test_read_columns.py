"""A run read by columns (what `bench report` does, issue 20's read bound): the same
statistics and notes as its row dicts, and a report of one run that never makes a row
dict of its samples."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from bench.judge.anomalies import anomaly_notes
from bench.judge.summary import summarize
from bench.model.records import Sample, StepRecord
from bench.model.results import Run, RunWriter, load_run
from bench.report import build_report
from tests.conftest import REPO

RUN_ID = "cols-20261205-000000-00cc"


def written_run(tmp_path):
    """Two hosts, a container and a VM, failures, an engine-bound VM create (an
    anomaly), values missing here and there: written by bench's own writer."""
    writer = RunWriter(tmp_path / "results" / RUN_ID, RUN_ID)
    writer.start(
        {
            "scenario": {"name": "cols", "platforms": [{"name": "c"}, {"name": "v"}]},
            "hosts": {"a": {"hostname": "a"}, "b": {"hostname": "b"}},
            "engines": {"c": {"host": "a"}, "v": {"host": "b"}},
        }
    )
    step = 0
    for platform, kind, host in (
        ("c", "container", "a"),
        ("v", "vm", "b"),
        ("c", "container", "b"),
    ):
        for n in (1, 4, 8):
            vm = kind == "vm"
            samples = []
            for i in range(n):
                ok = (i + n) % 5 != 0
                create = (43.0 if vm and n == 8 else 0.02) + i / 1000
                samples.append(
                    Sample(
                        run_id=RUN_ID, step=step, platform=platform, backend="x", kind=kind,
                        host=host, n=n, index=i, name=f"i{i}", ok=ok,
                        failure=None if ok else "timeout", error=None if ok else "late",
                        create_s=create, start_s=create + 0.01,
                        ready_s=(create + 2.6 + i / 10 if vm else 0.15 + i / 100) if ok else None,
                        guest_uptime_s=2.5 if vm else 9000.0,
                        accel="tcg" if vm else None,
                        pss_bytes=None if i == 1 else 14_000_000 + i,
                    )
                )  # fmt: skip
            writer.add_samples(samples)
            writer.add_step(
                StepRecord(
                    run_id=RUN_ID, step=step, platform=platform, kind=kind, host=host, n=n,
                    failures=sum(not s.ok for s in samples), host_drop_per_instance_bytes=2e7,
                )
            )  # fmt: skip
            step += 1
    writer.finish("complete")
    return writer.dir


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_columns_give_the_statistics_and_notes_of_the_rows(tmp_path):
    d = written_run(tmp_path)
    rows, cols = load_run(d), load_run(d, columns=True)
    by_rows = summarize(rows.samples, rows.steps)
    by_cols = summarize(cols.columns, cols.steps)
    by_frame = summarize(cols.frame, cols.steps)
    assert len(by_rows) == 9 and [r["host"] for r in by_rows][:3] == ["a"] * 3
    for x, y, z in zip(by_rows, by_cols, by_frame, strict=True):
        assert x.keys() == y.keys() == z.keys()
        assert all(same(x[k], y[k]) and same(x[k], z[k]) for k in x), (x, y, z)
    notes = anomaly_notes(rows.samples)
    assert notes and "cannot explain" in notes[0]
    assert anomaly_notes(cols.columns) == anomaly_notes(cols.frame) == notes
    assert cols.platforms_recorded == rows.platforms_recorded == {"c": "container", "v": "vm"}


def test_a_run_read_by_columns_gives_its_rows_exactly_when_asked(tmp_path):
    d = written_run(tmp_path)
    assert load_run(d, columns=True).samples == load_run(d).samples


def test_a_report_of_one_run_makes_no_row_dict_of_its_samples(tmp_path, monkeypatch):
    d = written_run(tmp_path)

    def refused(self):
        raise AssertionError("the report asked for the samples as row dicts")

    monkeypatch.setattr(Run, "samples", property(refused))
    out = tmp_path / "report"
    build_report([d], out)
    summary = (out / "summary.csv").read_text()
    assert summary.count("\n") == 10  # a header and 9 (host, platform, N) rows
    with pytest.raises(AssertionError, match="row dicts"):
        _ = load_run(d, columns=True).samples


def test_the_end_of_run_summary_never_imports_pandas(tmp_path):
    """`bench run` prints its summary and notes from the stored run: without pandas,
    whose import alone was most of a small run's end (benchmarks/overhead.py)."""
    d = written_run(tmp_path)
    code = (
        "import sys\n"
        "from bench.judge.anomalies import anomaly_notes\n"
        "from bench.model.results import load_run\n"
        "from bench.judge.summary import summarize\n"
        "from bench.report.views import summary_table\n"
        f"run = load_run({str(d)!r}, columns=True)\n"
        "rows = summarize(run.columns, run.steps)\n"
        "notes = anomaly_notes(run.columns)\n"
        "summary_table(rows, run.metadata, {})\n"
        "assert len(rows) == 9 and notes, (rows, notes)\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
