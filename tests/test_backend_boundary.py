"""The CLI knows no backend by name: `bench doctor`, `bench clean` and `bench images
build` reach every backend through the registry, options included. Shown with the fake
backend as the only registered one, and no engine anywhere."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bench.backends
from bench import cli
from bench.backends.base import Backend, CliOption, Leftover
from bench.backends.fake import FakeBackend, FakeEngine
from bench.machines.images import VmArtifacts
from tests.conftest import REPO

FAKE_ONLY = {"fake": "bench.backends.fake:FakeBackend"}


@pytest.fixture
def engine(monkeypatch):
    """The fake backend as the only registered one, with an engine plugged in."""
    monkeypatch.setattr(bench.backends, "BACKENDS", FAKE_ONLY)
    monkeypatch.setattr(FakeBackend, "engine", FakeEngine())
    cli._backend_params.cache_clear()
    yield FakeBackend.engine
    cli._backend_params.cache_clear()


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def test_doctor_reaches_the_fake_through_the_registry(engine, monkeypatch):
    from bench.machines import images, rootfs

    monkeypatch.setattr(rootfs, "find_busybox", lambda: Path("/bin/busybox"))
    monkeypatch.setattr(rootfs, "busybox_version", lambda _p: "BusyBox v1")
    monkeypatch.setattr(images, "find_kernel", lambda: Path("/boot/vmlinuz"))
    monkeypatch.setattr(images, "kernel_release", lambda _p: "6.1")
    p = invoke("doctor", "--fake-address", "fake://here")
    assert p.exit_code == 0, p.output
    assert "ok   fake          fake engine at fake://here" in p.output
    assert engine.calls == [("doctor", {"fake_address": "fake://here"})]

    engine.healthy = False
    p = invoke("doctor")
    assert p.exit_code == 3, p.output  # an engine check failed: like bench run
    assert "FAIL fake          no fake engine at fake://default" in p.output


def test_clean_reaches_the_fake_and_leaves_another_hosts_run_alone(engine):
    dead = Leftover("fake", "container", "bench-old-c-s0-0", "old")
    elsewhere = Leftover("fake", "container", "bench-far-c-s0-0", "far", os.getpid(), "far-host")
    engine.leftovers += [dead, elsewhere]

    p = invoke("clean", "--dry-run", "--fake-address", "fake://here")
    assert p.exit_code == 0, p.output
    assert "would remove fake container bench-old-c-s0-0" in p.output
    assert "left alone: 1 of run far, owned by bench on host far-host" in p.output
    assert p.output.strip().splitlines()[-1] == "1 would remove, 0 failed"
    assert engine.calls == [("clean", {"fake_address": "fake://here"})]
    assert engine.leftovers == [dead, elsewhere]

    p = invoke("clean")
    assert p.exit_code == 0, p.output
    assert engine.leftovers == [elsewhere]
    p = invoke("clean", "--force")
    assert p.exit_code == 0, p.output
    assert engine.leftovers == []


def test_images_build_reaches_the_fake_and_its_own_skip_flag(engine, monkeypatch, tmp_path):
    from bench.machines import images

    built = VmArtifacts(
        tmp_path / "vmlinuz",
        tmp_path / "initrd",
        "",
        {"busybox": "BusyBox v1", "rootfs_sha256": "ab" * 32},
    )
    monkeypatch.setattr(images, "build_rootfs", lambda name, kernel=None: built)
    p = invoke("images", "build", "--fake-address", "fake://here")
    assert p.exit_code == 0, p.output
    assert "fake     busybox (nothing to build)" in p.output
    assert engine.calls == [("images", {"fake_address": "fake://here", "skip_fake": False})]

    p = invoke("images", "build", "--skip-fake")
    assert p.exit_code == 0, p.output
    assert "fake " not in p.output and len(engine.calls) == 1


def test_an_unplugged_fake_is_invisible_to_users():
    """With no engine plugged in, the registered fake adds no check, engine or image,
    and its options stay out of --help while the real backends' options are listed."""
    cli._backend_params.cache_clear()
    assert FakeBackend.engine is None
    assert FakeBackend.doctor_checks({}, print) == []
    assert FakeBackend.for_cleanup({}) == []
    assert FakeBackend.build_images("busybox", {}, print) == []
    for command in (["clean", "--help"], ["doctor", "--help"], ["images", "build", "--help"]):
        p = invoke(*command)
        assert p.exit_code == 0 and "--docker-host" in p.output, p.output
        assert "--fake-address" not in p.output and "--skip-fake" not in p.output
    assert "--libvirt-uri" in invoke("clean", "--help").output
    assert "--skip-docker" in invoke("images", "build", "--help").output
    assert "--libvirt-uri" not in invoke("images", "build", "--help").output


def test_legacy_engine_flags_still_parse_and_reach_their_backends(monkeypatch):
    seen = {}

    def for_cleanup(cls, options):
        seen.update(options)
        return []

    cli._backend_params.cache_clear()
    for cls in bench.backends.backend_classes():
        monkeypatch.setattr(cls, "for_cleanup", classmethod(for_cleanup))
    p = invoke(
        "clean",
        "--docker-host",
        "unix:///x.sock",
        "--libvirt-uri",
        "qemu:///system",
        "--libvirt-uri",
        "qemu:///session",
    )
    assert p.exit_code == 0, p.output
    assert seen == {
        "docker_host": "unix:///x.sock",
        "libvirt_uris": ["qemu:///system", "qemu:///session"],
        "podman_url": None,
        "fake_address": None,
    }


