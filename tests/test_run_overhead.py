"""What `bench run` loads that its run does not need (benchmarks/overhead.py measures the
cost): each check runs in a fresh interpreter, whose sys.modules is the evidence."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bench.backends.docker_backend import _NoParamiko
from tests.conftest import REPO

# Never needed by `bench run` of a container scenario: the report's libraries, and the
# SSH stack (paramiko, and through it cryptography, invoke, asyncio) for an engine on a
# socket.
NOT_ON_THE_RUN_PATH = ("pandas", "matplotlib", "scipy", "paramiko", "invoke", "asyncio")


def loaded_after(code: str) -> set[str]:
    """The modules, and their top-level packages, in sys.modules after `code` ran in a
    fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted({*sys.modules, *(m.split(".")[0] for m in sys.modules)})))
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_a_socket_engine_loads_the_docker_sdk_without_its_ssh_stack():
    # No engine needed: connect() imports the SDK, then finds no socket there.
    loaded = loaded_after(
        """
        from bench.backends.docker_backend import DockerBackend, DockerSettings
        from bench.model.errors import EngineUnavailable
        b = DockerBackend(DockerSettings(
            name="d", backend="docker", image="busybox", host="unix:///nonexistent.sock"))
        try:
            b.connect()
        except EngineUnavailable:
            pass
        else:
            raise SystemExit("connected to a socket that does not exist")
        import docker
        assert docker.APIClient and docker.errors.NotFound
        """
    )
    assert "docker" in loaded and "requests" in loaded
    assert not loaded & {"paramiko", "invoke", "cryptography", "nacl"}


def test_an_ssh_engine_after_a_socket_one_gets_docker_s_ssh_transport():
    # use_ssh_client: the `ssh` binary, started only at the first call, so nothing
    # connects here; the adapter is paramiko's module's all the same.
    loaded = loaded_after(
        """
        import sys
        from bench.backends.docker_backend import docker_sdk
        docker = docker_sdk(ssh=False)
        assert "paramiko" not in sys.modules
        assert docker_sdk(ssh=True) is docker
        api = docker.APIClient(
            base_url="ssh://nobody@127.0.0.1:1", version="1.41", use_ssh_client=True)
        adapter = api.adapters["http+docker://ssh"]
        assert type(adapter).__name__ == "SSHHTTPAdapter", adapter
        api.close()
        """
    )
    assert "paramiko" in loaded


def test_only_the_thread_importing_the_sdk_is_refused_paramiko():
    # An SSH host's thread importing paramiko meanwhile (bench run --host) still gets it.
    finder = _NoParamiko()
    with pytest.raises(ImportError):
        finder.find_spec("paramiko")
    assert finder.find_spec("paramiko.transport") is None  # only the package's name
    assert finder.find_spec("requests") is None
    elsewhere: list[object] = []
    t = threading.Thread(target=lambda: elsewhere.append(finder.find_spec("paramiko")))
    t.start()
    t.join()
    assert elsewhere == [None]


def test_a_run_loads_neither_the_report_libraries_nor_the_ssh_stack(tmp_path: Path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: lean\ntimeout: 5s\nsettle: 0s\nwarmup: 0\ncounts: [2]\n"
        "platforms:\n  - {name: a, backend: fake, boot: 10ms}\n"
    )
    loaded = loaded_after(
        f"""
        import sys
        from bench.cli import main
        sys.argv = ["bench", "run", {str(scenario)!r}, "--out", {str(tmp_path / "r")!r}]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        import gc
        # main() defers collection during start-up only; the run itself collects.
        assert gc.isenabled() and gc.get_freeze_count() > 10_000
        """
    )
    assert "bench" in loaded and "typer" in loaded  # the run did happen in this process
    assert not loaded & set(NOT_ON_THE_RUN_PATH), loaded & set(NOT_ON_THE_RUN_PATH)
    assert "rich.progress" not in loaded  # its output is a pipe: no bars to draw
    assert (tmp_path / "r").is_dir()


def test_every_other_command_collects_garbage_as_ever(tmp_path: Path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: v\ncounts: [1]\nplatforms:\n  - {name: a, backend: fake}\n")
    loaded_after(
        f"""
        import gc, sys
        from bench.cli import main
        sys.argv = ["bench", "validate", "--offline", {str(scenario)!r}]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        assert gc.isenabled()
        """
    )
