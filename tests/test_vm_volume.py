"""A VM's attached disk (`volume: true`): the guest kernel's disk modules packed into
the workloads image and an image without them found stale, the settings' and the
scenario's refusals, the kernel command line, QEMU's argv and libvirt's XML, the raw
file made, removed on stop and on a failed start, and found by `bench clean`."""

from __future__ import annotations

import hashlib
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.backends.base import Instance
from bench.backends.guest import (
    VOLUME_BYTES,
    VOLUME_CACHE,
    VOLUME_CACHE_FALLBACK,
    BootSource,
    check_disk_modules,
    make_volume,
    net_cmdline,
)
from bench.backends.libvirt_backend import (
    VOLUME_SUFFIX,
    LibvirtBackend,
    LibvirtSettings,
    domain_xml,
    overlay_dir,
)
from bench.backends.qemu_backend import InstancePaths, QemuBackend, QemuSettings, qemu_argv
from bench.machines import images, rootfs
from bench.machines.console import Console
from bench.measurements.neighbours import aggressor_command
from bench.model.errors import MissingImage, ScenarioError
from bench.plan.scenario import parse_scenario
from tests.test_vm_network import DEBIAN, RELEASE, module_tree

# Debian 6.1's disk modules and what their .modinfo says they depend on.
DISK = {
    **DEBIAN,
    "virtio_blk": "virtio,virtio_ring",
    "crc32c_generic": "",
    "jbd2": "",
    "mbcache": "",
    "crc16": "",
    "ext4": "mbcache,jbd2,crc16",
}
KERNEL = (Path("/k/vmlinux"), Path("/k/initramfs.cpio.gz"), "console=ttyS0")


def qemu(**kw: object) -> QemuSettings:
    return QemuSettings(name="vm", backend="qemu", image="workloads", **kw)


