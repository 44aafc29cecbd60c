"""The podman backend on the real podman REST service (`podman system service`).

A step of two containers through the runner; a runtime the service does not really use
refused in preflight; then `bench run` as a subprocess interrupted (SIGINT) and killed
(kill -9, then `bench clean`). Each test removes whatever its runs left.
"""

from __future__ import annotations

import platform
import signal
import subprocess
import time

import pytest

from bench.backends import make_backend
from bench.model.errors import RuntimeUnusable
from bench.plan.scenario import parse_scenario
from tests.conftest import REPO
from tests.integration.bench_runs import ENV, assert_bench_clean, assert_interrupted, run_real
from tests.integration.engine_watch import bench_cmd

pytestmark = pytest.mark.podman

PODMAN = """\
name: podman
timeout: 60s
counts: [%(n)d]
settle: 0s
# No warm-up: the interrupt tests stop a measured step, not a warm-up's.
warmup: 0
platforms:
  - {name: p, backend: podman, image: busybox, memory: 64MiB%(extra)s}
"""


def scenario(n: int, extra: str = "") -> str:
    return PODMAN % {"n": n, "extra": extra}


def containers(client, run_prefix: str) -> list[str]:
    """podman containers of runs whose id starts with `run_prefix` (by bench's label)."""
    out = []
    for c in client.containers.list(all=True, filters={"label": "bench.run_id"}):
        if str(c.labels.get("bench.run_id", "")).startswith(run_prefix):
            out.append(c.name)
    return sorted(out)


@pytest.fixture
def podman_purge(podman_client, prefix):  # noqa: F811
    """After the test: remove by hand whatever `bench clean` did not."""
    try:
        yield
    finally:
        for name in containers(podman_client, prefix):
            podman_client.containers.get(name).remove(force=True)


def wait_running(client, run_prefix: str, n: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = containers(client, run_prefix)
        up = [x for x in names if client.containers.get(x).status == "running"]
        if len(up) >= n:
            return up
        time.sleep(0.05)
    raise AssertionError(f"{n} running containers of run {run_prefix}* not seen in {timeout}s")


def test_podman_step_of_two(podman_client):
    sink, engines, left = run_real(scenario(2))
    assert left == []
    assert containers(podman_client, sink.samples[0]["run_id"]) == []
    e = engines["p"]
    assert e["engine"] == "podman" and e["podman_version"]
    assert e["runtime"] == "runc" and e["runtime_version"]
    assert e["image_id"] and e["rootfs_sha256"]
    # Clamped to the hard limits: podman's own defaults fail on a host with lower ones.
    import resource

    for name, const in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(const)[1]
        assert 0 < e["rlimits"][name] <= (hard if hard >= 0 else 2**63)
    assert len(sink.samples) == 2
    for s in sink.samples:
        assert s["ok"], (s["error"], s["console_tail"])
        assert s["backend"] == "podman" and s["kind"] == "container"
        # The marker may come before podman's start call has returned (podman answers
        # after the runtime started the container): ready only follows create.
        assert 0 < s["create_s"] <= s["start_s"] < 60
        assert s["create_s"] < s["ready_s"] < 60
        # A container shares the host kernel.
        assert s["guest_kernel"] == platform.release()
        # The runtime podman really used (inspect's OCIRuntime) and its version.
        assert s["runtime"] == "runc" and s["extras"]["runtime_version"] == e["runtime_version"]
        # Process view: conmon plus the container's init (and its sleep).
        assert s["processes"] >= 2 and s["pss_bytes"] > 0
        assert s["engine_mem_bytes"] and s["engine_mem_bytes"] < 64 * 2**20
        assert "podman stats" in s["engine_mem_source"]
        assert s["disk_writable_bytes"] is not None and s["disk_writable_bytes"] >= 0


def test_a_runtime_the_service_does_not_use_is_refused(podman_client):
    """podman 4.3 ignores a container's runtime through its API: a `runtime:` other than
    the service's own must be refused before a run, never measured under another name."""
    default = podman_client.info()["host"]["ociRuntime"]["name"]
    other = "crun" if default != "crun" else "runc"
    sc = parse_scenario(scenario(1, f", runtime: {other}"))
    backend = make_backend(sc.platforms[0])
    try:
        try:
            backend.preflight()
            backend.prepare()
        except RuntimeUnusable as e:
            assert f"runtime {other!r}" in str(e) and "\n" not in str(e)
        else:
            # A podman that honours the runtime: then the probe really ran it.
            assert podman_client.info()["version"]["Version"] >= "5"
    finally:
        backend.close()
    assert containers(podman_client, "runtime-probe") == []


def test_doctor_shows_podman_and_its_runtime(podman_client):
    p = subprocess.run(
        bench_cmd("doctor"),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=300,
    )
    lines = [x for x in p.stdout.splitlines() if "podman" in x]
    version = podman_client.version()["Version"]
    assert any(x.startswith("ok") and f"podman {version} at unix://" in x for x in lines), p.stdout
    runtime = [x for x in lines if "podman runtime" in x]
    assert runtime and "runc" in runtime[0] and "starts the bench image" in runtime[0], p.stdout


def test_sigint_with_podman_containers_up_leaves_nothing(
    runs,  # noqa: F811
    prefix,  # noqa: F811
    podman_client,
    podman_purge,
):
    run = runs(scenario(2, ", ready: NEVER_PRINTED_MARKER"))
    wait_running(podman_client, prefix, 2)
    run.signal(signal.SIGINT)
    rc = run.wait()
    left = containers(podman_client, prefix)
    assert_interrupted(run, rc)
    assert left == []


def test_kill9_then_bench_clean_reaps_podman_containers(
    runs,  # noqa: F811
    prefix,  # noqa: F811
    podman_client,
    podman_purge,
):
    run = runs(scenario(2, ", ready: NEVER_PRINTED_MARKER"))
    up = wait_running(podman_client, prefix, 2)
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    assert containers(podman_client, prefix) == sorted(up)  # what kill -9 leaves
    clean = assert_bench_clean(run.run_id)
    assert "2 removed" in clean.stdout, clean.stdout
    assert all(f"podman container {name}" in clean.stdout for name in up), clean.stdout
    assert containers(podman_client, prefix) == []
