"""`bench` as a user runs it: a subprocess, real engines, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import SCHEMA_VERSION
from tests.conftest import REPO
from tests.integration.bench_runs import start_run
from tests.integration.engine_watch import bench_cmd, containers, purge

SMALL = """\
name: small
repeat: 1
timeout: 120s
counts: [1]
platforms:
  - {name: container, backend: docker, image: busybox, memory: 64MiB, counts: [1, 2]}
  - {name: vm, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}
"""


def bench(*args: str, cwd: Path | None = None, timeout: float = 600):
    return subprocess.run(
        bench_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env={**os.environ, "COLUMNS": "200"},
    )


def bench_leftovers(run_id: str) -> list[str]:
    import docker
    import libvirt

    api = docker.APIClient(version="auto")
    names = [
        c["Names"][0] for c in api.containers(all=True, filters={"label": f"bench.run_id={run_id}"})
    ]
    api.close()
    conn = libvirt.open("qemu:///system")
    names += [d.name() for d in conn.listAllDomains() if run_id in d.name()]
    conn.close()
    return names


def test_run_small_scenario_end_to_end(tmp_path, docker_api, libvirt_conn):
    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL)
    out = tmp_path / "results"
    p = bench("run", str(scenario), "--out", str(out))
    assert p.returncode == 0, p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    assert run_dir.parent == out and run_dir.is_dir()
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["schema_version"] == SCHEMA_VERSION == 2
    assert meta["scenario_text"] == SMALL and len(meta["scenario_sha256"]) == 64
    assert meta["host"]["cpu_cores"] >= 1 and meta["host"]["mem_total_bytes"] > 0
    assert meta["engines"]["container"]["docker_version"]
    assert meta["engines"]["vm"]["accel"] == "tcg"
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 1 + 2 + 1
    assert all(s["ok"] and s["ready_s"] > 0 for s in samples)
    # One host record per distinct host, and every sample says which host it ran on.
    (key,) = meta["hosts"]
    assert {s["host"] for s in samples} == {key} == {e["host"] for e in meta["engines"].values()}
    # The summary names both platforms with their p50.
    assert "container" in p.stdout and "vm" in p.stdout and "tcg" in p.stdout
    assert bench_leftovers(meta["run_id"]) == []


def test_bad_scenario_exits_2_with_one_line_and_starts_nothing(tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(SMALL.replace("memory: 64MiB", "memory: 12XB"))
    out = tmp_path / "results"
    p = bench("run", str(scenario), "--out", str(out))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"bench: error: {scenario}:6: platforms[0].memory: bad size")
    assert not out.exists()


def test_validate_prints_plan_and_starts_nothing(docker_api, libvirt_conn):
    p = bench("validate", "scenarios/quickstart.yaml")
    assert p.returncode == 0, p.stderr
    assert "48 instances in total" in p.stdout
    assert "container" in p.stdout and "libvirt" in p.stdout


def test_unreachable_docker_is_one_line_exit_3(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nplatforms:\n  - name: c\n    backend: docker\n    image: busybox\n"
        f"    host: unix://{tmp_path}/no-such.sock\n"
    )
    p = bench("run", str(scenario), "--out", str(tmp_path / "r"))
    assert p.returncode == 3
    assert p.stderr.count("\n") == 1 and "cannot reach Docker Engine" in p.stderr
    assert not (tmp_path / "r").exists()


def test_help_loads_no_heavy_module():
    # `bench --help` must answer at once: the CLI module imports no SDK, no pandas.
    code = (
        "import sys, bench.cli; "
        "print(sorted(m for m in ('pandas', 'matplotlib', 'scipy', 'numpy', 'docker', "
        "'libvirt', 'pydantic', 'yaml') if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr
    p = bench("--help")
    assert p.returncode == 0 and "run" in p.stdout


@pytest.mark.parametrize("cmd", [["run", "--help"], ["clean", "--help"], ["doctor", "--help"]])
def test_subcommand_help(cmd):
    p = bench(*cmd)
    assert p.returncode == 0 and "Usage" in p.stdout


def test_doctor_reports_engines_and_accel(docker_api, libvirt_conn):
    p = bench("doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    for check in ("docker", "libvirt", "accel", "vm image", "docker image"):
        assert any(line.startswith(f"ok   {check} ") for line in p.stdout.splitlines()), p.stdout
    assert "KVM boots guests" in p.stdout or "TCG only" in p.stdout


def test_clean_dry_run_lists_nothing_it_does_not_own(docker_api, libvirt_conn):
    p = bench("clean", "--dry-run", "--run", "no-such-run-20000101-000000-0000")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1] == "0 would remove, 0 failed"


def test_clean_leaves_a_live_run_alone(tmp_path, docker_api):
    import signal

    scenario = tmp_path / "live.yaml"
    scenario.write_text(
        "name: live\nsettle: 60s\ntimeout: 30s\ncounts: [2]\n"
        "platforms:\n  - {name: c, backend: docker, image: busybox}\n"
    )
    name = f"live{os.getpid()}"
    proc = start_run(scenario, tmp_path / "r", name, new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(containers(docker_api, name)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(containers(docker_api, name)) == 2
        p = bench("clean")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "left alone: 2 of run" in p.stdout and "still running" in p.stdout
        assert len(containers(docker_api, name)) == 2  # the live run's were not touched
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
        left = containers(docker_api, name)
        purge(name, [])
    assert rc == 130
    assert left == []
