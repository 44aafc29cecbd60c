"""bench history: runs written in bench's format (RunWriter), judged through the CLI."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
# The benchmark's run writer: the runs history_speed.py times are made the same way.
from history_speed import write_run  # noqa: E402

from bench import cli
from bench.judge import history  # noqa: E402
from bench.model.errors import UsageError
from bench.model.records import Sample


def write_history(
    root: Path,
    runs: int,
    step_at: int | None = None,
    step: float = 0.10,
    seed: int = 1,
    scenario: str = "ci-startup",
    drift: float = 0.07,
) -> list[str]:
    """`runs` runs of one scenario, an hour apart, 4 steps per N of 1 and 4 each; every
    run's level drifts by `drift` (log-sd); from run `step_at` on, `step` slower."""
    rng = np.random.default_rng(seed)
    ids = []
    for r in range(runs):
        run_id = f"{scenario}-202612{1 + r // 24:02d}-{r % 24:02d}0000-{r:08x}"
        level = math.log(0.1) + rng.normal(0, drift)
        if step_at is not None and r >= step_at:
            level += math.log1p(step)
        started_at = f"2026-12-{1 + r // 24:02d}T{r % 24:02d}:00:00Z"
        write_run(root, run_id, started_at, level, rng, repeats=4, scenario=scenario)
        ids.append(run_id)
    return ids


def invoke(*args: str):
    return CliRunner().invoke(cli.app, ["history", *args])


def test_a_ten_percent_step_at_run_40_is_named(tmp_path):
    # 1% drift between runs (plus each run's own sampling error): the step stands out
    # enough to be placed at its run; with 7% its place is uncertain by a few runs
    # (benchmarks/history_gate.py measures how soon it is found).
    results = tmp_path / "results"
    ids = write_history(results, 60, step_at=40, seed=3, drift=0.01)
    p = invoke(str(results))
    assert ids[40] in p.output, p.output
    doc = json.loads(invoke(str(results), "--json").stdout)
    named = [s for s in doc["series"] if ids[40] in [c["run_id"] for c in s["change_points"]]]
    assert named and all(0.05 < s["change_points"][-1]["change"] < 0.16 for s in named)
    # 20 runs on, the step is old news: shown, no longer failing every job.
    assert p.exit_code == 0 and doc["exit_code"] == 0
    # The online detector finds it within a few runs: the jobs of the RECENT runs from
    # the one that found it fail; later ones pass, and say so (the step stays shown).
    found = {c["found_by_run"] for s in named for c in s["change_points"][-1:]}
    assert len(found) == 1 and 41 <= min(found) <= 44, found
    f = found.pop()

    def exit_code(runs: int) -> int:
        return json.loads(invoke(*(str(results / i) for i in ids[:runs]), "--json").stdout)[
            "exit_code"
        ]

    assert exit_code(40) == 0
    assert [exit_code(runs) for runs in range(f, f + history.RECENT)] == [1] * history.RECENT
    assert exit_code(f + history.RECENT) == 0
    p = invoke(*(str(results / i) for i in ids[: f + history.RECENT]))
    assert f"no regression now (found by the job of run {f};" in p.output, p.output


def levels(rng: np.random.Generator, runs: int, step_at: int | None = None) -> list[float]:
    """A series' run levels as benchmarks/history_gate.py draws them: 7% run-to-run
    drift and 2% sampling error (log-sd), +10% from run `step_at` on."""
    z = math.log(0.1) + rng.normal(0, 0.07, runs) + rng.normal(0, 0.02, runs)
    if step_at is not None:
        z[step_at:] += math.log1p(0.10)
    return [float(x) for x in z]


def judged(z: list[float]) -> history.Series:
    points = [history.Point(f"r{i}", f"{i:05d}", x, 20) for i, x in enumerate(z)]
    return history.judge(history.Series("container", 1, points), 0.10)


def test_the_online_detector_finds_a_ten_percent_step_under_7_percent_drift():
    # Seed 2: a series the detector finds (it does 86% of the time within 8 runs,
    # benchmarks/history_gate.py). The CI job of each run judges the runs so far.
    z = levels(np.random.default_rng(2), 48, step_at=40)
    verdicts = [judged(z[:end]).verdict for end in range(40, 49)]
    assert verdicts[0] == history.NO_REGRESSION  # before the step
    assert history.REGRESSION in verdicts[1:]
    found = history.changes(z)
    assert found and found[-1].slower and 38 <= found[-1].start <= 42


