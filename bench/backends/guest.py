"""What every VM backend shares: the guest's keys and their rules, where its boot
files come from, its disk overlay, and the KVM probe.

A VM backend (libvirt, qemu, ...) boots the same guests from the same sources: the
bench pair (`image: busybox`), a kernel with an optional initramfs, or a qcow2 disk that
each instance boots through an overlay of its own. Its Settings subclass `GuestSettings`
and add their engine's own keys. Whether KVM really boots a guest is probed once per
engine and host by a test boot and cached (bench.backends.probe_cache): the skeleton
is here, each backend gives only its key and its own way to boot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from bench.backends.base import ExecResult, Instance
from bench.backends.probe_cache import ACCEL_CACHE, ProbeCache, ProbeResult
from bench.machines import images
from bench.machines.console import CONSOLE, DEBUGCON, Console
from bench.model.errors import ImageError, MissingImage, first_line
from bench.model.records import Facts
from bench.model.settings import DEFAULT_MARKER, Bytes, KeyedValueError, PlatformBase

if TYPE_CHECKING:
    from bench.machines.host import Host

DEFAULT_MEMORY = 256 * 2**20
KVM_PROBE_TIMEOUT_S = float(os.environ.get("BENCH_KVM_PROBE_TIMEOUT", "20"))


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
    console: bool = Field(
        True,
        description="false: no kernel console on the serial port (8250.nr_uarts=0, no "
        "console=ttyS0 or earlyprintk); needs ready: {channel: debugcon}",
    )

    ready_channels: ClassVar[frozenset[str]] = frozenset({CONSOLE, DEBUGCON})

    @model_validator(mode="after")
    def _console_off(self) -> GuestSettings:
        if self.console:
            return self
        if self.ready.channel == CONSOLE:
            raise KeyedValueError(
                "console", "false leaves no console for the marker: add ready: {channel: debugcon}"
            )
        if self.disk:
            raise KeyedValueError(
                "console", "false edits the kernel command line, which a disk: guest sets itself"
            )
        return self

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


# The kernel hands an unknown `name=value` word of its command line (no dot in the name)
# to init as an environment variable: the bench image's init writes its readiness byte
# to the debug port only when it finds this one (bench.machines.rootfs).
READY_ENV = "bench_ready"
# Words that put a kernel console or an early console on the serial port.
SERIAL_CONSOLE_WORDS = ("console=ttyS", "console=uart", "earlyprintk=", "earlycon")


def boot_cmdline(cmdline: str, s: GuestSettings) -> str:
    """The kernel command line with what `ready.channel` and `console:` ask of the guest.

    `console: false` is Firecracker's boot-time set-up: the 8250 driver registers no
    port (8250.nr_uarts=0) and the kernel prints nothing on the UART, early or late
    (on microvm the setup code's one line still reaches it through the firmware), so
    the boot pays for no emulated serial port; readiness comes by the debug port.
    """
    words = cmdline.split()
    if not s.console:
        words = [w for w in words if not w.startswith(SERIAL_CONSOLE_WORDS)]
        words.append("8250.nr_uarts=0")
    if s.ready.channel == DEBUGCON and not any(w.startswith(f"{READY_ENV}=") for w in words):
        words.append(f"{READY_ENV}={DEBUGCON}")
    return " ".join(words)


def make_overlay(host: Host, base: Path, overlay: Path) -> None:
    """A qcow2 overlay of `base`, made on the engine's host with qemu-img (what libvirt
    itself would run; its storage API would need a defined pool)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2"]
    done = host.run([*argv, "-b", str(base.resolve()), str(overlay)], timeout=60)
    if done.returncode == 127:
        raise ImageError("qemu-img not found: `apt-get install qemu-utils`")
    if done.returncode != 0:
        raise ImageError(f"qemu-img create failed: {done.stderr.strip()[:200]}")


def check_boot_files(s: GuestSettings, host: Host) -> None:
    """Refuse, naming the key, a disk:, kernel: or initrd: that is not a file on the
    engine's machine (preflight: before anything starts)."""
    for key, p in (("disk", s.disk), ("kernel", s.kernel), ("initrd", s.initrd)):
        if p and not host.is_file(p):
            raise MissingImage(f"{p} does not exist", key=key)


