"""The bench image pair, built offline from one busybox rootfs.

`busybox` resolves to a docker image (`bench/busybox:latest`, imported from the
rootfs tar) and to VM artifacts in the cache (the host's kernel plus an initramfs of
the same rootfs). The manifest records the rootfs digest; the docker image carries
it as a label, so a run can show both sides share the same userland.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import platform
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict, cast

from bench.machines import rootfs
from bench.model.errors import ImageError
from bench.model.paths import cache_dir

# busybox: the 2 MiB image of boot benchmarks. workloads: busybox plus Debian's
# stress-ng, fio, iperf3 and sockperf with their libraries (about 120 MiB), for workload runs;
# built only when asked for (`bench images build workloads`, `make workloads`).
BENCH_IMAGES = ("busybox", "workloads")
# The images whose init formats and mounts an attached disk (`volume: true`) and which
# pack the disk's modules (bench.machines.rootfs.DISK_MODULE_ROOTS).
DISK_IMAGES = ("workloads",)
DOCKER_REPO = "bench/{name}"
DOCKER_TAG = "latest"
LABEL_ROOTFS = "bench.rootfs_sha256"
# no_timer_check: under TCG on a loaded host the kernel's check that the IO-APIC timer
# ticks can miss, and the guest panics ("IO-APIC + timer doesn't work!") before init;
# cloud images pass it for the same reason. It skips a check, not a feature.
# loglevel=7 and an early console: the kernel's boot log reaches the console as it is
# printed, from its first line, so bench can tell firmware and decompression, kernel
# init and userspace apart (bench.model.phases). A quiet console would leave the whole boot
# unattributed; a guest of your own may still pass `cmdline: ... quiet`.
DEFAULT_CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 loglevel=7 no_timer_check"


class Manifest(TypedDict):
    """An image's manifest.json: what build_rootfs built, from what."""

    name: str
    rootfs_sha256: str
    rootfs_bytes: int
    initramfs_bytes: int
    busybox: str
    kernel_source: str
    kernel_release: str
    kernel_bytes: int
    built_at: str
    init_sha256: str  # of its init script: an image older than the init bench ships
    # Whether `vmlinux` (the bzImage's own kernel, with a PVH entry) was extracted:
    # microvm boots it as Firecracker boots its guests. An image without the key is
    # an older bench's.
    pvh_kernel: NotRequired[bool]
    # The workloads image: each packed tool's package, version and sha256, and the
    # sha256 of every file added to the busybox tree (binaries, libraries, bench's own
    # files under etc/: an image without the tools or files this bench packs is stale).
    tools: NotRequired[dict[str, dict[str, str]]]
    files_sha256: NotRequired[dict[str, str]]
    # The guest kernel's modules packed (network, and in the workloads image the disk's),
    # by name in load order, with their sha256: none when the kernel's modules were not
    # found (no network: user, no volume: true then). `net_modules`: an older bench's
    # name for it, when it packed only the network's (read by packed_modules).
    guest_modules: NotRequired[dict[str, str]]
    net_modules: NotRequired[dict[str, str]]


@dataclass(frozen=True)
class VmArtifacts:
    kernel: Path  # the bzImage: firmware (SeaBIOS, qboot) loads it, it decompresses itself
    initrd: Path
    cmdline: str
    manifest: Manifest
    pvh_kernel: Path | None = None  # the same kernel uncompressed, entered directly (PVH)


# ELF note of a kernel's PVH entry point (Xen's XEN_ELFNOTE_PHYS32_ENTRY, which QEMU
# reads to boot an uncompressed x86 kernel without firmware).
PVH_NOTE_NAME, PVH_NOTE_TYPE = b"Xen", 18
XZ_MAGIC = b"\xfd7zXZ\x00"


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF carries the PVH entry note QEMU boots by."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, size = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        at, end = offset, min(offset + size, len(elf))
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, at)
            name = elf[at + 12 : at + 12 + namesz].rstrip(b"\0")
            if name == PVH_NOTE_NAME and ntype == PVH_NOTE_TYPE:
                return True
            at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def extract_pvh_kernel(bzimage: Path) -> bytes | None:
    """The uncompressed kernel inside an xz-compressed bzImage, when it has a PVH entry:
    what Firecracker boots (no firmware, no decompressor). None for any other kernel
    (another compression, no PVH note): such a kernel boots as a bzImage."""
    data = bzimage.read_bytes()
    start = data.find(XZ_MAGIC)
    if start < 0:
        return None
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return None
    return elf if has_pvh_note(elf) else None


def image_dir(name: str) -> Path:
    return cache_dir() / "images" / name


def docker_ref(name: str) -> str:
    return f"{DOCKER_REPO.format(name=name)}:{DOCKER_TAG}"