def test_the_online_detector_is_quiet_on_a_flat_series():
    # 100 runs of 7% drift, no change (seed 4): no change point, and no job of any of its
    # runs exits 1 (1.7% of such jobs do, benchmarks/history_gate.py).
    z = levels(np.random.default_rng(4), 100)
    assert history.changes(z) == []
    assert {judged(z[:end]).verdict for end in range(history.MIN_RUNS, 101)} == {
        history.NO_REGRESSION
    }
    assert judged(z[: history.MIN_RUNS - 1]).verdict == history.TOO_SHORT


def test_a_faster_segment_is_the_level_a_later_slow_down_is_measured_against():
    # -30% after run 20, +10% after run 40, 1% drift: both found, the +10% against the
    # faster level (not against the mean of all runs before it, which would hide it).
    rng = np.random.default_rng(6)
    z = [math.log(0.1) + rng.normal(0, 0.01) for _ in range(48)]
    z = [
        x + (math.log(0.7) if i >= 20 else 0) + (math.log1p(0.1) if i >= 40 else 0)
        for i, x in enumerate(z)
    ]
    found = history.changes(z)
    assert [(c.start, c.slower) for c in found] == [(20, False), (40, True)]
    s = judged(z[:42])
    assert s.verdict == history.REGRESSION and 0.07 < (s.change or 0) < 0.13


def test_the_allowance_follows_the_threshold():
    # +10% after run 40, 1% drift: found at its run with a 10% threshold; with 100% the
    # allowance (0.3 of log 2, some 9 noise sds) exceeds the step (4 sds): never found.
    rng = np.random.default_rng(6)
    z = [
        math.log(0.1) + rng.normal(0, 0.01) + (math.log1p(0.1) if i >= 40 else 0) for i in range(60)
    ]
    assert [(c.start, c.slower) for c in history.changes(z, 0.10)] == [(40, True)]
    assert history.changes(z, 1.0) == []


def test_no_change_is_no_regression(tmp_path):
    write_history(tmp_path / "results", 60, seed=5)
    p = invoke(str(tmp_path / "results"))
    assert p.exit_code == 0, p.output
    assert "no regression" in p.output


def test_an_old_step_no_longer_fails_the_job(tmp_path):
    ids = write_history(tmp_path / "results", 40, step_at=20, step=0.3, drift=0.01)
    doc = json.loads(invoke(str(tmp_path / "results"), "--json").stdout)
    assert doc["exit_code"] == 0
    for s in doc["series"]:
        assert ids[20] in [c["run_id"] for c in s["change_points"]]
        assert s["verdict"] == "no regression"


def test_a_short_series_is_inconclusive(tmp_path):
    write_history(tmp_path / "results", 5)
    p = invoke(str(tmp_path / "results"))
    assert p.exit_code == 6, p.output
    assert "needs 8 runs" in p.output


def test_run_folders_and_a_scenario_filter(tmp_path):
    ids = write_history(tmp_path / "results", 12, scenario="ci-startup")
    write_history(tmp_path / "results", 3, scenario="other", seed=9)
    p = invoke(str(tmp_path / "results"), "--scenario", "ci-startup", "--json")
    assert p.exit_code == 0, p.output
    assert json.loads(p.stdout)["runs"] == 12
    p = invoke(*(str(tmp_path / "results" / i) for i in ids[:3]))
    assert p.exit_code == 6 and "3 runs" in p.output
    p = invoke(str(tmp_path / "results"), "--scenario", "nope")
    assert isinstance(p.exception, UsageError) and "no run of scenario 'nope'" in str(p.exception)


def test_the_index_is_used_and_a_changed_run_read_again(tmp_path, monkeypatch):
    results = tmp_path / "results"
    ids = write_history(results, 10)
    first = history.read_history([results])
    assert (results / history.INDEX_NAME).is_file()
    read = []
    real = history.load_run
    monkeypatch.setattr(history, "load_run", lambda d: read.append(Path(d).name) or real(d))
    again = history.read_history([results])
    assert read == []  # every level from the index
    assert [s.to_dict() for s in again.series] == [s.to_dict() for s in first.series]
    with (results / ids[3] / "samples.jsonl").open("a") as f:
        f.write(
            Sample(
                run_id=ids[3], step=99, platform="container", kind="container", n=1,
                repeat=9, index=0, ok=True, ready_s=50.0,
            ).model_dump_json() + "\n"
        )  # fmt: skip
    changed = history.read_history([results])
    assert read == [ids[3]]
    level = {p.run_id: p.level for s in changed.series if s.n == 1 for p in s.points}
    old = {p.run_id: p.level for s in first.series if s.n == 1 for p in s.points}
    assert level[ids[3]] > old[ids[3]] * 1.5