def opt(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# -- the image ---------------------------------------------------------------------------


def test_disk_modules_are_a_list_of_their_own_deps_first(tmp_path):
    d = module_tree(tmp_path, DISK)
    net = rootfs.module_closure(d)
    disk = rootfs.module_closure(d, rootfs.DISK_MODULE_ROOTS)
    names = [m.name for m in disk]
    assert "virtio_net" not in names and names[-1] == "ext4"
    assert names.index("jbd2") < names.index("ext4") and "crc32c_generic" in names
    entries = rootfs.module_entries(net, {"usr", "usr/lib"}, disk)
    lists = {e.path: e.data.decode().split() for e in entries if e.path.startswith("etc/")}
    assert lists[rootfs.DISK_MODULES_LIST] == [f"/{m.path}" for m in disk]
    assert lists[rootfs.MODULES_LIST] == [f"/{m.path}" for m in net]
    paths = [e.path for e in entries]
    assert len(paths) == len(set(paths))  # the bus, in both lists, is packed once
    # The workloads init formats and mounts it; the busybox init (boot figures) is as it was.
    assert "mke2fs" in rootfs.WORKLOAD_INIT_SCRIPT and "bench_volume" in rootfs.VOLUME_BLOCK
    assert "mke2fs" not in rootfs.INIT_SCRIPT


def manifest(name: str = "workloads", **over: object) -> images.Manifest:
    m = {
        "name": name,
        "kernel_source": "/nowhere/vmlinuz",
        "kernel_release": RELEASE,
        "init_sha256": images.init_sha256(name),
        "pvh_kernel": True,
        "guest_modules": {"virtio_net": "x", "virtio_blk": "x", "ext4": "x"},
    }
    if name == "workloads":  # every tool and file this bench packs there
        m["tools"] = {t: {} for t in rootfs.WORKLOAD_TOOLS}
        m["files_sha256"] = {
            rel: hashlib.sha256(data).hexdigest() for rel, data in rootfs.WORKLOAD_ETC.items()
        }
    return {**m, **over}  # type: ignore[return-value]


def test_an_image_without_the_disk_modules_is_stale_once_the_kernel_has_them(tmp_path):
    module_tree(tmp_path, DISK)
    kernel = str(tmp_path / f"vmlinuz-{RELEASE}")
    assert images.stale_reason(manifest(kernel_source=kernel)) is None
    # An older bench's manifest: only the network's, under their old key.
    older = manifest(kernel_source=kernel, net_modules={"virtio_net": "x"})
    del older["guest_modules"]
    assert images.packed_modules(older) == {"virtio_net": "x"}
    assert images.stale_reason(older) == "the guest kernel's disk modules were not packed"
    # The busybox image packs none (ext4 would double its initramfs): never stale for it.
    busybox = manifest("busybox", kernel_source=kernel, guest_modules={"virtio_net": "x"})
    assert images.stale_reason(busybox) is None
    # A kernel fetched before bench packed them (no virtio_blk beside it): not stale.
    net_only = tmp_path / "net"
    module_tree(net_only, DEBIAN)
    old_kernel = str(net_only / f"vmlinuz-{RELEASE}")
    assert images.stale_reason({**older, "kernel_source": old_kernel}) is None


def test_volume_without_disk_modules_says_to_run_the_setup(tmp_path):
    module_tree(tmp_path, DEBIAN)
    kernel = str(tmp_path / f"vmlinuz-{RELEASE}")
    with pytest.raises(MissingImage, match="virtio_blk and ext4") as e:
        check_disk_modules(manifest(kernel_source=kernel, guest_modules={"virtio_net": "x"}))
    assert e.value.key == "volume" and "make setup" in str(e.value)
    # Built into the kernel: nothing to pack, nothing refused.
    builtin = tmp_path / "b"
    module_tree(builtin, DEBIAN, builtin=("virtio_blk", "ext4"))
    check_disk_modules(
        manifest(kernel_source=str(builtin / f"vmlinuz-{RELEASE}"), guest_modules={})
    )
    check_disk_modules(manifest())


# -- settings and scenarios -------------------------------------------------------------


def test_volume_needs_the_workloads_images_init():
    assert qemu(volume=True).volume
    assert LibvirtSettings(name="vm", backend="libvirt", image="workloads", volume=True).volume
    with pytest.raises(ValidationError, match="true needs image: workloads"):
        QemuSettings(name="vm", backend="qemu", volume=True)
    with pytest.raises(ValidationError, match="not with kernel: or disk:"):
        QemuSettings(name="vm", backend="qemu", volume=True, disk=Path("/d.qcow2"))
    with pytest.raises(ValidationError, match="not with kernel: or disk:"):
        QemuSettings(name="vm", backend="qemu", volume=True, kernel=Path("/k"))


def test_the_kernel_command_line_asks_the_init_for_its_disk():
    assert "bench_volume=1" in net_cmdline("console=ttyS0", qemu(volume=True)).split()
    assert "bench_volume" not in net_cmdline("console=ttyS0", qemu())


def test_volume_workloads_run_in_vms_with_a_volume_and_the_writable_layers_do_not():
    text = "name: t\nworkloads: {{run: [{run}]}}\nplatforms:\n  - {platform}\n"
    vm = "{name: v, backend: qemu, image: workloads, volume: true}"
    sc = parse_scenario(text.format(run="randwrite-volume, randread-volume", platform=vm))
    assert sc.workloads is not None and [w.tool for w in sc.workloads.run] == ["fio-volume"] * 2
    with pytest.raises(ScenarioError, match="set volume: true on platform v"):
        parse_scenario(text.format(run="randwrite-volume", platform="{name: v, backend: libvirt}"))
    for backend in ("qemu", "libvirt"):
        platform = f"{{name: v, backend: {backend}, image: workloads, volume: true}}"
        with pytest.raises(ScenarioError, match="use randread-volume with volume: true"):
            parse_scenario(text.format(run="randread", platform=platform))
    # Each built-in's own volume form; a workload of one's own gets the random pair.
    with pytest.raises(ScenarioError, match="use seqread-volume or seqwrite-volume with volume"):
        parse_scenario(text.format(run="seqread, seqwrite", platform=vm))
    mine = "{name: m, tool: fio, args: [--rw=read]}"
    with pytest.raises(ScenarioError, match="use randread-volume or randwrite-volume with volume"):
        parse_scenario(text.format(run=mine, platform=vm))
    # A noisy-neighbour victim alike.
    with pytest.raises(ScenarioError, match="randwrite run fio on the writable layer"):
        parse_scenario(
            "name: t\nneighbours: {victim: randwrite}\nplatforms:\n"
            "  - {name: v, backend: qemu, image: workloads}\n"
        )


def test_the_io_aggressor_writes_on_the_volume_when_there_is_one():
    body = aggressor_command("io", 3, volume=True)[-1]
    assert "--temp-path /bench-volume" in body
    assert "--temp-path" not in aggressor_command("io", 3)[-1]
    assert "--temp-path" not in aggressor_command("cpu", 3, volume=True)[-1]


# -- QEMU and libvirt ---------------------------------------------------------------------


def argv(machine: str, volume: tuple[Path, str] | None) -> list[str]:
    return qemu_argv(
        binary="qemu-system-x86_64",
        name="bench-r-p-0",
        machine=machine,
        accel="tcg",
        memory_bytes=256 * 2**20,
        vcpus=1,
        paths=InstancePaths.of("bench-r-p-0", Path("/var/lib/bench/qemu")),
        kernel=KERNEL,
        volume=volume,
    )


def test_qemu_gives_the_volume_as_a_raw_virtio_disk_per_machine():
    vol = Path("/var/lib/bench/qemu/k/volume.raw")
    micro = argv("microvm", (vol, "none"))
    assert opt(micro, "-drive") == [f"file={vol},format=raw,if=none,id=vol0,cache=none"]
    assert opt(micro, "-device") == ["virtio-blk-device,drive=vol0"]
    for machine in ("pc", "q35"):
        assert opt(argv(machine, (vol, "writethrough")), "-device") == ["virtio-blk-pci,drive=vol0"]
        assert "cache=writethrough" in opt(argv(machine, (vol, "writethrough")), "-drive")[0]
    assert opt(argv("microvm", None), "-drive") == []
    # A comma in the path cannot add an option: QEMU's own escape doubles it.
    odd = argv("microvm", (Path("/x,format=qcow2/v.raw"), "none"))
    assert opt(odd, "-drive")[0].startswith("file=/x,,format=qcow2/v.raw,format=raw,")


def test_libvirt_gives_the_volume_as_a_raw_virtio_disk():
    vol = Path("/var/lib/bench/overlays/r/bench-r-p-0.volume.raw")
    dom = ET.fromstring(
        domain_xml("n", "r", "p", "tcg", 2**30, 1, kernel=KERNEL, volume=(vol, "none"))
    )
    (disk,) = dom.findall("devices/disk")
    assert disk.get("type") == "file" and disk.get("device") == "disk"
    assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none"}
    assert disk.find("source").get("file") == str(vol)
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert ET.fromstring(domain_xml("n", "r", "p", "tcg", 2**30, 1)).find("devices/disk") is None


class LocalHost:
    """Runs the real commands (truncate, dd) but can refuse O_DIRECT, as tmpfs did."""

    def __init__(self, direct: bool = True):
        self.direct = direct

    def run(self, argv, timeout):
        if "oflag=direct" in argv and not self.direct:
            return subprocess.CompletedProcess(argv, 1, "", "dd: Invalid argument")
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def test_the_volume_is_a_sparse_raw_file_and_its_cache_mode_is_probed(tmp_path):
    path = tmp_path / "v.raw"
    assert make_volume(LocalHost(), path) == VOLUME_CACHE  # type: ignore[arg-type]
    assert path.stat().st_size == VOLUME_BYTES
    assert path.stat().st_blocks * 512 < 1024 * 1024  # sparse: the probe's block only
    other = tmp_path / "w.raw"
    assert make_volume(LocalHost(direct=False), other) == VOLUME_CACHE_FALLBACK  # type: ignore[arg-type]


def test_a_failed_qemu_start_leaves_no_volume_and_clean_finds_it_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    backend = QemuBackend(qemu(volume=True, accel="tcg"))
    backend.binary = "false"  # exits instead of connecting
    backend._boot = BootSource({}, KERNEL)
    inst = Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY"))
    try:
        with pytest.raises(Exception, match="qemu exited before connecting"):
            backend.create(inst)
        volume = Path(inst.info["volume"])
        assert volume == InstancePaths.of(inst.name).volume and volume.is_file()
        assert inst.info["volume_cache"] in (VOLUME_CACHE, VOLUME_CACHE_FALLBACK)
        # What `bench clean` would remove: the instance, its directory (the volume in it).
        assert [x.kind for x in backend.leftovers("r")] == ["files"]
        backend.destroy(inst)
        assert not volume.exists() and backend.leftovers() == []
    finally:
        backend.close()


class FakeDomain:
    def destroy(self) -> None:
        pass


class FakeConn:
    def __init__(self):
        self.xml = ""

    def createXML(self, xml, flags):  # noqa: N802 (libvirt's name)
        self.xml = xml
        raise RuntimeError("libvirt refused it")

    def lookupByName(self, name):  # noqa: N802
        return FakeDomain()

    def listAllDomains(self):  # noqa: N802
        return []


def test_libvirt_volume_is_removed_after_a_failed_start_and_found_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    backend = LibvirtBackend(
        LibvirtSettings(name="p", backend="libvirt", image="workloads", volume=True)
    )
    conn = FakeConn()
    monkeypatch.setattr(backend, "connect", lambda: conn)
    import libvirt

    monkeypatch.setattr("bench.backends.libvirt_backend._ensure_event_loop", lambda: libvirt)
    backend._boot = BootSource({}, KERNEL)
    inst = Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY"))
    with pytest.raises(RuntimeError, match="refused"):
        backend.create(inst)
    volume = overlay_dir("r") / f"{inst.name}{VOLUME_SUFFIX}"
    assert inst.info["volume"] == str(volume) and volume.is_file()
    assert str(volume) in conn.xml
    (left,) = backend.leftovers("r")
    assert (left.kind, left.name, left.run_id) == ("file", str(volume), "r")
    backend.destroy(inst)
    assert not volume.exists() and not volume.parent.exists()
    # And a leftover file alone (a bench killed meanwhile) goes with `bench clean`.
    volume.parent.mkdir(parents=True)
    volume.write_bytes(b"")
    (left,) = backend.leftovers()
    backend.remove_leftover(left)
    assert not volume.parent.exists()


def test_formatting_time_is_not_in_the_boot():
    # The disk's block runs after the marker and before the command loop: the boot to
    # the marker is the same with a disk, and no job is read before the mount.
    init = rootfs.WORKLOAD_INIT_SCRIPT
    assert init.index("BENCH_READY") < init.index("mke2fs") < init.index("BENCH_EXEC")


def test_doctor_says_whether_a_vm_can_have_a_disk(tmp_path, monkeypatch):
    from bench.backends.guest import guest_disk_check

    module_tree(tmp_path, DEBIAN)
    kernel = tmp_path / f"vmlinuz-{RELEASE}"
    kernel.write_bytes(b"")
    monkeypatch.setattr(images, "kernel_release", lambda path: RELEASE)
    monkeypatch.setenv("BENCH_KERNEL", str(kernel))
    check = guest_disk_check()
    assert check.warn and "volume: true unavailable" in check.detail and "make setup" in check.fix
    module_tree(tmp_path, DISK)
    check = guest_disk_check()
    assert not check.warn and check.detail == f"volume: true: virtio_blk and ext4 of {RELEASE}"


def test_preflight_refuses_a_volume_when_the_kernel_has_no_disk_modules(tmp_path, monkeypatch):
    from bench.backends.guest import check_volume_kernel

    module_tree(tmp_path, DEBIAN)
    kernel = tmp_path / f"vmlinuz-{RELEASE}"
    kernel.write_bytes(b"")
    monkeypatch.setattr(images, "kernel_release", lambda path: RELEASE)
    monkeypatch.setenv("BENCH_KERNEL", str(kernel))
    check_volume_kernel(qemu())  # no volume: nothing asked of the kernel
    with pytest.raises(MissingImage, match="true needs the guest kernel's virtio_blk and ext4"):
        check_volume_kernel(qemu(volume=True))
    module_tree(tmp_path, DISK)
    check_volume_kernel(qemu(volume=True))
