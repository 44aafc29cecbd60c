"""Owners: a pid is judged by /proc only on the controller host that wrote it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import owner
from bench.backends.base import LABEL_OWNER, LABEL_OWNER_HOST, LABEL_PREFIX, Leftover


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
