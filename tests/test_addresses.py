"""Addresses from scenario files and command lines: exactly the shapes bench uses.

libvirt runs the program a `qemu+ext://...?command=` URI names, and an SSH host name
reaches the user's ProxyCommand through a shell (CVE-2023-51385): every such address
was accepted before bench.model.addresses. The CLI cases run `bench` for real, each on a
scenario file under the test's own folder, and check nothing was run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.model import addresses
from bench.model.errors import UsageError
from tests.conftest import REPO

LIBVIRT_REFUSED = [
    "qemu+ext:///system?command=/tmp/prog",
    "qemu:///system?no_verify=1",
    "qemu:///system?socket=/tmp/x.sock",
    "qemu+ssh://root@h/system?keyfile=/root/.ssh/id",
    "qemu+ssh://root@h/system?command=/tmp/prog",
    "qemu:///system#frag",
    "test:///default",
    "lxc:///",
    "qemu+tcp://h/system",
    "qemu+tls://h/system",
    "qemu+unix:///system",
    "qemu://h/system",
    "qemu:///embed?root=/tmp",
    "qemu+ssh://root@h/session",
    "qemu+ssh://root@jump;id>pwned;echo/system",
    "qemu+ssh://-oProxyCommand=x/system",
    "qemu:///system/../session",
]
LIBVIRT_OK = [
    ("qemu:///system", addresses.LibvirtUri("/system")),
    ("qemu:///session", addresses.LibvirtUri("/session")),
    (
        "qemu+ssh://root@10.0.0.1/system",
        addresses.LibvirtUri("/system", addresses.SshAddress("10.0.0.1", "root")),
    ),
    (
        "qemu+ssh://bench@lab-1.example.org:2222/system",
        addresses.LibvirtUri("/system", addresses.SshAddress("lab-1.example.org", "bench", 2222)),
    ),
    (
        "qemu+ssh://root@[::1]:22/system",
        addresses.LibvirtUri("/system", addresses.SshAddress("::1", "root", 22)),
    ),
]
SSH_REFUSED = [
    "ssh://root@jump;id>pwned;echo",
    "ssh://root@jump$(id)",
    "ssh://root@jump`id`",
    "ssh://root@jump|id",
    "ssh://root@jump&id",
    "ssh://-oProxyCommand=touch%20x",
    "ssh://-oProxyCommand=x",
    "ssh://root@jump x",
    "ssh://root@jump\nx",
    "ssh://root@jump%0aid",
    "ssh://r;oot@jump",
    "ssh://-l@jump",
    "ssh://root@jump:0",
    "ssh://root@jump:65536",
    "ssh://root@jump:22x",
    "ssh://root@jump:",
    "ssh://root@-jump",
    "ssh://root@jump-",
    "ssh://root@jump/path",
    "ssh://root@jump?x=1",
    "ssh://root@jump#x",
    "ssh://root@[::1",
    "ssh://root@[jump]",
    "ssh://",
    "ssh://root@",
    "ssh://a@b@c",
    "ssh://root@" + "a" * 64 + ".org",
    "ssh://root@jump\x1b[31m",
    "ssh://root@jümp",
]
SSH_OK = [
    ("ssh://root@10.0.0.1", addresses.SshAddress("10.0.0.1", "root")),
    ("ssh://lab-1.example.org", addresses.SshAddress("lab-1.example.org")),
    ("ssh://bench@127.0.0.1:2222", addresses.SshAddress("127.0.0.1", "bench", 2222)),
    ("ssh://root@[::1]:22/", addresses.SshAddress("::1", "root", 22)),
    ("ssh://_ci.user@host", addresses.SshAddress("host", "_ci.user")),
]


@pytest.mark.parametrize("uri", LIBVIRT_REFUSED)
def test_libvirt_uris_beyond_the_qemu_driver_are_refused(uri):
    with pytest.raises(ValueError):
        addresses.check_libvirt(uri)


@pytest.mark.parametrize(("uri", "parsed"), LIBVIRT_OK)
def test_libvirt_uris_bench_uses_are_accepted(uri, parsed):
    assert addresses.check_libvirt(uri) == parsed
    assert str(parsed) == uri


@pytest.mark.parametrize("address", SSH_REFUSED)
def test_ssh_addresses_with_anything_but_user_host_port_are_refused(address):
    with pytest.raises(ValueError):
        addresses.check_ssh(address)


@pytest.mark.parametrize(("address", "parsed"), SSH_OK)
def test_ssh_addresses_parse_into_checked_parts(address, parsed):
    assert addresses.check_ssh(address) == parsed


SOCKET_REFUSED = [
    "unix:///run/x.sock?y=1",
    "unix://host/run/x.sock",
    "unix://run/x.sock",
    "unix:///a b",
    "unix:///a/../b.sock",
    "unix:///run/x.sock#f",
    "unix:///run/$(id).sock",
    "tcp://127.0.0.1:2375",
]


@pytest.mark.parametrize("address", SOCKET_REFUSED)
def test_engine_sockets_are_plain_absolute_paths(address):
    with pytest.raises(ValueError):
        addresses.check_docker(address)
    with pytest.raises(ValueError):
        addresses.check_socket(address)


def test_engine_addresses_bench_uses_are_accepted():
    sock = addresses.SocketPath("/run/podman/podman.sock")
    assert addresses.check_socket("unix:///run/podman/podman.sock") == sock
    assert addresses.check_docker("unix:///var/run/docker.sock") == addresses.SocketPath(
        "/var/run/docker.sock"
    )
    assert addresses.check_docker("ssh://root@[::1]:2222") == addresses.SshAddress(
        "::1", "root", 2222
    )
    assert addresses.check_host("local") is None


def test_ssh_host_refuses_an_unchecked_address_itself():
    from bench.machines.ssh_host import SshHost
    from bench.model.errors import UsageError

    with pytest.raises(UsageError, match="not a host name"):
        SshHost("ssh://root@jump;id>pwned;echo")


# -- the last line: what reaches ssh config's ProxyCommand ------------------------------


@pytest.fixture
def proxy_log(tmp_path, monkeypatch):
    """A ~/.ssh/config (under the test's own HOME) whose ProxyCommand records the words
    it is given and exits: the host name as ssh_config's %h hands it to a shell."""
    log = tmp_path / "proxy-argv"
    proxy = tmp_path / "proxy"
    proxy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n')
    proxy.chmod(0o755)
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(f"Host *\n  ProxyCommand {proxy} %h %p\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    return log


@pytest.mark.parametrize(
    ("address", "host"),
    [("ssh://root@lab-1.example.org:2222", "lab-1.example.org"), ("ssh://root@[::1]", "::1")],
)
def test_proxy_command_gets_exactly_the_checked_host_name(proxy_log, address, host):
    from bench.machines.ssh_host import SshError, SshHost

    with pytest.raises(SshError):
        SshHost(address)._connect()
    assert proxy_log.read_text().splitlines() == [host, "22"]


@pytest.mark.parametrize("address", SSH_REFUSED)
def test_ssh_host_refuses_a_hostile_address_before_any_proxy_command(proxy_log, address):
    from bench.machines.ssh_host import SshHost
    from bench.model.errors import UsageError

    with pytest.raises(UsageError):
        SshHost(address)._connect()
    assert not proxy_log.exists()


# -- through the CLI, as a user (or an attacker's scenario file) reaches them ----------


def cli(*args: str) -> Exception | None:
    """Run a bench command in this process; the BenchError it ended with, if any."""
    p = CliRunner().invoke(app, list(args))
    return p.exception


def scenario_file(tmp_path, body: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    return str(path)


def yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML string, control characters escaped


def hosts_scenario(tmp_path, address: str) -> str:
    return scenario_file(
        tmp_path,
        f"name: s\nhosts: {{lab: {yaml_str(address)}}}\nplatforms:\n"
        "  - {name: c, backend: docker, image: busybox, host: lab}\n",
    )


def uri_scenario(tmp_path, uri: str) -> str:
    return scenario_file(
        tmp_path,
        "name: s\nplatforms:\n"
        f"  - {{name: v, backend: libvirt, image: busybox, accel: tcg, uri: {yaml_str(uri)}}}\n",
    )


def platform_host_scenario(tmp_path, backend: str, address: str) -> str:
    return scenario_file(
        tmp_path,
        "name: s\nplatforms:\n"
        f"  - {{name: p, backend: {backend}, image: busybox, host: {yaml_str(address)}}}\n",
    )


def refused(e: Exception | None, key: str) -> None:
    assert isinstance(e, UsageError), repr(e)  # ScenarioError is one: exit 2
    assert key in str(e) and "\n" not in str(e), str(e)


@pytest.mark.parametrize("address", SSH_REFUSED)
@pytest.mark.parametrize(
    "command", [("validate", "--offline"), ("clean", "--dry-run", "--scenario")]
)
def test_scenario_hosts_refuse_every_hostile_address(tmp_path, command, address):
    refused(cli(*command, hosts_scenario(tmp_path, address)), "hosts.lab")


@pytest.mark.parametrize("address", SSH_REFUSED)
@pytest.mark.parametrize("backend", ["docker", "libvirt"])
def test_a_platform_host_refuses_every_hostile_address(tmp_path, backend, address):
    refused(
        cli("validate", "--offline", platform_host_scenario(tmp_path, backend, address)), "host"
    )


@pytest.mark.parametrize("uri", LIBVIRT_REFUSED)
@pytest.mark.parametrize(
    "command", [("validate", "--offline"), ("clean", "--dry-run", "--scenario")]
)
def test_scenario_libvirt_uris_refuse_all_but_qemu_system(tmp_path, command, uri):
    refused(cli(*command, uri_scenario(tmp_path, uri)), "platforms[0].uri")


@pytest.mark.parametrize("uri", LIBVIRT_REFUSED)
@pytest.mark.parametrize("command", ["doctor", "clean"])
def test_libvirt_uri_option_refuses_all_but_qemu_system(command, uri):
    refused(
        cli(command, *(["--dry-run"] if command == "clean" else []), "--libvirt-uri", uri),
        "--libvirt-uri",
    )


@pytest.mark.parametrize("address", SSH_REFUSED + SOCKET_REFUSED)
def test_docker_host_option_refuses_a_hostile_address(address):
    refused(cli("doctor", "--docker-host", address), "--docker-host")


@pytest.mark.parametrize("address", [*SOCKET_REFUSED, "ssh://root@lab"])
def test_podman_url_option_takes_a_local_socket_path_only(address):
    refused(cli("doctor", "--podman-url", address), "--podman-url")


@pytest.mark.parametrize("address", SSH_REFUSED)
@pytest.mark.parametrize("command", ["run", "clean"])
def test_host_option_refuses_every_hostile_address(tmp_path, command, address):
    sc = scenario_file(
        tmp_path, "name: s\nplatforms:\n  - {name: c, backend: docker, image: busybox}\n"
    )
    args = (
        ("run", sc, "--out", str(tmp_path / "out"))
        if command == "run"
        else ("clean", "--dry-run", "--scenario", sc)
    )
    refused(cli(*args, "--host", address), "--host")
    assert not (tmp_path / "out").exists()


def test_docker_host_from_the_environment_is_checked_before_docker_py(monkeypatch):
    from bench.backends.docker_backend import DockerBackend, DockerSettings

    monkeypatch.setenv("DOCKER_HOST", "ssh://root@jump;id>pwned;echo")
    backend = DockerBackend(DockerSettings(name="c", backend="docker", image="busybox"))
    with pytest.raises(
        UsageError, match=re.escape("DOCKER_HOST=ssh://root@jump;id>pwned;echo: 'jump;id")
    ):
        backend.connect()


# -- in a subprocess: a URI that names a program, and offline validation --------------


def bench(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or REPO,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def canary(tmp_path):
    """A program that leaves a file if anything runs it."""
    mark = tmp_path / "ran"
    prog = tmp_path / "prog"
    prog.write_text(f"#!/bin/sh\ntouch {mark}\n")
    prog.chmod(0o755)
    return prog, mark


@pytest.mark.parametrize(
    "command",
    [
        ("validate", "--offline", "{scenario}"),
        ("validate", "{scenario}"),
        ("clean", "--dry-run", "--scenario", "{scenario}"),
        ("doctor", "--libvirt-uri", "{uri}"),
        ("clean", "--dry-run", "--libvirt-uri", "{uri}"),
        ("run", "{scenario}", "--out", "{out}"),
    ],
)
def test_a_command_uri_is_refused_by_every_command_and_runs_nothing(tmp_path, canary, command):
    prog, mark = canary
    uri = f"qemu+ext:///system?command={prog}"
    scenario = uri_scenario(tmp_path, uri)
    args = [a.format(scenario=scenario, uri=uri, out=tmp_path / "out") for a in command]
    p = bench(*args)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "qemu:///system, qemu:///session or qemu+ssh://" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not mark.exists()


@pytest.fixture
def listener():
    """A TCP listener on loopback that counts the connections it gets."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    got: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            got.append("connection")
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join(2)
    srv.close()


def test_validate_offline_connects_to_nothing(tmp_path, listener):
    port, got = listener
    scenario = scenario_file(
        tmp_path,
        f"name: s\nhosts: {{lab: 'ssh://root@127.0.0.1:{port}'}}\nplatforms:\n"
        "  - {name: c, backend: docker, image: busybox, host: lab, memory: 64MiB}\n"
        "  - {name: v, backend: libvirt, image: busybox, accel: tcg, host: lab}\n",
    )
    p = bench("validate", "--offline", scenario)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Not checked (--offline: no network, no engine): other hosts' memory" in p.stdout
    assert got == []
    # The same file without --offline does reach the listener: the test can see one.
    bench("validate", scenario)
    assert got