def probe_guest(host: Host) -> images.VmArtifacts:
    """The guest a KVM probe boots: the bench pair, built on first use and copied to a
    remote hypervisor's machine (the same paths there)."""
    art = images.vm_artifacts("busybox") or images.build_rootfs("busybox")
    for path in (art.kernel, art.initrd):
        host.ensure_copy(path, path)
    return art


# A kernel boot's files: kernel, initramfs (optional with your own kernel), command line.
KernelBoot = tuple[Path, Path | None, str]


@dataclass(frozen=True)
class BootSource:
    """Where a guest boots from: what the run's metadata records of it (`facts`), and
    for a kernel boot its files (`kernel`); a disk boot has none."""

    facts: Facts
    kernel: KernelBoot | None = None


def resolve_boot(
    s: GuestSettings,
    host: Host,
    build_missing: bool,
    say: Callable[[str], None],
    pvh: bool | None = False,
) -> BootSource:
    """Where the guest boots from: its disk, or its kernel and initramfs, building the
    bench pair on first use. A remote hypervisor boots files of its own machine: the
    same paths there, copied from this one's cache when missing or different.

    `pvh`: the bench image's kernel is booted uncompressed by its PVH entry (True), as
    a bzImage through the firmware and its own decompressor (False), or the first when
    the image has one (None)."""
    allocated = host.allocated_bytes
    if s.disk:
        return BootSource({"boot": "disk", "image": str(s.disk), "image_bytes": allocated(s.disk)})
    if s.kernel:
        return BootSource(
            {
                "boot": "kernel",
                "image": str(s.kernel),
                "image_bytes": sum(allocated(p) for p in (s.kernel, s.initrd) if p),
            },
            (s.kernel, s.initrd, boot_cmdline(s.cmdline or images.DEFAULT_CMDLINE, s)),
        )
    # GuestSettings refuses any other image name without kernel: or disk:.
    art = images.vm_artifacts(s.image)
    # An image built by an older bench boots an older init: one from before the debug
    # port's byte would never be ready on that channel. Rebuilt, for every platform
    # alike (they share the files).
    # One from before the PVH kernel was extracted likewise.
    stale = art is not None and (
        art.manifest.get("init_sha256") != images.init_sha256() or "pvh_kernel" not in art.manifest
    )
    if art is None or stale:
        why = "an older bench built it" if stale else "not built"
        if not build_missing:
            raise MissingImage(f"VM image {s.image!r}: {why}: run `bench images build`")
        say(
            f"rebuilding the bench VM image {s.image!r} ({why})..."
            if stale
            else f"building the bench VM image {s.image!r} (first use on this host)..."
        )
        art = images.build_rootfs(s.image)
    if pvh and art.pvh_kernel is None:
        raise MissingImage(
            f"VM image {s.image!r}: its kernel has no PVH entry bench can extract (an "
            "xz-compressed bzImage with CONFIG_PVH): set pvh: false to boot the bzImage"
        )
    kernel = art.pvh_kernel if pvh is not False and art.pvh_kernel else art.kernel
    for path in (kernel, art.initrd):
        if host.ensure_copy(path, path):  # a no-op on this machine
            say(f"copied {path} to {host.key}")
    return BootSource(
        {
            "boot": "kernel",
            "image": s.image,
            "image_bytes": allocated(kernel) + allocated(art.initrd),
            "rootfs_sha256": art.manifest.get("rootfs_sha256"),
            "guest_kernel": art.manifest.get("kernel_release"),
            "kernel_entry": "pvh" if kernel != art.kernel else "bzimage",
        },
        (kernel, art.initrd, boot_cmdline(s.cmdline or art.cmdline, s)),
    )


def kvm_wait_message(where: str = "") -> str:
    """What a KVM probe says once on stderr before its test boot, which can take the
    whole timeout: `where` names the engine (" on qemu:///system", " for direct QEMU")."""
    return (
        f"probing KVM{where} with a test boot (once per host, then cached; "
        f"up to {KVM_PROBE_TIMEOUT_S:.0f} s)..."
    )


def kvm_probe(
    key: str, test_boot: Callable[[], ProbeResult], on_probe: Callable[[], None]
) -> ProbeResult:
    """Whether KVM boots the bench guest on the engine and host `key` stands for (a hash
    of all that decides it): the cached answer, else `on_probe()` (which says that bench
    must wait) and the backend's `test_boot()`, whose answer is cached."""
    cache = ProbeCache.named(ACCEL_CACHE)
    known = cache.get(key) or _older_entry(cache, key)
    if known is not None:
        return known
    on_probe()
    result = test_boot()
    cache.put(key, result, accel="kvm" if result.ok else "tcg")
    return result


