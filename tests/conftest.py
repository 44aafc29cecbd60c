"""Shared fixtures. Engine fixtures FAIL when CI=true and the engine is missing:
in CI an unreachable engine is a broken set-up, never a reason to skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def require_engine(what: str, reachable: bool, why: str) -> None:
    if reachable:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not reachable in CI ({why}); `make test` must start it")
    pytest.skip(f"{what} not reachable: {why}")


@pytest.fixture(scope="session")
def docker_api():
    import docker

    try:
        api = docker.APIClient(version="auto", timeout=30)
        api.ping()
    except Exception as e:
        require_engine("Docker Engine", False, str(e)[:200])
    yield api
    api.close()


@pytest.fixture(scope="session")
def libvirt_conn():
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as e:
        require_engine("libvirt (qemu:///system)", False, str(e)[:200])
    yield conn
    conn.close()
