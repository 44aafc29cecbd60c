"""SshHost against the SSH lab scripts/start-engines.sh starts on this machine: an sshd
on 127.0.0.1:22 (the same machine, so its facts must equal LocalHost's) and a second,
independent dockerd reached through a second sshd on 127.0.0.1:2222.

A missing lab FAILS in CI (never skips): `make test` must start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.machines.host import LocalHost
from bench.machines.ssh_host import SshError, SshHost
from tests.conftest import require_engine

LAB = "ssh://root@127.0.0.1"
LAB_DOCKER2 = "ssh://root@127.0.0.1:2222"
SETUP = "scripts/start-engines.sh starts it (as root)"


@pytest.fixture(scope="module")
def ssh():
    host = SshHost(LAB)
    try:
        host.describe()
    except SshError as e:
        require_engine(f"loopback sshd ({LAB})", False, f"{e}; {SETUP}")
    yield host
    host.close()


@pytest.fixture
def sleeper():
    """A quiet process of known pid whose memory does not move between two reads."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(0.5)  # until the interpreter has started
    yield proc.pid
    proc.kill()
    proc.wait()


def test_facts_are_this_machines(ssh):
    remote, local = ssh.describe(), LocalHost().describe()
    for key in ("hostname", "kernel", "os", "arch", "mem_total_bytes", "cpu_model", "cpu_cores"):
        assert remote[key] == local[key], key
    assert remote["cpu_physical_cores"] == local["cpu_physical_cores"]
    assert remote["kvm_device"] == local["kvm_device"]
    assert remote["cgroup_version"] == local["cgroup_version"]
    assert ssh.mem_total_bytes() == LocalHost().mem_total_bytes()
    assert 0 < ssh.mem_available_bytes() <= ssh.mem_total_bytes()
    assert ssh.load_avg_1m() >= 0
    facts = ssh.memory_facts()
    assert {k: v for k, v in facts.items() if k != "load_avg_1m"} == {
        k: v for k, v in LocalHost().memory_facts().items() if k != "load_avg_1m"
    }
    assert ssh.key == "127.0.0.1"  # the address's host, apart from the local hostname


def test_the_whole_process_table_is_one_round_trip(ssh, sleeper):
    before = ssh.exec_count
    table = ssh.processes()
    assert ssh.exec_count == before + 1
    assert table.parent(sleeper) == os.getpid()
    assert sleeper in table.descendants(os.getpid())
    # Memory of every process came with it: asking for many pids costs no round trip.
    pids = table.descendants(1) or [sleeper]
    mem = ssh.process_memory([sleeper, *pids[:200]])
    assert ssh.exec_count == before + 1
    assert mem is not None and mem["processes"] >= 1


def test_process_memory_matches_local_hosts(ssh, sleeper):
    local = LocalHost().process_memory([sleeper])
    ssh.processes()
    remote = ssh.process_memory([sleeper])
    assert local is not None and remote is not None
    assert remote["processes"] == local["processes"] == 1
    for key in ("rss_bytes", "pss_bytes", "uss_bytes"):
        assert remote[key] == pytest.approx(local[key], rel=0.1), key
    # A pid the snapshot lacks is read on its own, in one round trip.
    before = ssh.exec_count
    assert ssh.process_memory([2**22 + 7]) is None
    assert ssh.exec_count == before + 1


def test_files_pidfiles_and_commands(ssh, tmp_path):
    d = tmp_path / "a" / "b"
    ssh.make_dirs(d)
    assert ssh.is_dir(d) and not ssh.is_file(d)
    (d / "pid").write_text("4321")  # no newline, as dockerd writes its own
    (d / "blob").write_bytes(b"x" * 65536)
    assert ssh.read_pidfile(str(d / "pid")) == 4321
    assert ssh.read_pidfile(str(d / "none")) is None
    assert ssh.list_dir(d) == ["blob", "pid"] and ssh.list_dir(d / "none") == []
    assert ssh.allocated_bytes(d / "blob") == LocalHost().allocated_bytes(d / "blob") >= 65536
    snap = ssh.snapshot_entries([d, tmp_path / "none"])
    assert snap == {d: {"blob", "pid"}, tmp_path / "none": set()}
    (d / "new").write_bytes(b"y" * 32768)
    assert ssh.new_entries_bytes(snap) == LocalHost().allocated_bytes(d / "new") >= 32768
    done = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert ssh.run(["no-such-program-here"], timeout=30).returncode == 127
    ssh.remove_file(d / "blob")
    ssh.remove_file(d / "blob")  # already gone is fine
    ssh.remove_empty_dir(d)  # not empty: kept
    assert d.is_dir()
    ssh.remove_file(d / "pid")
    ssh.remove_file(d / "new")
    ssh.remove_empty_dir(d)
    assert not d.exists()


def test_round_trip_time_is_measured(ssh):
    rtt = ssh.rtt_s()
    assert 0 < rtt < 1.0
    assert ssh.exec_s(samples=1) >= rtt  # an exec is at least one round trip


def test_an_unknown_host_key_is_refused_in_one_line(ssh, tmp_path, monkeypatch):
    """With the lab's key but an empty known_hosts, the host must not be trusted."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text("")
    key = Path("/root/.ssh/bench_test_ed25519")
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n    IdentityFile {key}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    stranger = SshHost(LAB)
    with pytest.raises(SshError) as e:
        stranger.describe()
    msg = str(e.value)
    assert "\n" not in msg
    assert "127.0.0.1 is not in known_hosts" in msg and "never trusts" in msg
    assert stranger.exec_count == 0  # nothing ran there


def test_a_host_nobody_listens_on_is_one_line(tmp_path):
    with pytest.raises(SshError, match=r"cannot connect to 127\.0\.0\.1:1: ") as e:
        SshHost("ssh://root@127.0.0.1:1").describe()
    assert "\n" not in str(e.value)


def test_the_second_engine_is_another_dockerd_over_ssh(ssh, docker_api):
    import docker

    require_engine(f"sshd of the second dockerd ({LAB_DOCKER2})", _answers(LAB_DOCKER2), SETUP)
    remote = docker.DockerClient(base_url=LAB_DOCKER2, timeout=60)
    try:
        assert remote.ping()
        remote_id = remote.info()["ID"]
    finally:
        remote.close()
    assert remote_id and remote_id != docker_api.info()["ID"]


def _answers(address: str) -> bool:
    host = SshHost(address)
    try:
        host.describe()
        return True
    except SshError:
        return False
    finally:
        host.close()