def is_bench_image(name: str) -> bool:
    return name in BENCH_IMAGES


def find_kernel() -> Path:
    """The kernel a VM boots: $BENCH_KERNEL, the running kernel's image, or any other."""
    if env := os.environ.get("BENCH_KERNEL"):
        p = Path(env)
        if not _readable(p):
            raise ImageError(f"BENCH_KERNEL={env} is not a readable file")
        return p
    candidates = [Path(f"/boot/vmlinuz-{platform.release()}")]
    candidates += sorted(Path("/boot").glob("vmlinuz-*"), reverse=True)
    candidates += sorted((cache_dir() / "kernel").glob("vmlinuz-*"), reverse=True)
    for c in candidates:
        if _readable(c):
            return c
    raise ImageError(
        "no readable guest kernel: set BENCH_KERNEL=/path/to/vmlinuz, or install one "
        "(`apt-get install linux-image-amd64`; `make demo` fetches it without installing)"
    )


def kernel_release(path: Path) -> str:
    """The version string embedded in an x86 bzImage header ("6.1.0-56-amd64 ...")."""
    with path.open("rb") as f:
        head = f.read(0x10000)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return "unknown"
    (offset,) = struct.unpack_from("<H", head, 0x20E)
    start = offset + 0x200
    end = head.find(b"\0", start)
    return head[start:end].decode(errors="replace").split()[0] if end > start else "unknown"


def _readable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.R_OK)