def test_a_garbage_index_is_replaced(tmp_path):
    results = tmp_path / "results"
    write_history(results, 8)
    (results / history.INDEX_NAME).write_bytes(b"not a database" * 100)
    assert invoke(str(results)).exit_code in (0, 1)
    import sqlite3

    with sqlite3.connect(results / history.INDEX_NAME) as db:
        assert db.execute("SELECT count(*) FROM levels").fetchone()[0] == 8


def test_a_linked_index_is_not_followed(tmp_path):
    results = tmp_path / "results"
    write_history(results, 8)
    dummy = tmp_path / "dummy"
    dummy.write_bytes(b"the test's own file")
    (results / history.INDEX_NAME).symlink_to(dummy)
    assert invoke(str(results)).exit_code in (0, 1)
    assert dummy.read_bytes() == b"the test's own file"


def test_out_and_junit(tmp_path):
    # +30% in the newest 2 runs: found by the job of run 19 or 20, so 20 fails.
    write_history(tmp_path / "results", 20, step_at=18, step=0.3)
    out, junit = tmp_path / "out", tmp_path / "verdict.xml"
    p = invoke(str(tmp_path / "results"), "--out", str(out), "--junit", str(junit))
    assert p.exit_code == 1, p.output
    assert {f.name for f in out.iterdir()} == {"history.md", "history.json", "history.png"}
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert sorted(c.get("name") for c in cases) == ["container N=1", "container N=4"]
    assert all(c.find("failure") is not None for c in cases)


@pytest.mark.parametrize("bad", ["missing", "file"])
def test_bad_paths_are_usage_errors(tmp_path, bad):
    path = tmp_path / bad
    if bad == "file":
        path.write_text("x")
    p = invoke(str(path))
    assert isinstance(p.exception, UsageError) and "not a run or results folder" in str(p.exception)


def test_no_index_in_a_folder_others_can_write(tmp_path):
    results = tmp_path / "results"
    write_history(results, 8)
    results.chmod(0o777)
    assert invoke(str(results)).exit_code in (0, 1)
    assert not (results / history.INDEX_NAME).exists()


def test_out_never_writes_through_a_link(tmp_path):
    write_history(tmp_path / "results", 8)
    dummy = tmp_path / "dummy"
    dummy.write_text("the test's own file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "history.md").symlink_to(dummy)
    assert invoke(str(tmp_path / "results"), "--out", str(out)).exit_code in (0, 1)
    assert dummy.read_text() == "the test's own file"
    assert (
        not (out / "history.md").is_symlink()
        and "bench history" in (out / "history.md").read_text()
    )
    link = tmp_path / "link"
    link.symlink_to(out)
    p = invoke(str(tmp_path / "results"), "--out", str(link))
    assert isinstance(p.exception, UsageError) and "symbolic link" in str(p.exception)


def test_what_must_match_but_changed_is_said_with_the_run_it_changed_at(tmp_path):
    """`bench history` warns, as the report does, when the runs differ in a setting
    `bench compare` would refuse a verdict for: a change point may come from it alone."""
    results = tmp_path / "results"
    ids = write_history(results, 12, seed=2)

    def set_timeout(changed_at: int) -> None:
        for i, run_id in enumerate(ids):
            meta_path = results / run_id / "metadata.json"
            meta = json.loads(meta_path.read_text())
            meta["scenario"]["timeout"] = "99s" if i >= changed_at else "10s"
            meta_path.write_text(json.dumps(meta))

    set_timeout(9)  # the job's scenario changed at its 10th run
    doc = json.loads(invoke(str(results), "--json").stdout)
    (warning,) = [w for w in doc["warnings"] if "must match" in w]
    assert "scenario.timeout, changing at run 10" in warning
    set_timeout(len(ids))  # the same runs, unchanged: no such warning (index re-read)
    doc = json.loads(invoke(str(results), "--json").stdout)
    assert not [w for w in doc["warnings"] if "must match" in w]
