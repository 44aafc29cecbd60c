"""Several hosts in one run, for real: the local dockerd, the second dockerd reached over
ssh://root@127.0.0.1:2222 and libvirt over qemu+ssh://root@127.0.0.1/system (the SSH lab
scripts/start-engines.sh starts). Each is its own host in the results.

A missing lab FAILS in CI (never skips): `make test` must start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from bench.backends.base import LABEL_RUN, NAME_PREFIX
from bench.machines.ssh_host import SshError, SshHost
from tests.conftest import REPO, require_engine
from tests.integration.bench_runs import start_run
from tests.integration.engine_watch import bench_cmd, purge

LAB = "ssh://root@127.0.0.1"
LAB2_PORT = 2222
DOCKER2_SOCK = "unix:///run/docker2.sock"
SETUP = "scripts/start-engines.sh starts it (as root)"


@pytest.fixture(scope="module")
def lab():
    """The loopback sshds and the second dockerd behind port 2222."""
    for address in (LAB, f"{LAB}:{LAB2_PORT}"):
        host = SshHost(address)
        try:
            host.describe()
        except SshError as e:
            require_engine(f"loopback sshd ({address})", False, f"{e}; {SETUP}")
        finally:
            host.close()
    import docker

    try:
        docker.DockerClient(base_url=DOCKER2_SOCK, timeout=30).ping()
    except Exception as e:
        require_engine("the second dockerd", False, f"{e}; {SETUP}")


def bench_containers(base_url: str | None, prefix: str) -> list[str]:
    import docker

    client = docker.DockerClient(base_url=base_url, timeout=30) if base_url else docker.from_env()
    try:
        return [
            c.name
            for c in client.containers.list(all=True, filters={"label": LABEL_RUN})
            if c.labels.get(LABEL_RUN, "").startswith(prefix)
        ]
    finally:
        client.close()


def bench_domains(prefix: str) -> list[str]:
    import libvirt

    conn = libvirt.open("qemu:///system")
    try:
        return [
            d.name() for d in conn.listAllDomains() if d.name().startswith(NAME_PREFIX + prefix)
        ]
    finally:
        conn.close()


def purge_docker2(prefix: str) -> None:
    import docker

    client = docker.DockerClient(base_url=DOCKER2_SOCK, timeout=30)
    try:
        for c in client.containers.list(all=True, filters={"label": LABEL_RUN}):
            if c.labels.get(LABEL_RUN, "").startswith(prefix):
                c.remove(force=True, v=True)
    finally:
        client.close()


def read_run(root: Path, prefix: str) -> tuple[dict, list[dict], list[dict]]:
    (d,) = list(root.glob(f"{prefix}-*"))
    rows = [
        [json.loads(x) for x in (d / f).read_text().splitlines()]
        for f in ("samples.jsonl", "steps.jsonl")
    ]
    return json.loads((d / "metadata.json").read_text()), rows[0], rows[1]


def test_a_run_on_three_hosts_measures_each_on_its_own_host(tmp_path, lab):
    name = f"hosts{os.getpid()}"
    scenario = tmp_path / "hosts.yaml"
    scenario.write_text(
        "name: hosts\nwarmup: 0\nsettle: 0s\ntimeout: 150s\ncounts: [1, 2]\n"
        f"hosts:\n  lab1: {LAB}\n  lab2: {LAB}:{LAB2_PORT}\n"
        "platforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: c2, backend: docker, image: busybox, host: lab2}\n"
        "  - {name: vm, backend: libvirt, image: busybox, memory: 256MiB, host: lab1}\n"
    )
    try:
        out = subprocess.run(
            bench_cmd("run", str(scenario), "--out", str(tmp_path / "r"), "--name", name),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        # What the run left, looked at before the test's own clean-up removes it.
        left = [*bench_containers(None, name), *bench_containers(DOCKER2_SOCK, name)]
        left += bench_domains(name)
        purge(name, [])
        purge_docker2(name)
    assert out.returncode == 0, out.stdout + out.stderr
    meta, samples, steps = read_run(tmp_path / "r", name)
    host_of = {s["platform"]: s["host"] for s in samples}
    # Three engines, three hosts: the local machine, and each SSH address apart.
    assert host_of["c2"] == f"127.0.0.1:{LAB2_PORT}"
    assert host_of["vm"] == "127.0.0.1"
    assert host_of["c"] not in (host_of["c2"], host_of["vm"])
    assert set(meta["hosts"]) == set(host_of.values())
    assert meta["engines"]["c2"]["address"] == f"{LAB}:{LAB2_PORT}"
    assert meta["engines"]["vm"]["uri"] == "qemu+ssh://root@127.0.0.1/system"
    for key, facts in meta["hosts"].items():
        assert facts["mem_total_bytes"] > 0 and facts["engines"], key
    # The same userland on both docker engines, known by its rootfs digest.
    assert meta["engines"]["c"]["rootfs_sha256"] == meta["engines"]["c2"]["rootfs_sha256"]
    for platform in ("c", "c2", "vm"):
        own = [s for s in samples if s["platform"] == platform]
        assert sorted(s["n"] for s in own) == [1, 2, 2], platform
        assert all(s["ok"] for s in own), [s["error"] for s in own]
        # The process view was read on the engine's machine (its pids, over SSH).
        assert all(s["pss_bytes"] and s["pss_bytes"] > 0 for s in own), platform
        for st in (x for x in steps if x["platform"] == platform):
            assert st["host"] == host_of[platform]
            assert st["mem_available_before_bytes"] > 0
            assert st["rtt_s"] is not None
            # Over SSH a real round trip; on this machine none.
            assert (st["rtt_s"] > 0) == (platform != "c"), (platform, st["rtt_s"])
    # Nothing left on any engine, the second dockerd included.
    assert left == []


def ssh_sessions_of(pid: int, port: int) -> list[int]:
    """The sshd processes serving `pid`'s SSH connections to 127.0.0.1:port (and only
    those: other sessions of the lab are left alone)."""
    mine = {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    }
    return sorted(
        {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.pid and c.laddr.port == port and c.raddr and c.raddr.port in mine
        }
    )


def test_a_dropped_ssh_connection_stops_its_host_with_one_line(tmp_path, lab):
    name = f"drop{os.getpid()}"
    scenario = tmp_path / "drop.yaml"
    scenario.write_text(
        "name: drop\nwarmup: 0\nsettle: 0s\ntimeout: 30s\ncounts: [1]\nrepeat: 12\n"
        f"hosts:\n  lab2: {LAB}:{LAB2_PORT}\n"
        "platforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: c2, backend: docker, image: busybox, host: lab2}\n"
    )
    proc = start_run(scenario, tmp_path / "r", name)
    killed: list[int] = []
    try:
        # Once the remote host has finished a step, its SSH sessions are killed.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            found = list((tmp_path / "r").glob(f"{name}-*/steps.jsonl"))
            text = found[0].read_text() if found else ""
            if f'"host": "127.0.0.1:{LAB2_PORT}"' in text:
                for pid in ssh_sessions_of(proc.pid, LAB2_PORT):
                    try:
                        psutil.Process(pid).kill()
                        killed.append(pid)
                    except psutil.NoSuchProcess:
                        pass
            time.sleep(0.05)
        assert killed, "the remote host never finished a step"
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left_local = bench_containers(None, name)
        left_remote = bench_containers(DOCKER2_SOCK, name)
        purge(name, [])
        purge_docker2(name)
    assert proc.returncode == 3, out + err
    assert "Traceback" not in err
    errors = [x for x in err.splitlines() if x.startswith("bench: error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"bench: error: host 127.0.0.1:{LAB2_PORT} stopped: ")
    assert "SSH connection lost" in errors[0]
    meta, samples, steps = read_run(tmp_path / "r", name)
    assert meta["status"] == "failed"
    assert list(meta["host_errors"]) == [f"127.0.0.1:{LAB2_PORT}"]
    # The local host finished every step, all kept; the remote one stopped early.
    local = [s for s in steps if s["platform"] == "c"]
    assert len(local) == 12 and all(s["status"] == "ran" for s in local)
    assert all(s["ok"] for s in samples if s["platform"] == "c")
    assert 1 <= len([s for s in steps if s["platform"] == "c2"]) < 12
    # Nothing left on either engine: the remote one was cleaned over a new connection.
    assert left_remote == [] and left_local == []


def test_closing_a_docker_backend_after_its_ssh_connection_dropped_prints_nothing(lab):
    """Closing pooled channels while paramiko's transport thread is still dying raised
    EOFError, and urllib3's finalizers printed the rest as "Exception ignored" on
    stderr (seen in CI under a dropped-connection run). Closing the transport first
    makes the close silent: about half of these trials failed before."""
    import concurrent.futures
    import gc
    import sys

    from bench.backends.docker_backend import DockerBackend, DockerSettings

    unraisable: list[str] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(repr(u.exc_value))
    try:
        for _ in range(12):
            backend = DockerBackend(
                DockerSettings(
                    name="c", backend="docker", image="busybox", host=f"{LAB}:{LAB2_PORT}"
                )
            )
            version = backend.connect().version
            # Several pooled connections, each a channel of the one SSH transport.
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _, v=version: v(), range(16)))
            killed = ssh_sessions_of(os.getpid(), LAB2_PORT)
            assert killed, "no SSH session to kill"
            for pid in killed:
                psutil.Process(pid).kill()
            time.sleep(0.001)  # the transport is noticing the loss: the racy moment
            backend.close()
            del version, backend
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []


def test_bench_clean_finds_a_runs_leftovers_on_the_hosts_its_scenario_names(tmp_path, lab):
    """A container a run left on the second dockerd (reached over SSH): `bench clean`
    searches this machine's default engines and does not see it; with the run's
    scenario it searches that host too, and removes it."""
    import docker

    run_id = f"cleanscn{os.getpid()}-20261130-000000-abcd"
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        f"name: two\ncounts: [1]\nhosts:\n  lab2: {LAB}:{LAB2_PORT}\nplatforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: c2, backend: docker, image: busybox, host: lab2}\n"
    )
    client = docker.DockerClient(base_url=DOCKER2_SOCK, timeout=30)
    try:
        client.containers.create(
            "bench/busybox:latest",
            name=f"{NAME_PREFIX}{run_id}-c2-s0-0",
            labels={LABEL_RUN: run_id, "bench.platform": "c2"},
            network_mode="none",
        )
        plain = subprocess.run(
            bench_cmd("clean", "--run", run_id), cwd=REPO, capture_output=True, text=True
        )
        assert plain.returncode == 0, plain.stderr
        assert "0 removed" in plain.stdout
        assert bench_containers(DOCKER2_SOCK, run_id)  # still there
        found = subprocess.run(
            bench_cmd("clean", "--run", run_id, "--scenario", str(scenario)),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert found.returncode == 0, found.stderr
        assert f"removed docker container {NAME_PREFIX}{run_id}-c2-s0-0" in found.stdout
        assert "1 removed" in found.stdout
        assert bench_containers(DOCKER2_SOCK, run_id) == []
    finally:
        purge_docker2(run_id)
        client.close()


def test_the_second_dockerd_leaves_the_hosts_network_alone(lab):
    """A dockerd started with `--bridge none` deletes the link named docker0 when it starts;
    in the host's namespace that was the first dockerd's default bridge (a lab host's own,
    with Docker CE): every `network: bridge` start then failed with "could not find bridge
    docker0". The lab's second dockerd runs in a network namespace of its own."""
    import docker

    pid = int(Path("/run/docker2.pid").read_text().strip())
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    client = docker.from_env(timeout=30)
    try:
        bridge = client.networks.get("bridge").attrs["Options"]["com.docker.network.bridge.name"]
    finally:
        client.close()
    assert Path("/sys/class/net", bridge).exists(), f"the first dockerd's bridge {bridge} is gone"
