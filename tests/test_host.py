"""Which Host a backend gets, and the Host protocol's local implementation."""

import socket
import subprocess
from pathlib import Path

import pytest

from bench.backends import make_backend
from bench.machines.host import (
    Host,
    LocalHost,
    host_for,
    is_local_address,
    local_host,
    ssh_address,
)
from bench.model.errors import UsageError
from bench.plan.scenario import parse_scenario
from tests.helpers import FakeHost


@pytest.mark.parametrize(
    "address",
    [None, "", "unix:///var/run/docker.sock", "qemu:///system", "qemu:///session"],
)
def test_local_addresses_get_the_one_local_host(address):
    assert is_local_address(address)
    assert host_for(address) is local_host()
    assert host_for(address).key == socket.gethostname()


@pytest.mark.parametrize(
    ("address", "ssh", "key"),
    [
        ("ssh://lab2", "ssh://lab2", "lab2"),
        ("ssh://root@127.0.0.1:2222", "ssh://root@127.0.0.1:2222", "127.0.0.1:2222"),
        ("qemu+ssh://root@lab2/system", "ssh://root@lab2", "lab2"),
        ("qemu+ssh://me@lab3:2200/system", "ssh://me@lab3:2200", "lab3:2200"),
    ],
)
def test_ssh_addresses_get_one_ssh_host_each_without_connecting(address, ssh, key):
    from bench.machines.ssh_host import SshHost

    assert not is_local_address(address)
    assert ssh_address(address) == ssh
    host = host_for(address)
    assert isinstance(host, SshHost) and isinstance(host, Host)
    assert (host.address, host.key, host.exec_count) == (ssh, key, 0)
    assert host_for(address) is host  # one connection per host and process


@pytest.mark.parametrize("address", ["tcp://10.0.0.2:2375", "qemu+tls://lab2/system"])
def test_addresses_bench_cannot_read_the_machine_of_are_refused(address):
    assert ssh_address(address) is None
    with pytest.raises(UsageError, match="over SSH: give ssh://user@host"):
        host_for(address)


def test_a_run_refuses_an_engine_whose_machine_it_cannot_read_before_asking_it(monkeypatch):
    from bench.plan.scenario import LoadedScenario
    from bench.runner.run import preflight

    # tcp:// has no SSH to read the machine by: refused before any connection.
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
    text = "name: r\nplatforms:\n  - {name: c, backend: docker, image: busybox}\n"
    loaded = LoadedScenario(parse_scenario(text), Path("r.yaml"), text)
    with pytest.raises(UsageError, match="over SSH: give ssh://user@host"):
        preflight(loaded, engines=False)


def test_local_and_fake_hosts_implement_the_protocol():
    assert isinstance(LocalHost(), Host)
    assert isinstance(FakeHost(lambda: []), Host)
    assert not hasattr(LocalHost(), "name")


def test_each_backend_gets_its_host_from_its_settings_or_as_given():
    sc = parse_scenario(
        "name: h\nplatforms:\n  - {name: f, backend: fake}\n"
        "  - {name: c, backend: docker, image: busybox, host: unix:///run/x.sock}\n"
        "  - {name: v, backend: libvirt, uri: qemu:///session}\n"
    )
    f, c, v = (make_backend(p) for p in sc.platforms)
    assert c.engine_address() == "unix:///run/x.sock" and v.engine_address() == "qemu:///session"
    assert f.host is c.host is v.host is local_host()
    given = FakeHost(lambda: [])
    assert make_backend(sc.platforms[1], host=given).host is given


def test_local_host_runs_commands_and_reads_files(tmp_path):
    h = LocalHost()
    done = h.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert h.run(["no-such-program-here"], timeout=10).returncode == 127
    d = tmp_path / "a" / "b"
    h.make_dirs(d)
    assert h.is_dir(d) and not h.is_file(d)
    (d / "pid").write_text("1234\n")
    (d / "blob").write_bytes(b"x" * 65536)
    assert h.read_pidfile(str(d / "pid")) == 1234 and h.read_pidfile(str(d / "none")) is None
    assert h.allocated_bytes(d / "blob") >= 65536
    h.remove_file(d / "blob")
    h.remove_file(d / "blob")  # already gone is fine
    h.remove_empty_dir(d)  # not empty: kept
    assert h.is_dir(d)
    h.remove_file(d / "pid")
    h.remove_empty_dir(d)
    assert not h.is_dir(d)
    facts = h.describe()
    assert facts["hostname"] == h.key and facts["mem_total_bytes"] == h.mem_total_bytes()


def test_overlays_are_made_by_qemu_img_on_the_engines_host(tmp_path):
    from bench.backends.guest import make_overlay
    from bench.model.errors import ImageError

    host = FakeHost(lambda: [])
    make_overlay(host, tmp_path / "base.qcow2", tmp_path / "o.qcow2")
    (argv,) = host.commands
    assert argv[:2] == ["qemu-img", "create"] and argv[-1] == str(tmp_path / "o.qcow2")
    assert str((tmp_path / "base.qcow2").resolve()) in argv

    class NoQemuImg(FakeHost):
        def run(self, argv, timeout):
            return subprocess.CompletedProcess(argv, 127, "", "not found")

    with pytest.raises(ImageError, match="qemu-img not found"):
        make_overlay(NoQemuImg(lambda: []), tmp_path / "b", tmp_path / "o")
