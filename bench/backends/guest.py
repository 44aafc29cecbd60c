"""What every VM backend shares: the guest's keys and their rules, and its disk overlay.

A VM backend (libvirt, qemu, ...) boots the same guests from the same sources: the
bench pair (`image: busybox`), a kernel with an optional initramfs, or a qcow2 disk that
each instance boots through an overlay of its own. Its Settings subclass `GuestSettings`
and add their engine's own keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from bench import images
from bench.errors import ImageError
from bench.settings import Bytes, KeyedValueError, PlatformBase

if TYPE_CHECKING:
    from bench.host import Host

DEFAULT_MEMORY = 256 * 2**20


class GuestSettings(PlatformBase):
    # Only the bench pair's name matters here; a guest of your own is kernel:/disk:.
    image: str = Field(
        "busybox",
        min_length=1,
        max_length=512,
        description="busybox = the bench image pair; ignored with kernel: or disk:",
    )
    accel: Literal["auto", "kvm", "tcg"] = Field(
        "auto", description="auto probes once per host whether KVM really boots a guest"
    )
    vcpus: int = Field(1, ge=1, le=512, strict=True, description="virtual CPUs per VM")
    memory: Bytes | None = Field(DEFAULT_MEMORY, description="RAM per VM")
    kernel: Path | None = Field(None, description="your own guest's kernel (with initrd:)")
    initrd: Path | None = Field(None, description="your own guest's initramfs (needs kernel:)")
    cmdline: str | None = Field(None, max_length=4096, description="kernel command line")
    disk: Path | None = Field(
        None, description="a qcow2 base image; each instance boots its own overlay"
    )

    @model_validator(mode="after")
    def _boot_source(self) -> GuestSettings:
        if self.disk and (self.kernel or self.initrd):
            raise KeyedValueError("disk", "give either disk: or kernel:/initrd:, not both")
        if self.initrd and not self.kernel:
            raise KeyedValueError("initrd", "initrd: needs kernel:")
        if self.command:
            raise KeyedValueError("command", "applies to containers only; a VM runs its own init")
        if not (self.disk or self.kernel) and not images.is_bench_image(self.image):
            raise KeyedValueError(
                "image",
                f"{self.image!r} is not a bench image (known: {', '.join(images.BENCH_IMAGES)}); "
                "for your own guest give kernel:/initrd: or disk:",
            )
        return self


def make_overlay(host: Host, base: Path, overlay: Path) -> None:
    """A qcow2 overlay of `base`, made on the engine's host with qemu-img (what libvirt
    itself would run; its storage API would need a defined pool)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2"]
    done = host.run([*argv, "-b", str(base.resolve()), str(overlay)], timeout=60)
    if done.returncode == 127:
        raise ImageError("qemu-img not found: `apt-get install qemu-utils`")
    if done.returncode != 0:
        raise ImageError(f"qemu-img create failed: {done.stderr.strip()[:200]}")
