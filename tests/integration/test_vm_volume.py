"""VMs with an attached disk (`volume: true`) on the real engines, under TCG: bench
makes a sparse raw file per instance, QEMU gives it to the guest as a virtio disk, the
workloads image's init formats it (busybox mke2fs) and mounts it at /bench-volume, and
fio's 4 KiB random jobs run there with O_DIRECT, as on a container's volume.

The image is built into a cache folder of the module's own, from the guest kernel with
its disk modules (scripts/setup-host.sh extracts virtio_blk, ext4 and its dependencies
beside a kernel it fetches), so the shared cache's image is never rebuilt under another
run. The folder, every VM and every volume file go afterwards, even when a test fails
(run_real removes its run's leftovers in a `finally`; the checks below look for files
and domains left)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from bench.backends.guest import VOLUME_CACHE, VOLUME_CACHE_FALLBACK
from bench.backends.libvirt_backend import overlay_dir
from bench.backends.qemu_backend import qemu_root
from bench.machines import images
from bench.model.records import WorkloadRun
from tests.integration.bench_runs import run_real


@pytest.fixture(scope="module")
def disk_cache():
    """BENCH_CACHE_DIR of this module, world-readable (libvirt's QEMU runs as its own
    user and reads the kernel and initramfs there); BENCH_KERNEL the guest kernel, which
    must have its disk modules beside it (or built in)."""
    kernel = images.find_kernel()
    release = images.kernel_release(kernel)
    if not (
        images.kernel_has_module(kernel, release, "virtio_blk")
        or images.kernel_builtin(kernel, release, "virtio_blk")
    ):
        pytest.fail(
            f"the guest kernel {release} ({kernel}) has no virtio_blk module beside it and "
            "none built in: run `make setup` (scripts/setup-host.sh fetches it again with "
            "its disk modules), or set BENCH_KERNEL to a kernel with them"
        )
    saved = {k: os.environ.get(k) for k in ("BENCH_CACHE_DIR", "BENCH_KERNEL")}
    cache = Path("/tmp") / f"bench-it-vmdisk-{secrets.token_hex(4)}"
    images.make_readable_dirs(cache)
    os.environ["BENCH_CACHE_DIR"], os.environ["BENCH_KERNEL"] = str(cache), str(kernel)
    try:
        yield cache
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(cache, ignore_errors=True)


def scenario(platform: str) -> str:
    return (
        "name: vmdisk\ntimeout: 240s\ncounts: [1]\nwarmup: 0\nsettle: 0s\n"
        "workloads: {duration: 2s, run: [randwrite-volume, randread-volume]}\nplatforms:\n"
        f"  - {{name: vm, {platform} image: workloads, accel: tcg, memory: 1GiB, volume: true}}\n"
    )


def assert_iops_on_the_volume(sink) -> None:
    (s,) = sink.samples
    assert s["ok"], s["error"]
    # The cache mode QEMU opened it with: none (O_DIRECT) on this host's disk.
    assert s["extras"]["volume_cache"] in (VOLUME_CACHE, VOLUME_CACHE_FALLBACK)
    runs = [WorkloadRun.model_validate(r) for r in s["extras"]["workloads"]]
    assert [r.workload for r in runs] == ["randwrite-volume", "randread-volume"]
    for run, direction in zip(runs, ("write", "read"), strict=True):
        assert run.error is None and run.rc == 0, run.error
        assert "--filename=/bench-volume/bench-fio.dat" in run.argv
        assert run.emulated  # TCG: marked, as every VM workload figure under it
        (iops,) = [f for f in run.figures if f.figure == f"{direction}_iops"]
        assert iops.value > 0 and iops.unit == "IO/s"
        assert run.diagnostics.get("direct") == "1"


@pytest.mark.qemu
def test_microvm_runs_fio_on_its_volume(qemu_binary, disk_cache):
    sink, engines, left = run_real(scenario("backend: qemu, machine: microvm,"))
    assert left == []
    assert engines["vm"]["volume_bytes"] == 256 * 2**20
    assert_iops_on_the_volume(sink)
    (s,) = sink.samples
    # Its instance directory, the volume inside, is gone with the VM (other runs'
    # instances may come and go meanwhile: only this one's is looked for).
    volume = Path(s["extras"]["volume"])
    assert volume.name == "volume.raw" and volume.parent.parent == qemu_root()
    assert not volume.parent.exists()


@pytest.mark.libvirt
def test_libvirt_vm_runs_fio_on_its_volume(libvirt_conn, disk_cache):
    sink, _engines, left = run_real(scenario("backend: libvirt,"))
    assert left == []
    assert_iops_on_the_volume(sink)
    (s,) = sink.samples
    assert Path(s["extras"]["volume"]).parent == overlay_dir(s["run_id"])
    assert not overlay_dir(s["run_id"]).exists()  # its volume file and the run's folder
    names = [d.name() for d in libvirt_conn.listAllDomains()]
    assert not [n for n in names if s["run_id"] in n], names