def _older_entry(cache: ProbeCache, key: str) -> ProbeResult | None:
    # Before the one probe cache, an entry was {"accel": "kvm"|"tcg", "detail": ...}:
    # read as it is, so hosts that probed then do not wait for a test boot again.
    entry = cache.read().get(key)
    if not isinstance(entry, dict) or entry.get("accel") not in ("kvm", "tcg"):
        return None
    detail = entry.get("detail")
    return ProbeResult(entry["accel"] == "kvm", detail if isinstance(detail, str) else "")


def boot_test(
    name: str, start: Callable[[Instance], None], stop: Callable[[Instance], None]
) -> ProbeResult:
    """Boot one guest under KVM (`start` creates and starts the instance, `stop` tears
    it down) and wait for its init's marker: only a real boot tells whether KVM works
    (an openable /dev/kvm is not enough; under nested PVM guests hang after
    decompression)."""
    done = threading.Event()
    console = Console(DEFAULT_MARKER, on_change=done.set)
    inst = Instance(name, "kvm-probe", "kvm-probe", console)
    try:
        start(inst)
        done.wait(KVM_PROBE_TIMEOUT_S)
    except Exception as e:  # any failure to boot under KVM means: use TCG
        return ProbeResult(False, f"kvm probe failed: {first_line(e)}")
    finally:
        stop(inst)
    if console.ready_at is not None:
        return ProbeResult(True, "guest booted under kvm")
    why = f" ({console.closed_reason})" if console.closed_reason else ""
    return ProbeResult(False, f"no marker within {KVM_PROBE_TIMEOUT_S:.0f}s under kvm{why}")


# A guest's exec, without a guest agent: the workloads image's init runs what bench
# writes on its console (bench.machines.rootfs.WORKLOAD_INIT_SCRIPT).
EXEC_WORD = "BENCH_EXEC"
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def exec_line(argv: list[str]) -> bytes:
    """The console line that asks the guest's init to run `argv` (as one shell line)."""
    import base64
    import shlex

    return f"{EXEC_WORD} {base64.b64encode(shlex.join(argv).encode()).decode()}\n".encode()


def decode_result(lines: list[str]) -> ExecResult:
    """A guest's answer (RESULT_BEGIN line, base64 lines, RESULT_END line) as an
    ExecResult; a garbled or cut one (a kernel message mid-line) is an error."""
    import base64
    import hashlib

    from bench.machines.console import RESULT_BEGIN, parse_marker_fields

    head = next((ln for ln in lines if RESULT_BEGIN in ln), None)
    if head is None:
        raise ImageError("the guest's answer has no result line")
    fields = parse_marker_fields(head.split(RESULT_BEGIN, 1)[1])
    try:
        rc, out, err = int(fields["rc"]), int(fields["out"]), int(fields["err"])
        digest = fields["sha256"]
    except (KeyError, ValueError):
        raise ImageError(f"the guest's result line is garbled: {head[:120]}") from None
    body = "".join(
        ln.strip() for ln in lines[lines.index(head) + 1 :] if set(ln.strip().encode()) <= _B64
    )
    data = base64.b64decode(body) if body else b""
    if len(data) != out + err or hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(
            f"the guest's answer came garbled over its console ({len(data)} of {out + err} "
            "bytes, or another digest)"
        )
    return ExecResult(rc, data[:out], data[out:])


def run_in_guest(
    inst: Instance,
    argv: list[str],
    write: Callable[[bytes], None],
    image: str,
    timeout_s: float,
) -> ExecResult:
    """Run `argv` in a VM of the workloads image through its console: `write` sends the
    command line to its serial port, the answer comes back on inst.console."""
    if image != "workloads":
        raise ImageError(
            f"a VM runs commands only from the workloads image's init, not {image!r}: "
            "set `image: workloads`"
        )
    inst.console.expect_result()
    write(exec_line(argv))
    lines = inst.console.wait_result(timeout_s)
    if lines is None:
        why = inst.console.closed_reason or f"no answer within {timeout_s:g}s"
        raise ImageError(f"the guest did not answer its command: {why}")
    return decode_result(lines)
