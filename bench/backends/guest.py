"""What every VM backend shares: the guest's keys and their rules, where its boot
files come from, its disk overlay, its attached disk (`volume: true`), and the KVM
probe.

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

from bench.backends.base import Check, ExecResult, Instance
from bench.backends.probe_cache import ACCEL_CACHE, ProbeCache, ProbeResult
from bench.machines import images, rootfs
from bench.machines.console import CONSOLE, DEBUGCON, Console
from bench.model.addresses import USER_NET, Forward
from bench.model.errors import ImageError, MissingImage, first_line
from bench.model.records import Facts
from bench.model.settings import (
    DEFAULT_MARKER,
    NETWORK_READY,
    Bytes,
    KeyedValueError,
    PlatformBase,
)

if TYPE_CHECKING:
    from bench.machines.host import Host

DEFAULT_MEMORY = 256 * 2**20
# `network: user`: the guest on user-mode networking (QEMU's slirp, libvirt's passt).
USER = "user"
# The kernel command line holds 2048 bytes on x86: the service's base64 must fit.
MAX_SERVICE = 512
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
    # Each backend defines `network:` its own way (qemu: none or user; libvirt: a
    # network's name, or user); `user` is the same on both (user_net).
    network: str | None = None
    service: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SERVICE,
        description="bench images with network: user: a shell command line the guest's "
        "init runs in the background once eth0 is up (e.g. httpd -p 80 -h /www)",
    )

    # A guest's console (marker, regex) and, with network: user, an HTTP answer through
    # a forwarded port. Not tcp: user-mode networking accepts a forwarded connection on
    # this host's side before the guest has it (QEMU's slirp does so even while the
    # guest is paused; passt the same), so a connect says nothing of the guest. No exit
    # status: a VM's end is its VMM's, not a process's.
    ready_kinds: ClassVar[frozenset[str]] = frozenset({"marker", "regex", "http"})
    ready_refused: ClassVar[dict[str, str]] = {
        "tcp": "a port forwarded to a VM accepts on this host's side before the guest "
        "listens (user-mode networking), and this backend cannot ask the forwarder: use "
        "ready: {http: {port: PORT}}, which only the guest can answer",
        "exit": "a VM's end is its VMM's, not a process's exit status",
    }

    @property
    def user_net(self) -> bool:
        """A virtio-net NIC on user-mode networking, ports forwarded from 127.0.0.1."""
        return self.network == USER

    def forwarded_ports(self) -> list[int]:
        """The guest TCP ports this host reaches through forwards: ready:'s port."""
        port = self.ready.port
        return [port] if self.user_net and port is not None else []

    @model_validator(mode="after")
    def _network(self) -> GuestSettings:
        kind = self.ready.kind
        if kind in NETWORK_READY and not self.user_net:
            raise KeyedValueError(
                "network",
                f"ready: {kind} probes the guest's port through a port forwarded from this "
                "host: set network: user",
            )
        if self.service is not None:
            if self.disk or self.kernel:
                raise KeyedValueError(
                    "service", "the bench image's init runs it: not with kernel: or disk:"
                )
            if not self.user_net:
                raise KeyedValueError("service", "a service needs a network: set network: user")
        return self

    volume: bool = Field(
        False,
        description="attach a disk bench creates (and removes): a sparse raw file the "
        "guest formats and mounts at /bench-volume, for the *-volume workloads (image: "
        "workloads)",
    )

    @model_validator(mode="after")
    def _volume_in_the_bench_image(self) -> GuestSettings:
        # The workloads image's init formats and mounts the disk (rootfs.VOLUME_BLOCK).
        if not self.volume:
            return self
        if self.disk or self.kernel:
            raise KeyedValueError(
                "volume",
                "true needs the bench image's init, which formats and mounts the disk: "
                "not with kernel: or disk:",
            )
        if self.image not in images.DISK_IMAGES:
            raise KeyedValueError(
                "volume",
                f"true needs image: {' or '.join(images.DISK_IMAGES)} (its init formats "
                f"and mounts the disk; {self.image} has no disk modules)",
            )
        return self

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


