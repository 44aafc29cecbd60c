"""The run lock: a running bench holds a flock on state/runs/<run-id>.lock for its whole
run, released (and the file removed) on every way out; `bench clean` asks it."""

from __future__ import annotations

import fcntl
import os
import stat
import threading

import pytest

from bench.backends.fake import FakeBackend
from bench.model import owner, paths
from bench.model.errors import BenchError, UsageError
from bench.plan.scenario import LoadedScenario, parse_scenario
from bench.runner import NoEvents
from bench.runner.run import run_scenario
from tests.helpers import FakeHost

RUN = "quickstart-20261130-064410-9122"
TEXT = (
    "name: lk\nsettle: 0s\ntimeout: 5s\ncounts: [1, 2]\nwarmup: 0\n"
    "platforms:\n  - {name: a, backend: fake}\n  - {name: b, backend: fake}\n"
)


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(
    "run_id",
    [
        RUN,  # 4 hex digits: runs of older versions
        "quickstart-20261130-064410-9122abcd",  # 8: today's
        "a.b_c-20261130-064410-0123456789abcdef",  # 16: what is coming
        "x-20261130-064410-" + "f" * 32,
    ],
)
def test_run_ids_bench_makes_are_run_ids(run_id):
    assert paths.is_run_id(run_id)
    assert paths.run_lock_path(run_id).name == f"{run_id}.lock"


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "../x",
        "a b",
        "*",
        "no-such-run",
        "r1",
        "x-20261130-064410-abc",  # 3 hex digits
        "x-20261130-064410-" + "f" * 33,
        "x-20261130-064410-ABCD",
        "x-20261130-064410-abcd\n",
        "x-2026113\u0660-064410-abcd",  # an Arabic-Indic zero: \d would take it
        "../../etc-20261130-064410-abcd",
        "-rf-20261130-064410-abcd",
        None,
    ],
)
def test_anything_else_is_not_and_names_no_file(run_id):
    assert not paths.is_run_id(run_id)
    with pytest.raises(ValueError):
        paths.run_lock_path(run_id)
    assert owner.run_lock_held(run_id) is None


def test_held_while_the_block_runs_then_released_and_removed(state):
    path = paths.run_lock_path(RUN)
    with owner.run_lock(RUN):
        assert owner.run_lock_held(RUN) is True
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists()
    assert owner.run_lock_held(RUN) is None


def test_released_when_the_block_raises(state):
    path = paths.run_lock_path(RUN)
    with pytest.raises(KeyboardInterrupt), owner.run_lock(RUN):
        fd = os.open(path, os.O_RDONLY)  # the same file, opened on its own
        raise KeyboardInterrupt
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise were it still held
    finally:
        os.close(fd)
    assert not path.exists()


def test_a_file_left_by_a_killed_run_is_free_and_removed_only_when_asked(state):
    path = paths.run_lock_path(RUN)
    path.parent.mkdir(mode=0o700, parents=True)
    path.touch(mode=0o600)
    assert owner.run_lock_held(RUN) is False
    assert path.exists()  # asking alone (a dry run) removes nothing
    owner.remove_stale_run_locks()
    assert not path.exists()


def test_a_looser_folder_is_made_private(state):
    state.joinpath("runs").mkdir(mode=0o777, parents=True)
    os.chmod(state / "runs", 0o777)
    with owner.run_lock(RUN):
        assert stat.S_IMODE((state / "runs").stat().st_mode) == 0o700


def test_a_planted_link_is_refused_and_its_target_untouched(state, tmp_path):
    dummy = tmp_path / "dummy"
    dummy.write_text("keep")
    runs = state / "runs"
    runs.mkdir(mode=0o700, parents=True)
    (runs / f"{RUN}.lock").symlink_to(dummy)
    with pytest.raises(BenchError, match="a run lock must be a file"), owner.run_lock(RUN):
        pass
    assert owner.run_lock_held(RUN) is None  # a link is not asked: the pid rule decides
    owner.remove_stale_run_locks()
    assert dummy.read_text() == "keep" and (runs / f"{RUN}.lock").is_symlink()


def test_a_linked_folder_is_refused(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state.mkdir()
    (state / "runs").symlink_to(elsewhere)
    with pytest.raises(BenchError, match="not a link"), owner.run_lock(RUN):
        pass
    with pytest.raises(BenchError, match="not a link"):
        owner.run_lock_held(RUN)
    assert list(elsewhere.iterdir()) == []


def test_a_run_id_that_names_no_lock_is_a_usage_error(state):
    with (
        pytest.raises(UsageError, match="--name takes"),
        owner.run_lock("../x-20261130-064410-abcd"),
    ):
        pass
    assert not state.exists()


# -- the run: every `bench run`, `bench ab` and multi-host run goes through run_scenario --


def lock_states(state):
    """run id -> whether its lock is held, for every lock file in the folder."""
    runs = state / "runs"
    ids = [p.name.removesuffix(".lock") for p in runs.iterdir()] if runs.is_dir() else []
    return {rid: owner.run_lock_held(rid) for rid in ids}


class Watch(NoEvents):
    """What the lock folder held at each step's start (from the runner's threads too)."""

    def __init__(self, state, fail=False):
        self.state, self.fail, self.seen = state, fail, []
        self._lock = threading.Lock()

    def step_started(self, index, total, step):
        with self._lock:
            self.seen.append(lock_states(self.state))
        if self.fail:
            raise RuntimeError("boom")


@pytest.mark.parametrize("shape", ["one host", "two hosts", "ab"])
def test_a_run_holds_its_lock_while_it_runs_and_releases_it_after(state, tmp_path, shape):
    hosts = {"a": FakeHost(lambda: []), "b": FakeHost(lambda: [])}
    if shape == "two hosts":  # one runner per host, in threads: one lock all the same
        hosts["b"] = FakeHost(lambda: [], key="otherhost")
    watch = Watch(state)
    outcome = run_scenario(
        LoadedScenario(parse_scenario(TEXT), None, TEXT),
        tmp_path / "results",
        events=watch,
        factory=lambda p: FakeBackend(p, host=hosts[p.name]),
        ab=("a", "b") if shape == "ab" else None,
    )
    assert len(watch.seen) >= 4
    assert all(seen == {outcome.run_id: True} for seen in watch.seen), watch.seen
    assert lock_states(state) == {}  # released, and the file gone


def test_a_failed_run_releases_its_lock(state, tmp_path):
    watch = Watch(state, fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_scenario(
            LoadedScenario(parse_scenario(TEXT), None, TEXT),
            tmp_path / "results",
            events=watch,
            factory=lambda p: FakeBackend(p, host=FakeHost(lambda: [])),
        )
    assert [list(seen.values()) for seen in watch.seen] == [[True]]
    assert lock_states(state) == {}
