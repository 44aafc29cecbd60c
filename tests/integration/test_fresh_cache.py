"""A new machine's first commands: every probe and build takes its uncached path.

Each test gets a cache and state folder of its own, empty but for the guest kernel the
set-up installs, as on a host where bench never ran. A KVM probe that crashed on every
fresh host (a settings object built with a size without a unit) once passed CI because
CI's machine had the probe's answer cached from earlier sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.backends.docker_backend import lacks_deadlock_fix
from bench.model import paths
from tests.conftest import REPO
from tests.integration.engine_watch import bench_cmd


@pytest.fixture
def fresh_env(tmp_path) -> dict[str, str]:
    cache, state = tmp_path / "cache", tmp_path / "state"
    for d in (tmp_path, cache, state):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)  # qemu under qemu:///system reads the images as its own user
    kernels = sorted((paths.cache_dir() / "kernel").glob("vmlinuz-*"))
    if kernels:
        (cache / "kernel").mkdir(mode=0o755)
        for k in kernels:
            shutil.copy2(k, cache / "kernel" / k.name)
    return {
        **os.environ,
        "BENCH_CACHE_DIR": str(cache),
        "BENCH_STATE_DIR": str(state),
        "COLUMNS": "200",
    }


def bench(env: dict[str, str], *args: str, timeout: float = 600):
    return subprocess.run(
        bench_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )


def kvm_offered() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def probes_said(stderr: str) -> list[str]:
    # podman's runtime probe is not cached (it costs one container start): leave it out.
    return [
        line for line in stderr.splitlines() if line.startswith("probing") and "podman" not in line
    ]


def test_doctor_on_an_empty_cache_probes_once_then_reads_the_cache(
    fresh_env, docker_api, podman_client, libvirt_conn, qemu_binary
):
    cache = Path(fresh_env["BENCH_CACHE_DIR"])
    built = bench(fresh_env, "images", "build")
    assert built.returncode == 0, built.stdout + built.stderr
    assert not (cache / "accel-probe.json").exists()

    first = bench(fresh_env, "doctor")
    assert first.returncode == 0, first.stdout + first.stderr
    said = probes_said(first.stderr)
    # Each probe that waits says so once, before it waits.
    assert len(said) == len(set(said)), first.stderr
    runtimes = docker_api.info().get("Runtimes") or {}
    for runtime in runtimes:
        assert f"probing runtime {runtime} (once per host, then cached)..." in said
    cached_runtimes = json.loads((cache / "runtime-probe.json").read_text())
    assert {v["runtime"] for v in cached_runtimes.values()} == set(runtimes)
    if kvm_offered():
        assert any("probing KVM with a test boot" in s for s in said), first.stderr
        assert any("probing KVM for direct QEMU" in s for s in said), first.stderr
        accel = json.loads((cache / "accel-probe.json").read_text())
        assert len(accel) == 2  # libvirt's key and direct QEMU's
        assert {v["accel"] for v in accel.values()} <= {"kvm", "tcg"}
    assert "ok   qemu accel" in first.stdout and "ok   accel" in first.stdout, first.stdout
    # An engine with the teardown deadlock is named, as a warning that keeps exit 0.
    old_engine = lacks_deadlock_fix(docker_api.version()["Version"])
    assert ("warn docker bug" in first.stdout) is old_engine, first.stdout

    second = bench(fresh_env, "doctor")
    assert second.returncode == 0, second.stdout + second.stderr
    assert probes_said(second.stderr) == [], second.stderr
    assert first.stdout.count("TCG only") == second.stdout.count("TCG only")


def test_run_with_accel_auto_on_an_empty_cache(tmp_path, fresh_env, qemu_binary, libvirt_conn):
    """The scenario path of the probe: a direct-QEMU platform with `accel: auto` (as in
    scenarios/spectrum.yaml) on a host whose probe never ran."""
    scenario = tmp_path / "fresh.yaml"
    scenario.write_text(
        "name: fresh\nrepeat: 1\ntimeout: 120s\ncounts: [1]\nwarmup: 0\n"
        "platforms:\n"
        "  - {name: microvm, backend: qemu, machine: microvm, accel: auto, image: busybox,"
        " memory: 192MiB}\n"
    )
    out = tmp_path / "results"
    p = bench(fresh_env, "run", str(scenario), "--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["ok"] for s in samples] == [True]
    cache = Path(fresh_env["BENCH_CACHE_DIR"])
    if kvm_offered():
        assert "probing KVM for direct QEMU" in p.stderr
        assert len(json.loads((cache / "accel-probe.json").read_text())) == 1
    # The run built the VM image it needed in the empty cache.
    assert (cache / "images" / "busybox" / "initramfs.cpio.gz").is_file()
