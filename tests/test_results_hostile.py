"""A run folder from elsewhere: links, FIFOs, huge lines and bad rows, refused in one
line and in bounded time, never followed, never silently dropped.

Everything is made under tmp_path; links point at dummy files this test wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.results import MAX_LINE_BYTES, load_run
from tests.test_report import quickstart_run


@pytest.fixture
def run(tmp_path) -> Path:
    return quickstart_run(tmp_path / "results")


def test_a_sound_run_loads(run):
    assert len(load_run(run).samples) == 12


@pytest.mark.parametrize("name", ["samples.jsonl", "steps.jsonl", "metadata.json"])
def test_a_run_file_that_is_a_link_is_refused(tmp_path, run, name):
    dummy = tmp_path / "dummy"
    dummy.write_bytes((run / name).read_bytes())  # would load, if it were followed
    (run / name).unlink()
    (run / name).symlink_to(dummy)
    with pytest.raises(UsageError, match="symbolic link"):
        load_run(run)


def test_a_fifo_is_refused_without_blocking(run):
    # Through a subprocess with a timeout: a read that blocks on the FIFO would hang.
    (run / "samples.jsonl").unlink()
    os.mkfifo(run / "samples.jsonl")
    p = subprocess.run(
        [sys.executable, "-c", f"from bench.results import load_run; load_run({str(run)!r})"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert p.returncode != 0 and "not a regular file" in p.stderr


def test_a_bad_line_in_the_middle_stops_the_read_naming_it(run):
    lines = (run / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[3] = "{not json\n"
    (run / "samples.jsonl").write_text("".join(lines))
    with pytest.raises(UsageError, match=r"samples\.jsonl:4: not a JSON record"):
        load_run(run)


def test_a_torn_last_line_is_left_out(run):
    text = (run / "samples.jsonl").read_text()
    last = text.splitlines()[-1]
    (run / "samples.jsonl").write_text(text + last[: len(last) // 2])
    assert len(load_run(run).samples) == 12


def test_a_complete_but_bad_last_line_is_not_a_torn_one(run):
    with (run / "samples.jsonl").open("a") as f:
        f.write("{cut\n")
    with pytest.raises(UsageError, match=r"samples\.jsonl:13"):
        load_run(run)


def test_an_overlong_line_is_refused_without_reading_it_whole(run):
    sample = json.loads((run / "samples.jsonl").read_text().splitlines()[0])
    sample["console_tail"] = "x" * (MAX_LINE_BYTES + 10)
    with (run / "samples.jsonl").open("a") as f:
        f.write(json.dumps(sample) + "\n")
    with pytest.raises(UsageError, match=r"samples\.jsonl:13: a line longer than"):
        load_run(run)


def test_oversized_metadata_is_refused(run):
    meta = json.loads((run / "metadata.json").read_text())
    meta["padding"] = "x" * (17 * 2**20)
    (run / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="larger than 16 MiB"):
        load_run(run)
