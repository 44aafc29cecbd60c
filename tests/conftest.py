"""Shared fixtures. Engine fixtures FAIL when CI=true and the engine is missing:
in CI an unreachable engine is a broken set-up, never a reason to skip."""

from __future__ import annotations

import os
import shutil
import tempfile
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


PODMAN_URL = os.environ.get("CONTAINER_HOST") or "unix:///run/podman/podman.sock"


@pytest.fixture(scope="session")
def podman_client():
    """The podman REST service (`podman system service`, started by start-engines.sh)."""
    try:
        from podman import PodmanClient

        client = PodmanClient(base_url=PODMAN_URL, timeout=30)
        if not client.ping():
            raise OSError("no answer to ping")
    except Exception as e:
        require_engine(f"podman service ({PODMAN_URL})", False, str(e)[:200])
    yield client
    client.close()


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


@pytest.fixture(scope="session")
def qemu_binary():
    """qemu-system-x86_64 and the qemu.qmp package, for the qemu backend (no libvirt)."""
    import shutil

    path = shutil.which("qemu-system-x86_64")
    require_engine("qemu-system-x86_64", path is not None, "not on PATH")
    try:
        import qemu.qmp  # noqa: F401
    except ImportError as e:
        require_engine("qemu.qmp", False, str(e))
    return path


# -- nothing left behind ------------------------------------------------------------------


def _bench_leftovers() -> set[str]:
    """Containers labelled by bench (docker, podman), bench domains, overlay files and
    direct-QEMU instances (state files and directories) on this machine."""
    found: set[str] = set()
    try:
        import docker

        api = docker.APIClient(version="auto", timeout=10)
        for c in api.containers(all=True, filters={"label": "bench.run_id"}):
            found.add(f"container {c['Names'][0]}")
        api.close()
    except Exception:
        pass
    try:
        from podman import PodmanClient

        client = PodmanClient(base_url=PODMAN_URL, timeout=10)
        for c in client.containers.list(all=True, filters={"label": "bench.run_id"}):
            found.add(f"podman container {c.name}")
        client.close()
    except Exception:
        pass
    try:
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)
        conn = libvirt.open("qemu:///system")
        found |= {
            f"domain {d.name()}" for d in conn.listAllDomains() if d.name().startswith("bench-")
        }
        conn.close()
    except Exception:
        pass
    from bench.model.paths import state_dir

    overlays = state_dir() / "overlays"
    if overlays.is_dir():
        found |= {f"file {p}" for p in overlays.rglob("*") if p.is_file()}
    # Direct QEMU (the qemu backend): a state file per instance, and its directory.
    qemu = state_dir() / "qemu"
    if qemu.is_dir():
        found |= {f"qemu {p}" for p in qemu.iterdir() if p.suffix == ".json" or p.is_dir()}
    return found


def pytest_configure(config):
    """Give the suite an empty cache and state folder of its own, as a new machine has.

    A cached probe (KVM, a runtime) or image on the developer's or CI's machine once hid
    a crash that every fresh host met on its first run. Set before any test imports
    bench (bench.model.paths reads the variables at each call), inherited by every `bench`
    the tests start. The guest kernel is an input the set-up installs (like a package),
    not something bench builds or probes: it is copied in where bench looks for it.
    """
    from bench.model.paths import cache_dir

    kernels = sorted((cache_dir() / "kernel").glob("vmlinuz-*"))
    # Their network modules too, where scripts/setup-host.sh put them (network: user).
    modules = cache_dir() / "kernel" / "modules"
    made = []
    # Short names under /tmp: direct QEMU's unix sockets live in the state folder.
    for var, prefix in (("BENCH_CACHE_DIR", "bt-cache-"), ("BENCH_STATE_DIR", "bt-state-")):
        path = Path(tempfile.mkdtemp(prefix=prefix))
        # 0755: qemu under qemu:///system runs as its own user and reads kernels,
        # initramfs and overlays from these folders.
        path.chmod(0o755)
        os.environ[var] = str(path)
        made.append(path)
    if kernels:
        dest = made[0] / "kernel"
        dest.mkdir(mode=0o755)
        for k in kernels:
            shutil.copy2(k, dest / k.name)
        if modules.is_dir():
            shutil.copytree(modules, dest / "modules")
    config.stash[_FRESH_DIRS] = made


def pytest_unconfigure(config):
    for path in config.stash.get(_FRESH_DIRS, []):
        shutil.rmtree(path, ignore_errors=True)


def pytest_sessionstart(session):
    session.config.stash[_BEFORE] = _bench_leftovers()


def pytest_sessionfinish(session, exitstatus):
    """In CI, fail the run if the suite left any container, domain or overlay behind.

    Outside CI the machine may be running benchmarks of its own: only warn there.
    """
    before = session.config.stash.get(_BEFORE, set())
    new = sorted(_bench_leftovers() - before)
    if new:
        print(f"\n{len(new)} bench resource(s) appeared during the tests and remain:")
        print(*new[:20], sep="\n  ")
        if os.environ.get("CI") == "true":
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set]()
_FRESH_DIRS = pytest.StashKey[list]()