def guest_network_check() -> Check:
    """`bench doctor`'s line on `network: user`: whether the guest kernel's network
    modules are there to pack (a warning only: boot benchmarks need no NIC)."""
    name = "guest network"
    try:
        kernel = images.find_kernel()
    except ImageError as e:
        return Check(name, True, f"network: user unavailable: {e}", warn=True)
    release = images.kernel_release(kernel)
    moddir = rootfs.modules_dir(kernel, release)
    fix = "scripts/setup-host.sh (make setup) extracts them beside the kernel it fetches"
    if moddir is None:
        why = f"no modules of {release} beside {kernel} or in /lib/modules/{release}"
        return Check(name, True, f"network: user unavailable: {why}", fix, warn=True)
    try:
        modules = rootfs.module_closure(moddir)
    except ImageError as e:
        return Check(name, True, f"network: user unavailable: {e}", fix, warn=True)
    return Check(name, True, f"network: user: {len(modules)} modules of {release} in {moddir}")


def guest_disk_check() -> Check:
    """`bench doctor`'s line on `volume: true` in a VM: whether the guest kernel's disk
    modules are there to pack, or built in (a warning only: a VM needs no disk)."""
    name = "guest disk"
    try:
        kernel = images.find_kernel()
    except ImageError as e:
        return Check(name, True, f"volume: true unavailable: {e}", warn=True)
    release = images.kernel_release(kernel)
    fix = "make setup (scripts/setup-host.sh fetches the kernel again with its disk modules)"
    lacking = [
        m
        for m in ("virtio_blk", "ext4")
        if not images.kernel_builtin(kernel, release, m)
        and not images.kernel_has_module(kernel, release, m)
    ]
    if lacking:
        why = f"no {' or '.join(lacking)} module of {release} beside {kernel}, none built in"
        return Check(name, True, f"volume: true unavailable: {why}", fix, warn=True)
    return Check(name, True, f"volume: true: virtio_blk and ext4 of {release}")


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


# The disk of `volume: true`: room for fio-volume's 64 MiB file or the io aggressor's
# 64 MiB (stress-ng --hdd-bytes), ext2's own blocks, and slack. Sparse: what the guest
# writes is all it takes on the host.
VOLUME_BYTES = 256 * 2**20
# QEMU's cache modes for it: none opens the file O_DIRECT (no host page cache between
# the guest and the disk, as a container's volume under O_DIRECT has none); a folder
# whose file system refuses O_DIRECT (tmpfs before Linux 6.6) gets writethrough, the
# host's page cache with each write synced (directsync is O_DIRECT too: no use there).
VOLUME_CACHE, VOLUME_CACHE_FALLBACK = "none", "writethrough"
# Instance.info key of the cache mode a volume got (and the run's facts).
VOLUME_CACHE_KEY = "volume_cache"


def make_volume(host: Host, path: Path, size_bytes: int = VOLUME_BYTES) -> str:
    """A sparse raw file of `size_bytes` at `path` on the engine's host, for the guest
    to format (the bench image's init); returns the QEMU cache mode it takes: none,
    unless one O_DIRECT write there is refused (then VOLUME_CACHE_FALLBACK)."""
    done = host.run(["truncate", "-s", str(size_bytes), str(path)], timeout=60)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise ImageError(f"cannot create the volume {path}: {why[:200]}")
    # One block written O_DIRECT where QEMU will open it: what cache=none needs.
    probe = ["dd", "if=/dev/zero", f"of={path}", "bs=4096", "count=1"]
    direct = host.run([*probe, "oflag=direct", "conv=notrunc"], timeout=60)
    return VOLUME_CACHE if direct.returncode == 0 else VOLUME_CACHE_FALLBACK


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
    # An image built from other inputs (an older init: one from before the debug port's
    # byte would never be ready on that channel; no PVH kernel extracted; no network
    # modules that are there now) is rebuilt, for every platform alike (they share
    # the files).
    stale = images.stale_reason(art.manifest) if art is not None else None
    if art is None or stale:
        why = stale or "not built"
        if not build_missing:
            raise MissingImage(f"VM image {s.image!r}: {why}: run `bench images build`")
        say(
            f"rebuilding the bench VM image {s.image!r} ({why})..."
            if stale
            else f"building the bench VM image {s.image!r} (first use on this host)..."
        )
        art = images.build_rootfs(s.image)
    if s.user_net and "virtio_net" not in images.packed_modules(art.manifest):
        release = art.manifest.get("kernel_release")
        raise MissingImage(
            f"network: user needs the guest kernel's virtio_net module, and no modules of "
            f"{release} were found beside {art.manifest.get('kernel_source')} or in "
            f"/lib/modules/{release}: run scripts/setup-host.sh (it extracts them beside "
            "the kernel it fetches), or install that kernel's package",
            key="network",
        )
    if s.volume:
        check_disk_modules(art.manifest)
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
        (kernel, art.initrd, net_cmdline(boot_cmdline(s.cmdline or art.cmdline, s), s)),
    )