def make_readable_dirs(path: Path) -> None:
    """Create `path` and its missing parents world-readable (0755): qemu may run as its
    own user and must reach the images. Only folders made here are given that mode: the
    cache folder may be one the user named ($BENCH_CACHE_DIR=/root), which is theirs."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
        p.chmod(0o755)  # mkdir's mode is filtered by the umask


def build_rootfs(name: str = "busybox", kernel: Path | None = None) -> VmArtifacts:
    """Build the rootfs tar, the initramfs and a copy of the kernel into the cache."""
    if name not in BENCH_IMAGES:
        raise ImageError(f"unknown bench image {name!r} (known: {', '.join(BENCH_IMAGES)})")
    busybox = rootfs.find_busybox()
    kernel = kernel or find_kernel()
    packed: list[rootfs.PackedTool] = []
    digests: dict[str, str] = {}
    if name == "workloads":
        entries, packed, digests = rootfs.workload_entries(busybox)
    else:
        entries = rootfs.busybox_entries(busybox)
    release = kernel_release(kernel)
    modules = net_modules(kernel, release)
    disk = disk_modules(kernel, release) if name in DISK_IMAGES else []
    entries += rootfs.module_entries(modules, {e.path for e in entries}, disk)
    packed_mods = {m.name: m for m in [*modules, *disk]}
    tar = rootfs.to_tar(entries)
    cpio = rootfs.to_cpio_gz(entries)
    out = image_dir(name)
    make_readable_dirs(out)
    _write(out / "rootfs.tar", tar)
    _write(out / "initramfs.cpio.gz", cpio)
    rootfs.copy_file(kernel, out / "vmlinuz")
    (out / "vmlinuz").chmod(0o644)
    vmlinux = extract_pvh_kernel(kernel)
    if vmlinux is not None:
        _write(out / "vmlinux", vmlinux)
    else:
        (out / "vmlinux").unlink(missing_ok=True)
    manifest: Manifest = {
        "name": name,
        "rootfs_sha256": hashlib.sha256(tar).hexdigest(),
        "rootfs_bytes": len(tar),
        "initramfs_bytes": len(cpio),
        "busybox": rootfs.busybox_version(busybox),
        "kernel_source": str(kernel),
        "kernel_release": release,
        "kernel_bytes": kernel.stat().st_size,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "init_sha256": init_sha256(name),
        "pvh_kernel": vmlinux is not None,
        "guest_modules": {m.name: hashlib.sha256(m.data).hexdigest() for m in packed_mods.values()},
    }
    if packed:
        manifest["tools"] = {
            t.name: {"path": t.path, "package": t.package, "version": t.version, "sha256": t.sha256}
            for t in packed
        }
        manifest["files_sha256"] = digests
    _write(out / "manifest.json", json.dumps(manifest, indent=2).encode())
    return vm_artifacts(name)  # type: ignore[return-value]


def init_sha256(name: str = "busybox") -> str:
    """The digest of the init script this bench puts in image `name`."""
    script = rootfs.WORKLOAD_INIT_SCRIPT if name == "workloads" else rootfs.INIT_SCRIPT
    return hashlib.sha256(script.encode()).hexdigest()


def net_modules(kernel: Path, release: str) -> list[rootfs.Module]:
    """The guest kernel's network modules to pack (rootfs.NET_MODULE_ROOTS and their
    dependencies), or none when its modules folder is not found: the image still boots,
    without a NIC driver (a `network: user` platform then says why it cannot run)."""
    moddir = rootfs.modules_dir(kernel, release)
    return rootfs.module_closure(moddir) if moddir is not None else []


def disk_modules(kernel: Path, release: str) -> list[rootfs.Module]:
    """The guest kernel's disk modules to pack (rootfs.DISK_MODULE_ROOTS and their
    dependencies), or none when they are not found: the image still builds, and a
    `volume: true` platform says why it cannot run (a kernel fetched before bench
    packed them: scripts/setup-host.sh fetches it again)."""
    moddir = rootfs.modules_dir(kernel, release)
    if moddir is None:
        return []
    try:
        return rootfs.module_closure(moddir, rootfs.DISK_MODULE_ROOTS)
    except ImageError:
        return []


def packed_modules(manifest: Manifest) -> dict[str, str]:
    """The modules an image packed (name -> sha256), whichever bench built it."""
    return manifest.get("guest_modules", manifest.get("net_modules", {}))


def kernel_has_module(kernel: Path, release: str, name: str) -> bool:
    """Whether the guest kernel's modules folder has module `name` as a file (a module
    bench can pack; not one built in, which needs no packing)."""
    moddir = rootfs.modules_dir(kernel, release)
    return moddir is not None and any(
        f.name.split(".ko")[0].replace("-", "_") == name
        for f in (moddir / "kernel").rglob(f"{name}.ko*")
    )


def kernel_builtin(kernel: Path, release: str, name: str) -> bool:
    """Whether the guest kernel has module `name` built in (its modules.builtin)."""
    moddir = rootfs.modules_dir(kernel, release)
    try:
        listed = (moddir / "modules.builtin").read_text() if moddir else ""
    except OSError:
        return False
    return any(Path(line.strip()).name.split(".ko")[0] == name for line in listed.splitlines())


def stale_reason(manifest: Manifest, kernel: Path | None = None) -> str | None:
    """Why a built image no longer matches what this bench would build from its inputs
    (None: it does): another init, network or disk modules it lacks that are there
    now, or (the workloads image) a tool or a file of bench's own it lacks."""
    # Another init, or no PVH kernel extracted: an older bench's build.
    if manifest.get("init_sha256") != init_sha256(manifest.get("name", "busybox")):
        return "an older bench built it"
    if "pvh_kernel" not in manifest:
        return "an older bench built it"
    source = kernel or Path(manifest.get("kernel_source") or "/nonexistent")
    release = manifest.get("kernel_release") or "unknown"
    packed = packed_modules(manifest)
    if "virtio_net" not in packed and rootfs.modules_dir(source, release) is not None:
        return "the guest kernel's network modules were not packed"
    if (
        manifest.get("name") in DISK_IMAGES
        and "virtio_blk" not in packed
        and kernel_has_module(source, release, "virtio_blk")
    ):
        return "the guest kernel's disk modules were not packed"
    if manifest.get("name") == "workloads":
        # A tool added to the image since (wrk), or another script of bench's own.
        lacking = [t for t in rootfs.WORKLOAD_TOOLS if t not in manifest.get("tools", {})]
        if lacking:
            return f"it lacks {', '.join(lacking)}"
        files = manifest.get("files_sha256", {})
        for rel, data in rootfs.WORKLOAD_ETC.items():
            if files.get(rel) != hashlib.sha256(data).hexdigest():
                return "an older bench built it"
    return None


def load_manifest(name: str) -> Manifest | None:
    """The manifest build_rootfs wrote (JSON read back as written), if there is one."""
    try:
        manifest = json.loads((image_dir(name) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return cast("Manifest", manifest) if isinstance(manifest, dict) else None


def vm_artifacts(name: str) -> VmArtifacts | None:
    d = image_dir(name)
    manifest = load_manifest(name)
    if manifest is None or not all((d / f).is_file() for f in ("vmlinuz", "initramfs.cpio.gz")):
        return None
    pvh = d / "vmlinux" if manifest.get("pvh_kernel") and (d / "vmlinux").is_file() else None
    return VmArtifacts(d / "vmlinuz", d / "initramfs.cpio.gz", DEFAULT_CMDLINE, manifest, pvh)


def ensure_rootfs(name: str) -> Manifest:
    """The manifest of a built rootfs, building it first if the cache lacks it or an
    older bench built it (its init, its packed modules: stale_reason)."""
    manifest = load_manifest(name)
    if (
        manifest is None
        or not (image_dir(name) / "rootfs.tar").is_file()
        or stale_reason(manifest) is not None
    ):
        manifest = build_rootfs(name).manifest
    return manifest


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)
