"""Docker platforms under other OCI runtimes (`runtime:`), on the real engine.

runsc (gVisor) must run the bench image with its own kernel; crun cannot start any
container on a hybrid cgroup host (v1 plus a v2 hierarchy holding controllers) and must
be refused in preflight; a runtime the daemon does not know is a usage error. A runtime
scripts/setup-host.sh registers but the daemon lacks FAILS in CI (never skips).
"""

from __future__ import annotations

import platform
from pathlib import Path

from bench.backends.base import LABEL_RUN
from bench.backends.docker_backend import PROBE_RUN_ID
from tests.conftest import require_engine
from tests.integration.bench_runs import run_real
from tests.integration.test_cli import bench

CRUN_HYBRID = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"


def require_runtime(docker_api, name: str) -> dict:
    runtimes = docker_api.info().get("Runtimes") or {}
    require_engine(
        f"docker runtime {name}",
        name in runtimes,
        f"registered: {', '.join(sorted(runtimes))}; scripts/setup-host.sh registers it",
    )
    return runtimes[name]


def hybrid_cgroups() -> bool:
    """cgroup v1 with a v2 hierarchy that holds controllers: crun refuses such hosts."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return False  # pure v2
    try:
        return bool(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split())
    except OSError:
        return False


def probe_containers(docker_api) -> list[str]:
    return [
        c["Names"][0]
        for c in docker_api.containers(all=True, filters={"label": f"{LABEL_RUN}={PROBE_RUN_ID}"})
    ]


def test_runsc_step_of_two_runs_under_gvisors_own_kernel(docker_api):
    require_runtime(docker_api, "runsc")
    sink, engines, left = run_real(
        "name: t\ntimeout: 60s\ncounts: [2]\n"
        "platforms:\n  - {name: g, backend: docker, image: busybox, runtime: runsc}\n"
    )
    assert left == [] and probe_containers(docker_api) == []
    assert len(sink.samples) == 2
    for s in sink.samples:
        assert s["ok"], s["error"]
        assert s["runtime"] == "runsc"
        # gVisor answers uname itself: its own release, not the host's.
        assert s["guest_kernel"] == "4.4.0" != platform.release()
        assert s["extras"]["runtime_version"] == engines["g"]["runtime_version"]
    assert engines["g"]["runtime"] == "runsc" and engines["g"]["runtime_version"]


def test_crun_is_refused_in_preflight_with_its_own_reason(docker_api, tmp_path):
    require_runtime(docker_api, "crun")
    scenario = tmp_path / "crun.yaml"
    scenario.write_text(
        "name: crun\ncounts: [1]\nsettle: 0s\nwarmup: 0\n"
        "platforms:\n  - {name: c, backend: docker, image: busybox, runtime: crun}\n"
    )
    out = tmp_path / "results"
    p = bench("run", str(scenario), "--out", str(out))
    if not hybrid_cgroups():
        # crun works on pure cgroup v1 or v2 hosts: there it must simply run.
        assert p.returncode == 0, p.stdout + p.stderr
        return
    assert p.returncode == 3, p.stdout + p.stderr
    # Before it, at most the notice that a probe runs; the error itself is one line.
    lines = p.stderr.strip("\n").splitlines()
    assert all(line.startswith("probing runtime crun") for line in lines[:-1]), p.stderr
    assert lines[-1] == (
        f"bench: error: platform 'c': runtime 'crun' cannot start the bench image on this "
        f"host: {CRUN_HYBRID}"
    )
    assert not out.exists()  # no run was started
    assert probe_containers(docker_api) == []


def test_an_unknown_runtime_exits_2_naming_the_registered_ones(docker_api, tmp_path):
    registered = sorted(docker_api.info().get("Runtimes") or {})
    scenario = tmp_path / "nosuch.yaml"
    scenario.write_text(
        "name: nosuch\ncounts: [1]\n"
        "platforms:\n  - {name: c, backend: docker, image: busybox, runtime: nosuch}\n"
    )
    out = tmp_path / "results"
    p = bench("run", str(scenario), "--out", str(out))
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert "runtime: runtime 'nosuch' is not registered" in p.stderr
    assert f"(registered: {', '.join(registered)})" in p.stderr
    assert not out.exists() and probe_containers(docker_api) == []


def test_doctor_lists_each_runtime_and_whether_it_starts_the_bench_image(docker_api):
    runtimes = docker_api.info().get("Runtimes") or {}
    p = bench("doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = {
        name: next((x for x in p.stdout.splitlines() if f" runtime {name} " in x), "")
        for name in runtimes
    }
    for line in lines.values():
        assert line.startswith("ok   "), p.stdout
    if "runsc" in runtimes:
        assert "starts the bench image (kernel 4.4.0)" in lines["runsc"]
    if "crun" in runtimes and hybrid_cgroups():
        assert CRUN_HYBRID in lines["crun"] and "refused" in lines["crun"]
    assert probe_containers(docker_api) == []
