"""Interrupts and crashes, as a user causes them: `bench run` as a subprocess on the real
engines, a signal (or kill -9) sent at a chosen moment of the run, then what is left.

Each test gives its run a unique `--name` prefix, watches the engines for what that run
creates (docker's event stream, libvirt polled every 20 ms) to pick the moment, and
removes everything of that prefix in a `finally` (`bench clean --run`, then the SDKs),
so a failing test still leaves the host clean.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.model.results import load_run
from tests.integration.bench_runs import (
    EXIT_INTERRUPTED,
    EXIT_WITHIN_S,
    BenchRun,
    assert_bench_clean,
    assert_interrupted,
)
from tests.integration.engine_watch import (
    DockerEvents,
    action,
    domain_running,
    overlay_files,
    remaining,
    wait_domain,
)

# No warm-up in these scenarios: they interrupt measured steps, and each waits for the
# first engine event of a step (a warm-up instance would be the first instead).
DOCKER_8 = """\
name: interrupt
timeout: 60s
counts: [8]
settle: 0s
warmup: 0
launch: {concurrency: 2}
platforms:
  - {name: c, backend: docker, image: busybox, memory: 64MiB}
"""

# A step that stays up: its instances never print the marker, so the runner waits for
# them (up to the timeout) while they all run. A first, normal step gives samples.
DOCKER_HELD = """\
name: held
timeout: 120s
settle: 0s
warmup: 0
launch: {concurrency: 4}
platforms:
  - {name: warm, backend: docker, image: busybox, memory: 64MiB, counts: [2]}
  - name: held
    backend: docker
    image: busybox
    memory: 64MiB
    counts: [%(n)d]
    ready: NEVER_PRINTED_MARKER
"""

VM_BUSYBOX = """\
name: vm
timeout: 120s
counts: [1]
settle: 0s
warmup: 0
platforms:
  - {name: vm, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}
"""

# A blank qcow2 base: the guest finds nothing to boot and sits in the firmware, never
# ready, but each instance has its own overlay file, which must not leak either.
VM_DISK = """\
name: vmdisk
timeout: 120s
counts: [1]
settle: 0s
warmup: 0
platforms:
  - {name: vm, backend: libvirt, image: blank, disk: %(disk)s, accel: tcg, memory: 128MiB}
"""

TINY = """\
name: tiny
timeout: 60s
counts: [1]
settle: 0s
warmup: 0
platforms:
  - {name: c, backend: docker, image: busybox, memory: 64MiB}
