"""The one probe cache (bench.backends.probe_cache) and the probes that use it: a bad file
is an empty cache, writers never lose each other's entries, a reader never sees half a
file, a link planted at the cache's path is never written through, and every probe
answers with the same type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.backends import probe_cache
from bench.backends.probe_cache import (
    ACCEL_CACHE,
    RUNTIME_CACHE,
    ProbeCache,
    ProbeResult,
)
from tests.conftest import REPO

BOOTED = ProbeResult(True, "guest booted under kvm")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> ProbeCache:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return ProbeCache.named(ACCEL_CACHE)


def test_a_missing_cache_is_empty_and_the_first_put_makes_its_folder(cache):
    assert not cache.path.parent.exists()
    assert cache.read() == {} and cache.get("k") is None
    assert cache.put("k", BOOTED, accel="kvm")
    assert cache.get("k") == BOOTED
    assert json.loads(cache.path.read_text()) == {
        "k": {"accel": "kvm", "ok": True, "detail": "guest booted under kvm"}
    }


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",  # not even UTF-8
        b"[1, 2, 3]",  # JSON, not an object
        b'"k"',
        b"null",
    ],
)
def test_an_unreadable_file_is_an_empty_cache_and_the_next_put_replaces_it(cache, content):
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(content)
    assert cache.read() == {} and cache.get("k") is None
    assert cache.put("k", BOOTED)
    assert cache.get("k") == BOOTED


@pytest.mark.parametrize(
    "entry",
    [
        3,
        "kvm",
        None,
        {},
        {"accel": "kvm", "detail": "guest booted under kvm"},  # no "ok"
        {"ok": "yes", "detail": "x"},  # not a bool
        {"ok": 1, "detail": "x"},  # an int is not a bool either
        {"ok": True},  # no detail
        {"ok": True, "detail": 7},
    ],
)
def test_a_wrong_shaped_entry_is_a_miss_and_the_others_still_hit(cache, entry):
    cache.path.parent.mkdir(parents=True)
    good = {"ok": False, "detail": "no marker within 20s under kvm"}
    cache.path.write_text(json.dumps({"bad": entry, "good": good}))
    assert cache.get("bad") is None
    assert cache.get("good") == ProbeResult(False, "no marker within 20s under kvm")


def test_a_put_keeps_the_other_entries_and_one_written_since_this_process_read(cache):
    assert cache.put("a", BOOTED)
    seen = cache.read()
    # Another process stores "b" after this one read the file: a put must not drop it.
    ProbeCache(cache.path).put("b", ProbeResult(False, "kvm probe failed: x"))
    assert "b" not in seen
    assert cache.put("c", BOOTED)
    assert set(cache.read()) == {"a", "b", "c"}


PUTS = 150
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bench.backends.probe_cache import ProbeCache, ProbeResult

    cache = ProbeCache(Path(sys.argv[1]))
    go = Path(sys.argv[2])
    while not go.exists():
        pass
    for i in range(int(sys.argv[4])):
        assert cache.put(f"{sys.argv[3]}-{i}", ProbeResult(i % 2 == 0, f"detail {i}"))
    """
)


def test_two_processes_putting_at_once_keep_every_entry(cache, tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(cache.path), str(go), name, str(PUTS)],
            cwd=REPO,
        )
        for name in ("one", "two")
    ]
    go.touch()  # both start writing at the same moment
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    known = cache.read()
    assert len(known) == 2 * PUTS
    assert cache.get("one-0") == ProbeResult(True, "detail 0")
    assert cache.get(f"two-{PUTS - 1}") == ProbeResult(PUTS % 2 == 1, f"detail {PUTS - 1}")
    # Nothing but the cache and its lock is left in the folder (no temporary file).
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [
        f".{ACCEL_CACHE}.lock",
        ACCEL_CACHE,
    ]