def test_two_backends_cannot_claim_one_flag(monkeypatch):
    class Other(FakeBackend):
        cli_options = (CliOption("--fake-address", "other_address", "Clash."),)

    monkeypatch.setattr(bench.backends, "backend_classes", lambda: [FakeBackend, Other])
    with pytest.raises(ValueError, match="already taken"):
        bench.backends.cli_options("clean")


def test_a_backend_with_no_cli_hooks_adds_nothing():
    assert Backend.doctor_checks({}, print) == []
    assert Backend.for_cleanup({}) == []
    assert Backend.build_images("busybox", {}, print) == []


@pytest.mark.parametrize("module", ["cli.py", "commands/doctor.py", "commands/clean.py"])
def test_cli_modules_import_no_backend_module(module):
    tree = ast.parse((REPO / "bench" / module).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    imported |= {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    }
    assert not {
        m for m in imported if m.startswith("bench.backends.") and m != "bench.backends.base"
    }


def test_docker_doctor_reports_an_absent_engine_as_an_engine_failure():
    from bench.backends.docker_backend import DockerBackend
    from bench.model.errors import UsageError

    (check,) = DockerBackend.doctor_checks(
        {"docker_host": "unix:///nonexistent/docker.sock"}, print
    )
    assert not check.ok and check.engine and "no socket at /nonexistent/docker.sock" in check.detail
    with pytest.raises(UsageError, match="--docker-host tcp://h:2375: .*never tcp://"):
        DockerBackend.doctor_checks({"docker_host": "tcp://h:2375"}, print)


# -- preflight runs once per backend -------------------------------------------------


def _no_second_preflight(self):
    raise AssertionError("prepare() ran preflight() again")


class _DockerApi:
    """What DockerBackend.prepare asks an engine; `info_error` makes `info` raise it."""

    def __init__(self, info_error: Exception | None = None):
        self.info_error = info_error

    def inspect_image(self, ref):
        return {"Id": "sha256:" + "0" * 64, "Config": {"Labels": {}}}

    def version(self):
        return {"Version": "1"}

    def info(self):
        if self.info_error is not None:
            raise self.info_error
        return {"Driver": "overlay2"}


def test_docker_prepare_does_not_preflight_again(monkeypatch):
    from bench.backends.docker_backend import DockerBackend, DockerSettings

    b = DockerBackend(DockerSettings(name="c", backend="docker", image="alpine:3"))
    monkeypatch.setattr(DockerBackend, "preflight", _no_second_preflight)
    monkeypatch.setattr(DockerBackend, "connect", lambda self: _DockerApi())
    assert b.prepare()["docker_version"] == "1"


def test_a_docker_engine_wedged_after_ping_is_unavailable_in_one_line(monkeypatch):
    # dockerd 20.10's deadlock: ping answers, `info` and container calls run out their
    # timeout. Seen 2026-11-30 as "bench: error: ReadTimeout: ..." with exit 5.
    import requests.exceptions

    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.model.errors import EngineUnavailable, ExitCode

    timed_out = requests.exceptions.ReadTimeout(
        "UnixHTTPConnectionPool(host='localhost', port=None): Read timed out. (read timeout=60)"
    )

    monkeypatch.setattr(DockerBackend, "connect", lambda self: _DockerApi(timed_out))
    b = DockerBackend(DockerSettings(name="c", backend="docker", image="alpine:3"))
    with pytest.raises(EngineUnavailable) as e:
        b.prepare()
    line = str(e.value)
    assert e.value.exit_code == ExitCode.ENGINE_UNAVAILABLE and "\n" not in line
    assert "answers ping but not" in line and "Read timed out" in line
    assert "moby/moby#42545" in line and "restart dockerd" in line
    # The checks before a run ask `info` for a runtime's registration: the same line.
    b = DockerBackend(DockerSettings(name="c", backend="docker", image="alpine:3", runtime="crun"))
    with pytest.raises(EngineUnavailable, match="answers ping but not the checks before a run"):
        b.preflight()


def test_libvirt_prepare_does_not_preflight_again(monkeypatch, tmp_path):
    from bench.backends.libvirt_backend import LibvirtBackend, LibvirtSettings

    class Conn:
        def getLibVersion(self):
            return 9_000_000

        def getVersion(self):
            return 8_000_000

    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    b = LibvirtBackend(LibvirtSettings(name="v", backend="libvirt", kernel=kernel, accel="tcg"))
    monkeypatch.setattr(LibvirtBackend, "preflight", _no_second_preflight)
    monkeypatch.setattr(LibvirtBackend, "connect", lambda self: Conn())
    facts = b.prepare()
    assert facts["libvirt_version"] == "9.0.0" and facts["image"] == str(kernel)


def test_prepare_backends_preflights_every_platform_once_before_any_prepare():
    from bench.plan.scenario import LoadedScenario, parse_scenario
    from bench.runner.run import prepare_backends

    calls = []

    class Counting(FakeBackend):
        def preflight(self):
            calls.append(("preflight", self.settings.name))

        def prepare(self, **kw):
            calls.append(("prepare", self.settings.name))
            return {}

    text = "name: t\nplatforms:\n  - {name: a, backend: fake}\n  - {name: b, backend: fake}\n"
    loaded = LoadedScenario(parse_scenario(text), Path("t.yaml"), text)
    prepare_backends(loaded, factory=Counting)
    assert calls == [("preflight", "a"), ("preflight", "b"), ("prepare", "a"), ("prepare", "b")]