def check_disk_modules(manifest: images.Manifest) -> None:
    """Refuse `volume: true` when the image's guest kernel can drive no virtio disk
    or mount no ext2: neither packed nor built in (a kernel fetched before bench packed
    them)."""
    kernel = Path(manifest.get("kernel_source") or "/nonexistent")
    release = manifest.get("kernel_release") or "unknown"
    _refuse_without_disk(
        kernel, release, set(images.packed_modules(manifest)), "packed in the image"
    )


def check_volume_kernel(s: GuestSettings) -> None:
    """Preflight (`bench validate` too) of `volume: true` on the bench image: the guest
    kernel bench builds it from has the disk modules to pack, or has them built in."""
    if not s.volume or s.kernel or s.disk:
        return
    try:
        kernel = images.find_kernel()
    except ImageError:
        return  # said by the image build, with its own fix
    release = images.kernel_release(kernel)
    have = {m for m in ("virtio_blk", "ext4") if images.kernel_has_module(kernel, release, m)}
    _refuse_without_disk(kernel, release, have, f"beside {kernel}")


def _refuse_without_disk(kernel: Path, release: str, have: set[str], where: str) -> None:
    lacking = [
        m
        for m in ("virtio_blk", "ext4")
        if m not in have and not images.kernel_builtin(kernel, release, m)
    ]
    if lacking:
        raise MissingImage(
            f"true needs the guest kernel's {' and '.join(lacking)}, neither "
            f"{where} nor built into {release}: run `make setup` (scripts/setup-host.sh "
            "fetches the kernel again with its disk modules)",
            key="volume",
        )


# The kernel hands an unknown `name=value` word of its command line (no dot in the name)
# to init as an environment variable: the bench image's init reads these
# (bench.machines.rootfs.NET_BLOCK, VOLUME_BLOCK).
SERVICE_ENV = "bench_service"
VOLUME_ENV = "bench_volume"


def net_cmdline(cmdline: str, s: GuestSettings) -> str:
    """The kernel command line with the guest's network set-up (network: user), its
    service, base64 (no quoting on a kernel command line), and whether it has a disk
    to format and mount (volume: true), for the bench image's init."""
    import base64

    words = cmdline.split()
    if s.user_net and not any(w.startswith("bench_net=") for w in words):
        words.append(USER_NET.kernel_word)
    if s.service:
        words.append(f"{SERVICE_ENV}={base64.b64encode(s.service.encode()).decode()}")
    if s.volume and not any(w.startswith(f"{VOLUME_ENV}=") for w in words):
        words.append(f"{VOLUME_ENV}=1")
    return " ".join(words)


def forwards(s: GuestSettings, pick: Callable[[], int]) -> list[Forward]:
    """One instance's port forwards: each of the platform's forwarded guest ports from
    a free port of this host's loopback (`pick`)."""
    return [Forward(pick(), port) for port in s.forwarded_ports()]


def user_net_host_address(s: GuestSettings) -> str:
    """Where a server of this host listens for a guest on user-mode networking: this
    host's loopback, which QEMU's slirp gives the guest as its gateway (10.0.2.2) and
    nothing outside this host reaches (Backend.host_address of a VM backend)."""
    from bench.model.addresses import FORWARD_ADDRESS

    if not s.user_net:
        raise ValueError("the VM has no network (network: none): set network: user")
    return FORWARD_ADDRESS


def user_net_address_seen(s: GuestSettings, bound: str) -> str:
    """The address the guest dials for that server: its gateway, this host under slirp."""
    from bench.model.addresses import FORWARD_ADDRESS

    return USER_NET.gateway if s.user_net and bound == FORWARD_ADDRESS else bound


# Instance.info key of an instance's forwards (guest port -> this host's port).
FORWARDS_KEY = "forwards"


def forwarded_endpoint(inst: Instance, port: int) -> tuple[str, int]:
    """Where this host reaches guest `port` of a started instance: 127.0.0.1 and the
    host port forwarded to it (Backend.endpoint of a VM backend)."""
    from bench.model.addresses import FORWARD_ADDRESS

    mapped = inst.info.get(FORWARDS_KEY)
    host_port = mapped.get(str(port)) if isinstance(mapped, dict) else None
    if not isinstance(host_port, int):
        raise ValueError(f"guest port {port} is not forwarded (network: user forwards ready:'s)")
    return FORWARD_ADDRESS, host_port


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