"""


@pytest.fixture
def docker_events(docker_api, prefix):
    watch = DockerEvents(prefix)
    try:
        yield watch
    finally:
        watch.close()


@pytest.fixture
def blank_disk():
    """A blank qcow2 base image where QEMU (not root under qemu:///system) can read it."""
    d = Path(tempfile.mkdtemp(prefix="bench-it-", dir="/var/tmp"))
    try:
        d.chmod(0o755)
        base = d / "base.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        base.chmod(0o644)
        yield base
    finally:
        shutil.rmtree(d, ignore_errors=True)


def vm_scenario(kind: str, disk: Path | None) -> str:
    return VM_BUSYBOX if kind == "busybox" else VM_DISK % {"disk": disk}


# -- SIGINT / SIGTERM ----------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_launch_of_8_containers(sig, runs, docker_events, docker_api, prefix):
    run = runs(DOCKER_8)
    docker_events.wait_for(action("create"), timeout=60)
    run.signal(sig)
    rc = run.wait()
    left = remaining(prefix, docker_api)  # right after exit: nothing may still be going
    creates = [e for e in docker_events.events if e.action == "create"]
    print(f"{sig.name} during launch: exit {rc} in {run.exit_s:.2f}s, {len(creates)} created")
    assert_interrupted(run, rc)
    assert left == []
    # The signal landed during launch (not after it): no new launch began afterwards.
    assert len(creates) < 8, creates
    # Instances cut short say so; bench's own teardown is not mistaken for an exit.
    failures = {s["failure"] for s in load_run(run.run_dir).samples if not s["ok"]}
    assert failures <= {"interrupted"}, failures


@pytest.mark.docker
def test_sigint_during_warm_up_destroys_it_and_keeps_no_sample(
    runs, docker_events, docker_api, prefix
):
    run = runs(DOCKER_8.replace("warmup: 0", "warmup: 2"))
    # The first containers of the run are the warm-up's: interrupt while they start.
    docker_events.wait_for(action("create"), timeout=60)
    run.signal(signal.SIGINT)
    rc = run.wait()
    left = remaining(prefix, docker_api)
    names = {e.name for e in docker_events.events if e.action == "create"}
    assert_interrupted(run, rc)
    assert left == []
    assert names and all("-w-" in n for n in names), names  # warm-up instances only
    stored = load_run(run.run_dir)
    assert stored.samples == [] and stored.steps == []  # a warm-up is never a sample


@pytest.mark.libvirt
@pytest.mark.parametrize("kind", ["busybox", "disk"])
def test_sigint_while_vm_boots(kind, runs, libvirt_conn, prefix, request):
    disk = request.getfixturevalue("blank_disk") if kind == "disk" else None
    run = runs(vm_scenario(kind, disk))
    wait_domain(libvirt_conn, prefix, timeout=60)
    if kind == "disk":
        assert overlay_files(prefix), "the instance's overlay should exist once its domain does"
    run.signal(signal.SIGINT)
    rc = run.wait()
    left = remaining(prefix, libvirt_conn=libvirt_conn)
    print(f"SIGINT during VM boot ({kind}): exit {rc} in {run.exit_s:.2f}s")
    assert_interrupted(run, rc)
    assert left == []  # no domain, no overlay file


@pytest.mark.docker
def test_sigint_during_teardown(runs, docker_events, docker_api, prefix):
    run = runs(DOCKER_8)
    # All 8 ready, then teardown: the first container bench kills (remove, force=True).
    docker_events.wait_for(action("kill", "die", "destroy"), timeout=60)
    run.signal(signal.SIGINT)
    rc = run.wait()
    left = remaining(prefix, docker_api)
    creates = [e for e in docker_events.events if e.action == "create"]
    kept = len(load_run(run.run_dir).samples) if run.run_dirs else None
    print(f"SIGINT during teardown: exit {rc} in {run.exit_s:.2f}s, {kept} samples kept")
    assert len(creates) == 8  # the signal came after every launch: in teardown
    assert_interrupted(run, rc)
    # Every container was ready and measured before teardown: none of it is lost.
    samples = load_run(run.run_dir).samples
    assert len(samples) == 8 and all(s["ok"] for s in samples), samples
    assert left == []


@pytest.mark.docker
def test_second_sigint_forces_exit_and_bench_clean_finishes(
    runs, docker_events, docker_api, prefix
):
    run = runs(DOCKER_8)
    docker_events.wait_for(action("create"), timeout=60)
    first = docker_events.mark()
    run.signal(signal.SIGINT)
    # Cleanup has begun once bench removes its first container: the second Ctrl-C.
    docker_events.wait_for(action("kill", "die", "destroy"), after=first, timeout=EXIT_WITHIN_S)
    run.signal(signal.SIGINT)
    rc = run.wait()
    actions = [e.action for e in docker_events.events]
    print(f"second SIGINT: exit {rc} in {run.exit_s:.3f}s, events {actions}")
    assert rc == EXIT_INTERRUPTED, run.report()
    assert run.exit_s is not None and run.exit_s < 3, "a second Ctrl-C must exit at once"
    assert f"bench clean --run {run.run_id}" in run.stderr, run.report()
    assert load_run(run.run_dir).status == "interrupted"
    print("left by the forced exit:", remaining(prefix, docker_api))
    assert_bench_clean(run.run_id)
    assert remaining(prefix, docker_api) == []


# -- kill -9 -------------------------------------------------------------------------


def kill9_with_containers_up(runs, docker_events, n: int) -> BenchRun:
    """A run killed with SIGKILL while its second step's n containers all run."""
    run = runs(DOCKER_HELD % {"n": n})
    docker_events.wait_for(lambda e: e.action == "start" and e.platform == "held", n, timeout=60)
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    return run


@pytest.mark.docker
def test_kill9_keeps_results_and_bench_clean_removes_containers(
    runs, docker_events, docker_api, prefix
):
    run = kill9_with_containers_up(runs, docker_events, 8)
    stored = load_run(run.run_dir)
    assert stored.status == "incomplete"  # still "running" on disk, its pid gone
    assert stored.metadata["status"] == "running"
    # The first step finished before the kill: its samples and step record are kept.
    assert [s["platform"] for s in stored.samples] == ["warm", "warm"]
    assert all(s["ok"] for s in stored.samples)
    assert [s["platform"] for s in stored.steps] == ["warm"]
    assert len(remaining(prefix, docker_api)) == 8  # what kill -9 leaves behind
    clean = assert_bench_clean(run.run_id)
    assert "8 removed" in clean.stdout, clean.stdout
    assert remaining(prefix, docker_api) == []


@pytest.mark.libvirt
@pytest.mark.parametrize("kind", ["busybox", "disk"])
def test_kill9_during_vm_and_bench_clean_removes_domain_and_overlay(
    kind, runs, libvirt_conn, prefix, request
):
    disk = request.getfixturevalue("blank_disk") if kind == "disk" else None
    run = runs(vm_scenario(kind, disk))
    wait_domain(libvirt_conn, prefix, ready=domain_running, timeout=60)
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    stored = load_run(run.run_dir)
    assert stored.status == "incomplete" and stored.samples == []
    left = remaining(prefix, libvirt_conn=libvirt_conn)
    assert len(left) == (2 if kind == "disk" else 1), left  # the domain (+ its overlay)
    assert_bench_clean(run.run_id)
    assert remaining(prefix, libvirt_conn=libvirt_conn) == []


@pytest.mark.docker
def test_run_warns_about_leftovers_of_a_killed_run(runs, docker_events, docker_api, prefix):
    killed = kill9_with_containers_up(runs, docker_events, 2)
    tiny = runs(TINY, name=f"{prefix}-tiny")
    rc = tiny.wait(120)
    assert rc == 0, tiny.report()
    warning = " ".join(tiny.stderr.split())
    assert "warning:" in warning and "left over" in warning, tiny.report()
    assert "`bench clean`" in warning, tiny.report()
    assert killed.run_id in warning or ", ..." in warning, tiny.report()
    # The tiny run itself left nothing.
    assert remaining(tiny.run_id, docker_api) == []
    assert_bench_clean(killed.run_id)
    assert remaining(prefix, docker_api) == []
