"""Same inputs, same outputs (issue 22): what `bench report`, `compare`, `ab --analyse`
and `history` print and write for the stored runs of tests/fixtures/report-runs is what
they printed and wrote when tests/fixtures/report-golden was recorded, byte for byte
(report.html's embedded images and the PNGs aside: their pixels are matplotlib's).
benchmarks/report_identical.py runs the same cases, and more on a real results folder,
as separate processes."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import report_identical  # noqa: E402  (benchmarks/ is not a package)

GOLDEN = REPO / "tests" / "fixtures" / "report-golden"


def test_reports_and_verdicts_are_the_ones_kept(tmp_path):
    report_identical.record(tmp_path / "now", None, in_process=True)
    problems = report_identical.differences(GOLDEN, tmp_path / "now", text_only=True)
    assert not problems, "\n".join(problems)
