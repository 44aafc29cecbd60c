"""Owners: a run on this controller is alive while its lock is held; a pid is judged by
/proc only for labels from before the lock, and only on the controller host that wrote it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.backends.base import LABEL_OWNER, LABEL_OWNER_HOST, LABEL_PREFIX, Leftover
from bench.model import owner, paths
from tests.helpers import dead_pid, hold_lock


def sleeper(argv: list[str]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(argv)
    # Until exec, the child still shows this process's command line.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}/cmdline").read_bytes() != "\0".join([*argv, ""]).encode():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return p


@pytest.fixture
def bench_process():
    """A process whose command line names bench, as a running `bench run` would."""
    p = sleeper([sys.executable, "-c", "import time; time.sleep(60)", "bench"])
    yield p.pid
    p.kill()
    p.wait()


def test_pid_alive():
    assert owner.pid_alive(os.getpid())
    assert owner.pid_alive(1)  # init exists (owned by root: PermissionError still counts)
    for nothing in (None, "123", 0, -1, True):
        assert not owner.pid_alive(nothing)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not owner.pid_alive(p.pid)


def test_only_another_bench_process_counts(bench_process):
    assert owner.bench_process_alive(bench_process)
    assert not owner.bench_process_alive(os.getpid())  # this process is not "another run"
    other = sleeper(["sleep", "60"])
    try:
        assert not owner.bench_process_alive(other.pid)  # a reused pid: some other program
    finally:
        other.kill()
        other.wait()


def test_a_leftover_is_judged_alive_only_on_its_owners_host(bench_process):
    here = Leftover("docker", "container", "c", "r", bench_process, owner.hostname())
    old = Leftover("docker", "container", "c", "r", bench_process, None)
    far = Leftover("docker", "container", "c", "r", bench_process, "another-controller")
    assert here.owner_alive and not here.owner_remote and here.in_use
    assert old.owner_alive and old.in_use  # no host recorded: written by a local bench
    # The same pid on another host says nothing about this machine's processes.
    assert not far.owner_alive and far.owner_remote and far.in_use
    dead = Leftover("docker", "container", "c", "r", None, owner.hostname())
    assert not dead.owner_alive and not dead.in_use


def test_owner_labels_carry_pid_and_host():
    labels = owner.owner_labels(LABEL_PREFIX)
    assert labels == {LABEL_OWNER: str(os.getpid()), LABEL_OWNER_HOST: owner.hostname()}


def test_domain_metadata_carries_the_owner_host():
    from bench.backends.libvirt_backend import METADATA_NS, domain_xml

    dom = ET.fromstring(domain_xml("n", "r", "p", "tcg", 2**27, 1, kernel=(Path("/k"), None, "")))
    meta = dom.find(f"metadata/{{{METADATA_NS}}}instance")
    assert meta.get("owner_pid") == str(os.getpid())
    assert meta.get("owner_host") == owner.hostname()


# -- the run lock decides, not the pid or the command line -----------------------------

RUN = "quickstart-20261130-064410-9122abcd"


@pytest.fixture
def lock_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    path = paths.run_lock_path(RUN)
    path.parent.mkdir(mode=0o700)
    path.touch(mode=0o600)
    return path


@pytest.fixture
def holder(lock_file):
    """Another process (not named bench) that holds the run's lock, as a running bench does."""
    p = hold_lock(lock_file)
    assert b"bench" not in Path(f"/proc/{p.pid}/cmdline").read_bytes()
    yield p
    p.kill()
    p.wait()


def test_a_run_whose_lock_is_held_is_alive_whatever_its_pid_label_says(holder):
    for pid in (dead_pid(), holder.pid, None):
        left = Leftover("docker", "container", "c", RUN, pid, owner.hostname())
        assert left.owner_alive and left.in_use and not left.owner_remote
    assert owner.run_lock_held(RUN) is True


def test_a_run_whose_lock_file_is_free_is_dead_though_a_bench_process_has_its_pid(
    lock_file, bench_process
):
    left = Leftover("docker", "container", "c", RUN, bench_process, owner.hostname())
    assert not left.owner_alive and not left.in_use
    assert lock_file.exists()  # asking removes nothing


def test_without_a_lock_file_the_old_pid_rule_decides(tmp_path, monkeypatch, bench_process):
    # Labels written by a bench from before the lock: no file to ask.
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    alive = Leftover("docker", "container", "c", RUN, bench_process, owner.hostname())
    dead = Leftover("docker", "container", "c", RUN, dead_pid(), owner.hostname())
    assert alive.owner_alive and not dead.owner_alive


def test_the_lock_answers_only_for_this_controller(holder):
    # Another controller's run: its lock (if any) is on that machine; this one cannot tell.
    far = Leftover("docker", "container", "c", RUN, dead_pid(), "another-controller")
    assert far.owner_remote and far.in_use and not far.owner_alive
