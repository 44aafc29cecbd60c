"""The podman backend's pure pieces: its settings, the ulimit clamp, the libpod spec."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.backends import backend_class, cli_options
from bench.backends.docker_backend import DockerSettings
from bench.backends.podman_backend import (
    DEFAULT_ADDRESS,
    WANTED_RLIMITS,
    PodmanBackend,
    PodmanSettings,
    clamp_rlimits,
    container_spec,
    own_hard_limits,
    parse_limits,
    podman_reason,
)
from bench.plan.scenario import parse_scenario

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             32768                32768                processes
Max open files            1024                 20000                files
Max locked memory         8388608              8388608              bytes
"""


def settings(**kw) -> PodmanSettings:
    return PodmanSettings(name="p", backend="podman", image="busybox", **kw)


def test_registered_and_its_settings_are_dockers_keys():
    assert backend_class("podman") is PodmanBackend
    assert issubclass(PodmanSettings, DockerSettings)
    shared = set(DockerSettings.model_fields) - {"backend"}
    assert shared <= set(PodmanSettings.model_fields)


def test_runc_by_default_not_podmans_crun():
    assert settings().runtime == "runc"
    assert settings(runtime="crun").runtime == "crun"
    with pytest.raises(ValidationError):
        settings(runtime="bad runtime")


@pytest.mark.parametrize(("runtime", "kind"), [("runc", "container"), ("runsc", "sandbox")])
def test_kind_follows_the_runtime(runtime, kind):
    assert PodmanBackend(settings(runtime=runtime)).kind == kind


def test_only_a_local_unix_socket():
    assert settings(host="unix:///tmp/p.sock").host == "unix:///tmp/p.sock"
    with pytest.raises(ValidationError, match="local podman service"):
        settings(host="tcp://127.0.0.1:8080")


def test_address_from_key_then_container_host_then_default(monkeypatch):
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    assert PodmanBackend(settings()).address == DEFAULT_ADDRESS
    monkeypatch.setenv("CONTAINER_HOST", "unix:///tmp/x.sock")
    assert PodmanBackend(settings()).address == "unix:///tmp/x.sock"
    assert PodmanBackend(settings(host="unix:///tmp/y.sock")).address == "unix:///tmp/y.sock"


def test_a_scenario_takes_podman_platforms():
    sc = parse_scenario(
        "name: s\ncounts: [1]\nplatforms:\n"
        "  - {name: p, backend: podman, image: busybox, memory: 64MiB, cpus: 0.5}\n"
    )
    p = sc.platforms[0]
    assert isinstance(p, PodmanSettings)
    assert (p.memory, p.cpus, p.runtime, p.network) == (64 * 2**20, 0.5, "runc", "none")


def test_cli_options_podman_url_and_skip_podman():
    flags = {o.flag: o for o in cli_options("images")}
    assert "--podman-url" in flags and "--skip-podman" in flags
    assert "--skip-podman" not in {o.flag for o in cli_options("doctor")}


def test_parse_limits_reads_hard_limits():
    assert parse_limits(LIMITS) == {"nofile": 20000, "nproc": 32768}
    unlimited = "Max processes             unlimited            unlimited            processes\n"
    assert parse_limits(unlimited) == {"nproc": None}


def test_clamp_to_the_lowest_hard_limit():
    got = clamp_rlimits(WANTED_RLIMITS, {"nofile": 20000, "nproc": 96365}, {"nproc": 32768})
    assert got == [
        {"type": "nofile", "soft": 20000, "hard": 20000},
        {"type": "nproc", "soft": 32768, "hard": 32768},
    ]


def test_clamp_keeps_podmans_defaults_when_the_host_allows_them():
    got = clamp_rlimits(WANTED_RLIMITS, {"nofile": None, "nproc": 2**22}, {})
    assert {r["type"]: r["hard"] for r in got} == WANTED_RLIMITS
    assert all(r["soft"] == r["hard"] for r in got)


def test_own_hard_limits_are_this_process_s():
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert own_hard_limits()["nofile"] == (None if hard == resource.RLIM_INFINITY else hard)


def test_container_spec():
    s = settings(memory="64MiB", cpus=1.5, env={"A": "1"}, command="sh -c 'echo hi'")
    rl = [{"type": "nofile", "soft": 1024, "hard": 1024}]
    spec = container_spec(s, image="bench/busybox:latest", name="n", labels={"k": "v"}, rlimits=rl)
    assert spec["oci_runtime"] == "runc"
    assert spec["netns"] == {"nsmode": "none"}
    assert spec["r_limits"] == rl
    assert spec["command"] == ["sh", "-c", "echo hi"]
    assert spec["env"] == {"A": "1"}
    assert spec["resource_limits"] == {
        "memory": {"limit": 64 * 2**20, "swap": 64 * 2**20},
        "cpu": {"quota": 150_000, "period": 100_000},
    }
    bare = container_spec(settings(network="mynet"), image="i", name="n", labels={}, rlimits=[])
    assert "command" not in bare and "resource_limits" not in bare and "env" not in bare
    assert bare["netns"] == {"nsmode": "bridge"} and bare["networks"] == {"mynet": {}}
    assert "volumes" not in bare
    with_volume = container_spec(
        settings(volume=True), image="i", name="n", labels={}, rlimits=[], volume="n-vol"
    )
    assert with_volume["volumes"] == [{"Name": "n-vol", "Dest": "/bench-volume"}]


def test_podman_reason_is_the_runtimes_own():
    reason = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
    assert podman_reason(f"crun: {reason}: OCI runtime error", "crun") == reason


def test_engine_events_are_asked_again_once_when_podman_has_not_written_them_yet(monkeypatch):
    import json
    import time

    from bench.backends import podman_backend
    from bench.backends.base import Instance
    from bench.machines.console import Console

    inst = Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY"))
    inst.launch_wall_ns = time.time_ns()
    create = {"Type": "container", "Action": "create", "timeNano": inst.launch_wall_ns + 10,
              "Actor": {"Attributes": {"name": inst.name}}}  # fmt: skip
    start = {**create, "Action": "start", "timeNano": inst.launch_wall_ns + 20}
    answers = [[create], [create, start]]  # the start event written after the first read

    class Response:
        def __init__(self, rows):
            self.text = "\n".join(json.dumps(r) for r in rows)

    backend = PodmanBackend(settings())
    calls = []
    monkeypatch.setattr(
        backend, "_call", lambda *a, **k: calls.append(a) or Response(answers.pop(0))
    )
    monkeypatch.setattr(podman_backend.time, "sleep", lambda s: None)
    events = backend.engine_events([inst])
    assert len(calls) == 2
    assert events.wall_ns[inst.name] == {"create": create["timeNano"], "start": start["timeNano"]}
