"""Steps on the real engines, through the runner with the real backends.

Each test checks that nothing labelled with its run id is left behind, and removes
whatever is in a `finally`, so a failing test still leaves the host clean.
"""

from __future__ import annotations

import secrets

import pytest

from bench.backends import make_backend
from bench.plan.scenario import parse_scenario
from tests.integration.bench_runs import run_real


def test_docker_step_of_three(docker_api):
    sink, engines, left = run_real(
        "name: t\ntimeout: 30s\ncounts: [3]\n"
        "platforms:\n  - {name: c, backend: docker, image: busybox, memory: 64MiB}\n"
    )
    assert left == []
    assert len(sink.samples) == 3
    for s in sink.samples:
        assert s["ok"], s["error"]
        assert 0 < s["create_s"] < s["ready_s"] < 30
        # A container shares the host kernel: its marker reports the host's release.
        import platform

        assert s["guest_kernel"] == platform.release()
    assert engines["c"]["docker_version"] and engines["c"]["image_id"].startswith("sha256:")
    assert engines["c"]["rootfs_sha256"]


def test_docker_container_exiting_at_once_fails_fast_with_output(docker_api):
    sink, _, left = run_real(
        "name: t\ntimeout: 60s\n"
        "platforms:\n  - name: c\n    backend: docker\n    image: busybox\n"
        "    command: [sh, -c, 'echo about to fail; exit 3']\n"
    )
    assert left == []
    (s,) = sink.samples
    assert not s["ok"]
    assert "before BENCH_READY" in s["error"]
    assert "about to fail" in s["console_tail"]
    assert s["failure"] == "exited"
    # Noticed on stream end, not after the 60 s timeout.
    assert sink.steps[0]["wait_s"] < 10


def test_docker_command_is_argv_not_shell(docker_api):
    sink, _, left = run_real(
        "name: t\ntimeout: 30s\n"
        "platforms:\n  - name: c\n    backend: docker\n    image: busybox\n"
        "    command: [echo, 'BENCH_READY x=$(id)', ';', 'reboot']\n"
    )
    assert left == []
    (s,) = sink.samples
    # echo got the words literally: no shell expanded $(id) or ran `reboot`.
    assert s["ok"] and s["marker_fields"] == {"x": "$(id)"}


def test_docker_missing_image_is_refused_before_start(docker_api):
    from bench.model.errors import MissingImage

    sc = parse_scenario(
        "name: t\nplatforms:\n  - {name: c, backend: docker, image: 'bench/does-not-exist:1'}\n"
    )
    b = make_backend(sc.platforms[0])
    try:
        with pytest.raises(MissingImage, match="never pulls"):
            b.preflight()
    finally:
        b.close()


def test_libvirt_step_of_one_under_tcg(libvirt_conn):
    sink, engines, left = run_real(
        "name: t\ntimeout: 120s\ncounts: [1]\n"
        "platforms:\n  - {name: v, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}\n"
    )
    assert left == []
    (s,) = sink.samples
    assert s["ok"], (s["error"], s["console_tail"])
    assert s["accel"] == "tcg"
    assert 0 < s["create_s"] <= s["start_s"] < s["ready_s"] < 120
    # The VM runs its own kernel, reports its own uptime (seconds since its boot).
    assert s["guest_kernel"] == engines["v"]["guest_kernel"]
    assert 0 < s["guest_uptime_s"] < s["ready_s"] + 1
    assert engines["v"]["accel"] == "tcg" and engines["v"]["qemu_version"]
    assert engines["v"]["rootfs_sha256"]


def test_docker_halt_kills_then_destroy_removes(docker_api):
    """The first pass of a docker teardown: halt stops reading the container's output,
    then kills it; halting it again, or once it is gone, is no error; destroy removes it."""
    import threading
    import time

    from bench.backends.base import Instance
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.machines.console import Console

    run_id = f"test-{secrets.token_hex(3)}"
    backend = DockerBackend(DockerSettings(name="c", backend="docker", image="busybox"))
    changed = threading.Event()
    inst = Instance(f"bench-{run_id}-c-s0-0", run_id, "c", Console("BENCH_READY", changed.set))
    try:
        backend.preflight()
        backend.prepare()
        backend.create(inst)
        backend.start(inst)
        changed.wait(30)  # the console's first change: ready, or its output ended
        assert inst.console.ready_at is not None, inst.console.tail()
        backend.halt(inst)
        state = docker_api.inspect_container(inst.handle)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 137, state  # SIGKILL
        time.sleep(0.5)  # time for a still-attached stream to report its end
        assert inst.console.closed_reason is None  # the kill is not read as an exit
        backend.halt(inst)  # not running: the engine's 409
        backend.destroy(inst)
        assert backend.leftovers(run_id) == []
        backend.halt(inst)  # gone: the engine's 404
    finally:
        for x in backend.leftovers(run_id):
            backend.remove_leftover(x)
        backend.close()


def test_docker_network_none_is_an_empty_namespace_with_or_without_a_sandbox(docker_api):
    """On an Engine with the teardown deadlock (moby/moby#42545) `network: none` containers
    are made without libnetwork's sandbox; they are as isolated as under `none`: a network
    namespace of their own, holding only `lo`."""
    import os
    import re

    from bench.backends.docker_backend import lacks_deadlock_fix

    sink, engines, left = run_real(
        "name: t\ntimeout: 30s\n"
        "platforms:\n  - name: c\n    backend: docker\n    image: busybox\n"
        "    command:\n      - sh\n      - -c\n"
        "      - echo BENCH_READY net=$(readlink /proc/self/ns/net | tr -dc 0-9)"
        " links=$(ls /sys/class/net | tr '\\n' +)\n"
    )
    assert left == []
    (s,) = sink.samples
    assert s["ok"], s["error"]
    old_engine = lacks_deadlock_fix(docker_api.version()["Version"])
    assert engines["c"]["network_sandbox"] is not old_engine
    assert engines["c"]["network"] == "none"
    host_ns = re.sub(r"\D", "", os.readlink("/proc/self/ns/net"))
    assert s["marker_fields"]["net"] not in ("", host_ns)
    assert s["marker_fields"]["links"] == "lo+"
