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
from typer.testing import CliRunner

from bench import SCHEMA_VERSION, cli
from bench.model.errors import UsageError
from bench.model.records import Sample
from bench.model.results import MAX_LINE_BYTES, RunWriter, load_run
from bench.report import build_report
from tests.test_report import quickstart_run


@pytest.fixture
def run(tmp_path) -> Path:
    return quickstart_run(tmp_path / "results")


def bench_run(tmp_path: Path) -> Path:
    """A run of the current schema, as bench's own writer writes it: one sample."""
    writer = RunWriter(tmp_path / "results" / "w-20261205-000000-00aa", "w-20261205-000000-00aa")
    writer.start({"scenario": {"name": "w", "platforms": []}})
    writer.add_samples([Sample(platform="c", kind="container", n=1, ok=True, ready_s=0.2)])
    writer.finish("complete")
    assert load_run(writer.dir).metadata["schema_version"] == SCHEMA_VERSION
    return writer.dir


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
        [sys.executable, "-c", f"from bench.model.results import load_run; load_run({str(run)!r})"],
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


def test_a_torn_last_line_is_left_out_with_a_note(run, tmp_path):
    text = (run / "samples.jsonl").read_text()
    last = text.splitlines()[-1]
    (run / "samples.jsonl").write_text(text + last[: len(last) // 2])
    loaded = load_run(run)
    assert len(loaded.samples) == 12
    assert loaded.notes == [
        f"{run / 'samples.jsonl'}:13: a torn last line (the writer stopped in it) left out"
    ]
    assert loaded.notes[0] in build_report([run], tmp_path / "report").notes


@pytest.mark.parametrize("columns", [False, True])
def test_a_torn_last_line_of_the_current_schema_is_left_out(tmp_path, columns):
    # Current-schema lines are validated straight from their JSON, into row dicts or into
    # columns (what `bench report` reads): the same rules.
    run = bench_run(tmp_path)
    text = (run / "samples.jsonl").read_text()
    (run / "samples.jsonl").write_text(text + text[: len(text) // 2])
    loaded = load_run(run, columns=columns)
    assert len(loaded.frame) == 1 and "torn last line" in loaded.notes[0]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("{not json", r"samples\.jsonl:2: not a JSON record"),
        ('{"platform": "c", "n": "many"}', r"samples\.jsonl:2: stored records do not match"),
    ],
)
@pytest.mark.parametrize("columns", [False, True])
def test_a_bad_line_of_the_current_schema_is_named(tmp_path, line, said, columns):
    run = bench_run(tmp_path)
    with (run / "samples.jsonl").open("a") as f:
        f.write(line + "\n" + (run / "samples.jsonl").read_text())
    with pytest.raises(UsageError, match=said):
        load_run(run, columns=columns)


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


def test_report_notes_reach_the_terminal_as_text(run, tmp_path):
    # The status is read from metadata.json and quoted in a note: no terminal escape
    # (a window title, a colour) and no rich markup from it reaches the terminal.
    meta = json.loads((run / "metadata.json").read_text())
    meta["status"] = "done\x1b]0;owned\x07 [red]x[/red]"
    (run / "metadata.json").write_text(json.dumps(meta))
    p = CliRunner().invoke(cli.app, ["report", str(run), "--out", str(tmp_path / "report")])
    assert p.exit_code == 0, p.output
    assert "\x1b" not in p.output
    assert "is done\\x1b]0;owned\\x07 [red]x[/red]: its report" in " ".join(p.output.split())
