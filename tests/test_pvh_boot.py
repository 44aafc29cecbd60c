"""microvm boots the bench kernel as Firecracker boots its guests: uncompressed, by its
PVH entry, with no firmware and no decompressor (issue 24: the Firecracker-like machine
was the slower one because bench gave it a bzImage). The extraction, its checks, and
which platform boots which kernel."""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

import pytest

from bench.backends.guest import resolve_boot
from bench.machines import images
from bench.model.errors import MissingImage, ScenarioError
from bench.plan.scenario import parse_scenario


def elf_with_notes(*notes: tuple[bytes, int]) -> bytes:
    """A minimal ELF64 little-endian file whose one PT_NOTE segment holds `notes`."""
    body = b""
    for name, ntype in notes:
        n = name + b"\0"
        body += struct.pack("<III", len(n), 4, ntype)
        body += n.ljust((len(n) + 3) // 4 * 4, b"\0") + b"\0\0\0\0"
    phoff, phentsize = 64, 56
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, phoff, 0, 0, 64, phentsize, 1, 0, 0, 0)
    offset = phoff + phentsize
    ph = struct.pack("<IIQQQQQQ", 4, 4, offset, 0, 0, len(body), len(body), 4)
    return header + ph + body


def bzimage_around(payload: bytes) -> bytes:
    """A stand-in for a bzImage: setup code, then the xz-compressed kernel."""
    return b"MZ" + b"\0" * 4000 + lzma.compress(payload, format=lzma.FORMAT_XZ) + b"\0" * 64


def test_the_pvh_note_is_found_among_others_and_only_there():
    assert images.has_pvh_note(elf_with_notes((b"GNU", 3), (b"Xen", 18)))
    assert not images.has_pvh_note(elf_with_notes((b"Xen", 17), (b"GNU", 18)))
    assert not images.has_pvh_note(b"MZ not an elf")


def test_the_kernel_inside_an_xz_bzimage_is_extracted_only_with_its_pvh_entry(tmp_path):
    pvh = elf_with_notes((b"Xen", 18))
    k = tmp_path / "vmlinuz"
    k.write_bytes(bzimage_around(pvh))
    assert images.extract_pvh_kernel(k) == pvh
    k.write_bytes(bzimage_around(elf_with_notes((b"GNU", 3))))  # no CONFIG_PVH
    assert images.extract_pvh_kernel(k) is None
    k.write_bytes(b"MZ" + b"\0" * 100 + b"\x28\xb5\x2f\xfd zstd")  # another compression
    assert images.extract_pvh_kernel(k) is None
    k.write_bytes(b"MZ" + images.XZ_MAGIC + b"corrupt")
    assert images.extract_pvh_kernel(k) is None


def platform(extra: str = "", backend: str = "qemu"):
    text = f"name: x\nplatforms:\n  - name: p\n    backend: {backend}\n    image: busybox\n{extra}"
    (p,) = parse_scenario(text, "s.yaml").platforms
    return p


class Here:
    def allocated_bytes(self, p: Path) -> int:
        return 1

    def ensure_copy(self, a: Path, b: Path) -> bool:
        return False


def artifacts(tmp_path: Path, pvh: bool) -> images.VmArtifacts:
    manifest = {
        "rootfs_sha256": "a",
        "kernel_release": "k",
        "init_sha256": images.init_sha256(),
        "pvh_kernel": pvh,
    }
    return images.VmArtifacts(
        tmp_path / "vmlinuz",
        tmp_path / "initramfs",
        images.DEFAULT_CMDLINE,
        manifest,  # type: ignore[arg-type]
        tmp_path / "vmlinux" if pvh else None,
    )


@pytest.mark.parametrize(
    ("extra", "entry"),
    [
        ("", "pvh"),  # microvm, the default machine
        ("    machine: pc\n", "bzimage"),
        ("    machine: q35\n", "bzimage"),
        ("    pvh: false\n", "bzimage"),
        ("    machine: pc\n    pvh: true\n", "pvh"),
    ],
)
def test_microvm_boots_the_pvh_kernel_and_firmware_machines_the_bzimage(
    monkeypatch, tmp_path, extra, entry
):
    art = artifacts(tmp_path, pvh=True)
    monkeypatch.setattr(images, "vm_artifacts", lambda name: art)
    s = platform(extra)
    boot = resolve_boot(s, Here(), False, print, pvh=s.boots_pvh())  # type: ignore[arg-type,attr-defined]
    assert boot.facts["kernel_entry"] == entry
    assert boot.kernel is not None
    assert boot.kernel[0] == (art.pvh_kernel if entry == "pvh" else art.kernel)


def test_libvirt_boots_the_bzimage_through_its_firmware(monkeypatch, tmp_path):
    art = artifacts(tmp_path, pvh=True)
    monkeypatch.setattr(images, "vm_artifacts", lambda name: art)
    boot = resolve_boot(platform(backend="libvirt"), Here(), False, print)  # type: ignore[arg-type]
    assert boot.facts["kernel_entry"] == "bzimage" and boot.kernel is not None
    assert boot.kernel[0] == art.kernel


def test_a_kernel_without_a_pvh_entry_falls_back_or_is_refused_when_asked_for(
    monkeypatch, tmp_path
):
    art = artifacts(tmp_path, pvh=False)
    monkeypatch.setattr(images, "vm_artifacts", lambda name: art)
    boot = resolve_boot(platform(), Here(), False, print, pvh=None)  # type: ignore[arg-type]
    assert boot.facts["kernel_entry"] == "bzimage"
    with pytest.raises(MissingImage, match="no PVH entry .* set pvh: false to boot the bzImage"):
        resolve_boot(platform("    pvh: true\n"), Here(), False, print, pvh=True)  # type: ignore[arg-type]


def test_an_image_from_before_the_pvh_kernel_is_rebuilt(monkeypatch, tmp_path):
    old = artifacts(tmp_path, pvh=False)
    del old.manifest["pvh_kernel"]  # type: ignore[misc]
    new = artifacts(tmp_path, pvh=True)
    cached = [old]

    def build(name: str) -> images.VmArtifacts:
        cached[0] = new
        return new

    monkeypatch.setattr(images, "vm_artifacts", lambda name: cached[0])
    monkeypatch.setattr(images, "build_rootfs", build)
    said: list[str] = []
    boot = resolve_boot(platform(), Here(), True, said.append, pvh=None)  # type: ignore[arg-type]
    assert said == ["rebuilding the bench VM image 'busybox' (an older bench built it)..."]
    assert boot.facts["kernel_entry"] == "pvh"


def test_pvh_is_for_the_bench_image_only():
    with pytest.raises(ScenarioError, match="pvh: applies to the bench image's kernel"):
        platform("    kernel: /k\n    initrd: /i\n    pvh: true\n")