def test_the_new_file_is_whole_and_synced_before_it_replaces_the_old_one(cache, monkeypatch):
    assert cache.put("old", BOOTED)
    before = cache.path.read_bytes()
    synced: list[int] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    def replace(src: str, dst: Path) -> None:
        assert synced, "renamed before fsync"
        # Up to the rename, readers see the old file whole; the new one is complete.
        assert cache.path.read_bytes() == before
        assert Path(src).parent == cache.path.parent  # same folder: the rename is atomic
        assert set(json.loads(Path(src).read_text())) == {"old", "new"}
        real_replace(src, dst)

    monkeypatch.setattr(probe_cache.os, "fsync", fsync)
    monkeypatch.setattr(probe_cache.os, "replace", replace)
    assert cache.put("new", BOOTED)
    assert set(cache.read()) == {"old", "new"}


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(cache, monkeypatch):
    assert cache.put("old", BOOTED)
    before = cache.path.read_bytes()

    def full_disk(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(probe_cache.os, "fsync", full_disk)
    assert cache.put("new", BOOTED) is False  # an unwritable cache costs a re-probe only
    assert cache.path.read_bytes() == before
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [
        f".{ACCEL_CACHE}.lock",
        ACCEL_CACHE,
    ]


def test_a_link_planted_at_the_cache_path_is_not_read_nor_written_through(cache, tmp_path):
    dummy = tmp_path / "dummy.json"
    planted = json.dumps({"k": {"ok": True, "detail": "planted"}})
    dummy.write_text(planted)
    cache.path.parent.mkdir(parents=True)
    cache.path.symlink_to(dummy)
    assert cache.get("k") is None  # not read through either
    assert cache.put("k", ProbeResult(False, "no marker within 20s under kvm"))
    assert dummy.read_text() == planted
    assert not cache.path.is_symlink()  # the link itself was replaced
    assert cache.get("k") == ProbeResult(False, "no marker within 20s under kvm")


def test_a_link_planted_at_the_lock_path_leaves_everything_unwritten(cache, tmp_path):
    dummy = tmp_path / "dummy"
    dummy.write_text("precious")
    cache.path.parent.mkdir(parents=True)
    lock = cache.path.with_name(f".{cache.path.name}.lock")
    lock.symlink_to(dummy)
    assert cache.put("k", BOOTED) is False
    assert dummy.read_text() == "precious" and not cache.path.exists()
    dangling = tmp_path / "not-there"
    lock.unlink()
    lock.symlink_to(dangling)  # O_CREAT through a dangling link would make this file
    assert cache.put("k", BOOTED) is False
    assert not dangling.exists()


# -- every probe answers with ProbeResult, and stores it the same way -------------------


def _art(tmp_path: Path):
    from bench.machines import images

    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initramfs.cpio.gz"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    return images.VmArtifacts(kernel, initrd, images.DEFAULT_CMDLINE, {})


def test_the_value_type_is_the_same_from_every_backend(cache, tmp_path, monkeypatch):
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.backends.guest import kvm_probe
    from bench.backends.libvirt_backend import LibvirtBackend, LibvirtSettings
    from bench.backends.podman_backend import PodmanBackend, PodmanSettings
    from bench.backends.qemu_backend import QemuBackend, QemuSettings
    from bench.machines import images
    from tests.helpers import FakeHost
    from tests.test_docker_runtimes import Api

    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(images, "vm_artifacts", lambda _name: _art(tmp_path))
    host = FakeHost(lambda: [])

    docker = DockerBackend(DockerSettings(name="d", backend="docker", image="busybox"), host)
    docker._api = Api()
    runtime = docker.probe_runtime("runsc")

    podman = PodmanBackend(PodmanSettings(name="p", backend="podman", image="busybox"), host)
    monkeypatch.setattr(podman, "rlimits", dict)

    def engine_gone(*_a, **_k):
        raise ConnectionError("the podman service went away")

    monkeypatch.setattr(podman, "_call", engine_gone)
    podman_runtime = podman.probe_runtime("crun")

    # The KVM probes' own test boots, stopped at the engine (none runs in unit tests).
    libvirt = LibvirtBackend(LibvirtSettings(name="l", backend="libvirt"), host)
    monkeypatch.setattr(libvirt, "_create_xml", engine_gone)
    monkeypatch.setattr(libvirt, "destroy", lambda _inst: None)
    monkeypatch.setattr(QemuBackend, "create", lambda _self, _inst: engine_gone())
    qemu = QemuBackend(QemuSettings(name="q", backend="qemu"), host)
    said: list[str] = []
    booted = {
        name: kvm_probe(name, test_boot, lambda name=name: said.append(name))
        for name, test_boot in (("libvirt", libvirt._probe_kvm), ("qemu", qemu._probe_kvm))
    }

    answers = [runtime, podman_runtime, *booted.values()]
    assert {type(a) for a in answers} == {ProbeResult}
    assert runtime == ProbeResult(True, "starts the bench image (kernel 4.4.0)")
    assert not podman_runtime.ok and "went away" in podman_runtime.detail
    failed = ProbeResult(False, "kvm probe failed: the podman service went away")
    assert booted == {"libvirt": failed, "qemu": failed}
    # Stored alike, with the label a reader of the file looks for, and read back alike.
    stored = json.loads(cache.path.read_text())
    assert stored == {
        name: {"accel": "tcg", "ok": False, "detail": failed.detail} for name in booted
    }
    runtimes = ProbeCache.named(RUNTIME_CACHE)
    assert [v["runtime"] for v in runtimes.read().values()] == ["runsc"]
    assert [runtimes.get(k) for k in runtimes.read()] == [runtime]
    # The second time, the cache answers and nothing says it must wait.
    again = [kvm_probe(n, lambda: pytest.fail("probed twice"), said.append) for n in booted]
    assert again == [failed, failed] and said == ["libvirt", "qemu"]


def test_a_kvm_probe_entry_written_before_the_one_cache_still_answers(cache):
    from bench.backends.guest import kvm_probe

    cache.path.parent.mkdir(parents=True)
    older = {"kvm-key": {"accel": "kvm", "detail": "guest booted under kvm"}}
    older["tcg-key"] = {"accel": "tcg", "detail": "no marker within 20s under kvm"}
    older["odd-key"] = {"accel": "xen", "detail": "?"}
    cache.path.write_text(json.dumps(older))
    said: list[str] = []
    assert kvm_probe("kvm-key", lambda: pytest.fail("probed"), said.append) == BOOTED
    tcg = ProbeResult(False, "no marker within 20s under kvm")
    assert kvm_probe("tcg-key", lambda: pytest.fail("probed"), said.append) == tcg
    assert said == []
    assert kvm_probe("odd-key", lambda: BOOTED, lambda: said.append("waits")) == BOOTED
    assert said == ["waits"] and cache.get("odd-key") == BOOTED


def test_resolve_accel_of_both_vm_backends_says_once_that_it_waits(cache, monkeypatch):
    import bench.backends.qemu_backend as qb
    from bench.backends.guest import KVM_PROBE_TIMEOUT_S, kvm_wait_message
    from bench.backends.libvirt_backend import LibvirtBackend, LibvirtSettings
    from bench.backends.qemu_backend import QemuBackend, QemuSettings
    from tests.helpers import FakeHost

    host = FakeHost(lambda: [])
    libvirt = LibvirtBackend(LibvirtSettings(name="l", backend="libvirt"), host)
    monkeypatch.setattr(libvirt, "_kvm_offered", lambda: True)
    monkeypatch.setattr(libvirt, "_probe_key", lambda: "libvirt-key")
    monkeypatch.setattr(libvirt, "_probe_kvm", lambda: BOOTED)
    monkeypatch.setattr(qb.os, "access", lambda _p, _m: True)
    qemu = QemuBackend(QemuSettings(name="q", backend="qemu"), host)
    monkeypatch.setattr(qemu, "_probe_key", lambda: "qemu-key")
    monkeypatch.setattr(qemu, "_probe_kvm", lambda: ProbeResult(False, "no marker"))
    said: list[str] = []
    for _ in range(2):
        on_libvirt = lambda: said.append(kvm_wait_message(" on qemu:///system"))  # noqa: E731
        on_qemu = lambda: said.append(kvm_wait_message(" for direct QEMU"))  # noqa: E731
        assert libvirt.resolve_accel(on_libvirt) == ("kvm", "guest booted under kvm")
        assert qemu.resolve_accel(on_qemu) == ("tcg", "no marker")
    timeout = f"{KVM_PROBE_TIMEOUT_S:.0f}"
    assert said == [
        "probing KVM on qemu:///system with a test boot (once per host, then cached; "
        f"up to {timeout} s)...",
        f"probing KVM for direct QEMU with a test boot (once per host, then cached; "
        f"up to {timeout} s)...",
    ]
