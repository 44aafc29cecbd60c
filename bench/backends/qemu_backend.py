"""QEMU launched directly, no libvirt: the Firecracker-like `microvm` machine by default.

Each instance is a `qemu-system-x86_64` process, bench's own child in its own session
(a Ctrl-C in bench's terminal never reaches it; bench tears it down), started paused
(`-S`). Bench listens on two unix sockets in the instance's directory before spawning
it and QEMU connects to both as a client while it initialises: QMP (through the
`qemu.qmp` package) and the serial console (read by the harness's selector thread,
bench.machines.iohub). So no byte of the console is missed, nothing is polled for, and
`start_s` is the QMP `cont`.

Housekeeping, for a bench that dies without tearing down: every instance has a state
file, written before its process exists, naming the instance, its run, its owner and
(once spawned) its pid. `leftovers()` reads these files; `bench clean` kills a process
only if its command line is still that instance's QEMU.

State layout under bench.model.paths.state_dir():
    qemu/<key>.json   the state file (written first, removed last)
    qemu/<key>/       sockets, pid file, QEMU's stderr, the disk overlay, the volume
                      (volume: true: a sparse raw file the guest formats)
<key> is a hash of the instance name: unix socket paths must stay under 108 bytes
whatever the run id's length.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from pydantic import Field, JsonValue, model_validator

from bench.backends.base import (
    NAME_PREFIX,
    Backend,
    BoundaryView,
    Check,
    ExecResult,
    Instance,
    Leftover,
    Options,
    parse_pid,
    print_nothing,
)
from bench.backends.guest import (
    DEFAULT_MEMORY,
    FORWARDS_KEY,
    VOLUME_BYTES,
    VOLUME_CACHE_KEY,
    BootSource,
    GuestSettings,
    KernelBoot,
    boot_test,
    check_boot_files,
    check_volume_kernel,
    forwarded_endpoint,
    forwards,
    guest_disk_check,
    guest_network_check,
    kvm_probe,
    kvm_wait_message,
    make_overlay,
    make_volume,
    probe_guest,
    resolve_boot,
    run_in_guest,
    user_net_address_seen,
    user_net_host_address,
)
from bench.backends.probe_cache import ProbeResult
from bench.machines import images, netprobe
from bench.machines.console import DEBUGCON, DEBUGCON_PORT
from bench.machines.iohub import IOHub
from bench.model import kinds, phases
from bench.model.addresses import Forward
from bench.model.errors import BenchError, EngineUnavailable, first_line
from bench.model.owner import owner_labels, pid_alive
from bench.model.paths import state_dir
from bench.model.records import Facts, text
from bench.model.settings import KeyedValueError

if TYPE_CHECKING:
    from qemu.qmp import QMPClient

    from bench.machines.host import Host

QEMU_BINARY = "qemu-system-x86_64"
# QEMU connects to bench's sockets while it initialises: well under a second even on a
# loaded host; a QEMU that has not connected by then is stuck.
CONNECT_TIMEOUT_S = 30
QMP_TIMEOUT_S = 30
QUIT_WAIT_S = 5  # after QMP quit, before SIGKILL
STATE_VERSION = 1

# Machines with no PCI bus take virtio-mmio devices; the others virtio-pci.
MMIO_MACHINES = frozenset({"microvm"})
# microvm without option ROMs (HOST.md). Its RTC stays on: a guest kernel with the CMOS
# RTC driver built in (Debian's, the bench pair's) waits for an absent RTC twice while
# it boots ("Unable to read current time from RTC", then "rtc_cmos: broken or not
# accessible"), 3.5 s under TCG here, which made microvm slower to ready than a full PC.
MACHINE_ARGS = {
    "microvm": "microvm,x-option-roms=off",
    "q35": "q35",
    "pc": "pc",
}


class QemuSettings(GuestSettings):
    backend: Literal["qemu"] = Field(description="a VM of qemu-system-x86_64, without libvirt")
    machine: Literal["microvm", "q35", "pc"] = Field(
        "microvm", description="microvm: no PCI or firmware (Firecracker's design); q35, pc"
    )
    network: Literal["none", "user"] = Field(
        "none",
        description="none: no NIC; user: a virtio-net NIC on QEMU's user networking, the "
        "guest at 10.0.2.15, ready:'s port forwarded from 127.0.0.1 (tcp:, http: need it)",
    )

    # Direct QEMU can also tell whether the guest took a forwarded connection (slirp's
    # table over QMP, QemuBackend.forward_accepted): tcp readiness is sound here.
    ready_kinds: ClassVar[frozenset[str]] = frozenset({"marker", "regex", "tcp", "http"})
    pvh: bool | None = Field(
        None,
        description="boot the bench image's kernel uncompressed by its PVH entry, with "
        "no firmware or decompressor, as Firecracker does (default: on microvm); false: "
        "the bzImage through the firmware",
    )

    @model_validator(mode="after")
    def _pvh_for_the_bench_image(self) -> QemuSettings:
        if self.pvh and (self.kernel or self.disk):
            raise KeyedValueError(
                "pvh",
                "applies to the bench image's kernel: give your own uncompressed vmlinux "
                "as kernel: instead (QEMU boots an ELF with a PVH note that way)",
            )
        return self

    def boots_pvh(self) -> bool | None:
        """resolve_boot's `pvh`: as set, else microvm's default (when the image has it)."""
        if self.pvh is not None:
            return self.pvh
        return None if self.machine == "microvm" else False


# -- files of one instance -----------------------------------------------------------


def qemu_root() -> Path:
    return state_dir() / "qemu"


@dataclass(frozen=True)
class InstancePaths:
    state: Path  # the state file, outside the directory: written first, removed last
    dir: Path
    qmp: Path
    serial: Path
    debugcon: Path  # the debug port's chardev (ready: {channel: debugcon})
    pidfile: Path
    log: Path  # QEMU's stderr: why it would not start
    overlay: Path
    volume: Path  # volume: true's raw file (removed with the directory)

    @classmethod
    def of(cls, name: str, root: Path | None = None) -> InstancePaths:
        root = qemu_root() if root is None else root
        key = hashlib.sha256(name.encode()).hexdigest()[:16]
        d = root / key
        return cls(
            root / f"{key}.json",
            d,
            d / "qmp.sock",
            d / "serial.sock",
            d / "debugcon.sock",
            d / "qemu.pid",
            d / "qemu.log",
            d / "overlay.qcow2",
            d / "volume.raw",
        )


def write_state(path: Path, state: Mapping[str, object]) -> None:
    """Atomically: a reader (bench clean) sees the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def read_state(path: Path) -> dict[str, JsonValue] | None:
    """An instance's state file (JSON with its `name`), or None if it is not one."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("name"), str) else None


def instance_state(inst: Instance, paths: InstancePaths, pid: int | None) -> dict[str, object]:
    return {
        "version": STATE_VERSION,
        "name": inst.name,
        "run_id": inst.run_id,
        "platform": inst.platform,
        **owner_labels(),
        "pid": pid,
        "dir": str(paths.dir),
        "pidfile": str(paths.pidfile),
        "overlay": str(paths.overlay),
    }


def qemu_argv(
    *,
    binary: str,
    name: str,
    machine: str,
    accel: str,
    memory_bytes: int,
    vcpus: int,
    paths: InstancePaths,
    kernel: KernelBoot | None = None,
    disk: Path | None = None,
    nic: list[Forward] | None = None,
    debugcon: bool = False,
    volume: tuple[Path, str] | None = None,
) -> list[str]:
    """The command line of one paused instance (never run through a shell). `nic`: a
    virtio-net NIC on user networking with these forwards (None: no NIC). `volume`: a
    raw file and its cache mode, the guest's virtio disk (volume: true)."""
    argv = [
        binary,
        # The name lands in /proc/PID/cmdline: `bench clean` checks it before a kill.
        "-name",
        f"guest={name}",
        "-machine",
        MACHINE_ARGS[machine],
        "-accel",
        accel,
        "-m",
        f"{max(1, memory_bytes // 2**20)}M",
        "-smp",
        str(vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",  # a guest that reboots or panics (panic=-1) ends its process
        "-S",
        # Client sockets: bench listens before spawning, QEMU connects while it starts.
        "-chardev",
        f"socket,id=qmp0,path={paths.qmp}",
        "-mon",
        "chardev=qmp0,mode=control",
        "-chardev",
        f"socket,id=ser0,path={paths.serial}",
        "-serial",
        "chardev:ser0",
        "-pidfile",
        str(paths.pidfile),
    ]
    if debugcon:
        # Bochs' "port E9" console: each byte the guest writes to the port reaches the
        # chardev as it is, no UART between (every machine here has an ISA bus, microvm
        # too). A client socket like the serial's, opened in command-line order.
        argv += [
            "-chardev",
            f"socket,id=dbg0,path={paths.debugcon}",
            "-device",
            f"isa-debugcon,iobase={DEBUGCON_PORT:#x},chardev=dbg0",
        ]
    if kernel:
        k, initrd, cmdline = kernel
        argv += ["-kernel", str(k)]
        if initrd:
            argv += ["-initrd", str(initrd)]
        argv += ["-append", cmdline]
    if nic is not None:
        # slirp, in QEMU's process: no host privileges, no bridge, no tap. Each forward
        # listens on this host's loopback only (addresses.Forward).
        netdev = ",".join(["user,id=net0", *(f"hostfwd={f.hostfwd}" for f in nic)])
        # No option ROM on PCI (romfile=): SeaBIOS would load iPXE, a network boot
        # bench never does, on every boot.
        device = (
            "virtio-net-device,netdev=net0"
            if machine in MMIO_MACHINES
            else "virtio-net-pci,netdev=net0,romfile="
        )
        argv += ["-netdev", netdev, "-device", device]
    if disk:
        blk = "virtio-blk-device" if machine in MMIO_MACHINES else "virtio-blk-pci"
        argv += [
            "-drive",
            f"if=none,id=disk0,format=qcow2,file={disk}",
            "-device",
            f"{blk},drive=disk0,bootindex=0" if blk.endswith("pci") else f"{blk},drive=disk0",
        ]
    if volume:
        path, cache = volume
        # The guest's /dev/vda (no disk: with it, GuestSettings refuses the pair). A
        # comma in the path would end QEMU's option: doubled, as QEMU's syntax escapes it.
        file = str(path).replace(",", ",,")
        blk = "virtio-blk-device" if machine in MMIO_MACHINES else "virtio-blk-pci"
        argv += [
            "-drive",
            f"file={file},format=raw,if=none,id=vol0,cache={cache}",
            "-device",
            f"{blk},drive=vol0",
        ]
    return argv


# Where QEMU's QOM tree keeps the devices the machine and the command line made: the
# machine's own children, -device with and without an id, and the board's internal ones.
QOM_DEVICE_PARENTS = (
    "/machine",
    "/machine/peripheral",
    "/machine/peripheral-anon",
    "/machine/unattached",
)
QOM_DEVICES_SOURCE = "QMP qom-list of " + ", ".join(QOM_DEVICE_PARENTS) + " (device types only)"


def _listed(answer: object) -> list[dict[str, object]]:
    """The objects of a QMP answer that is a list (qom-list, qom-list-types)."""
    return [x for x in answer if isinstance(x, dict)] if isinstance(answer, list) else []


async def qom_device_types(qmp: QMPClient) -> set[str]:
    """The QOM types this QEMU binary says are devices (one answer per binary)."""
    listed = await qmp.execute("qom-list-types", {"implements": "device", "abstract": False})
    return {str(t.get("name")) for t in _listed(listed)}


async def qom_devices(qmp: QMPClient, device_types: set[str] | None = None) -> dict[str, int]:
    """The devices of a running QEMU, by QOM type, counted: the children of
    QOM_DEVICE_PARENTS whose type QEMU itself says is a device (qom-list-types
    implements=device); memory regions, IRQs and containers are not devices. Works on
    every machine type (microvm has no PCI bus for query-pci to list)."""
    if device_types is None:
        device_types = await qom_device_types(qmp)
    counts: dict[str, int] = {}
    for path in QOM_DEVICE_PARENTS:
        for prop in _listed(await qmp.execute("qom-list", {"path": path})):
            kind = text(prop.get("type", "")) or ""
            name = kind[len("child<") : -1] if kind.startswith("child<") else ""
            if name in device_types:
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def guest_established(usernet: str, port: int) -> bool:
    """Whether QEMU's `info usernet` lists an established TCP connection to the guest's
    `port` (rows: `TCP[ESTABLISHED]  FD  src-addr src-port  dst-addr dst-port ...`;
    the forward itself is TCP[HOST_FORWARD], a connection not yet taken SYN_SENT)."""
    for line in usernet.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == "TCP[ESTABLISHED]" and fields[5] == str(port):
            return True
    return False


def host_tsc_khz(cpuinfo: str | None = None) -> int | None:
    """This host's TSC frequency when it can be known for sure, else None.

    The kernel's own figure if exported; else /proc/cpuinfo's "cpu MHz", but only on a
    virtual host ("hypervisor" flag), where it is the fixed TSC frequency the hypervisor
    reports (on bare metal it is the current, scaled clock: useless here).
    """
    if cpuinfo is None:
        try:
            return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
        except (OSError, ValueError):
            pass
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    if not (mhz and flags and "hypervisor" in flags.group(1).split()):
        return None
    return round(float(mhz.group(1)) * 1000)


def guest_cmdline(cmdline: str, machine: str, accel: str | None, tsc_khz: int | None) -> str:
    """The kernel command line a direct-QEMU guest boots with.

    microvm has no HPET and no ACPI PM timer, so the guest kernel can calibrate its TSC
    only against the PIT; under TCG on a busy host that timing loop fails now and then
    ("tsc: Unable to calibrate against PIT"), and the guest then hangs before its init
    (seen here in about 1 boot of 3 under load). Under TCG the guest's TSC is the host's
    (QEMU reads the host's TSC), so telling the guest its frequency skips the calibration.
    """
    if machine != "microvm" or accel != "tcg" or not tsc_khz or "tsc_early_khz=" in cmdline:
        return cmdline
    return f"{cmdline} tsc_early_khz={tsc_khz}"


def is_instance_process(pid: int, name: str, binary: str = QEMU_BINARY) -> bool:
    """Whether pid is still the QEMU of instance `name` (a pid may have been reused).

    Read from this machine's /proc: the backend only runs local QEMUs.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return (
        bool(args)
        and Path(os.fsdecode(args[0])).name == Path(binary).name
        and (f"guest={name}".encode() in args)
    )


def kill_group(pid: int) -> None:
    """SIGKILL the instance's process group (it leads its own session), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_instance_files(paths: InstancePaths) -> None:
    shutil.rmtree(paths.dir, ignore_errors=True)
    paths.state.unlink(missing_ok=True)
    paths.state.with_name(paths.state.name + ".tmp").unlink(missing_ok=True)


# -- QMP on one event-loop thread ----------------------------------------------------


T = TypeVar("T")


class _Loop:
    """One asyncio loop in a daemon thread; the backend's QMP clients all live on it.

    qemu.qmp is asyncio-only. The runner calls the backend from many launch threads, so
    every call is handed to this loop and waited for with a timeout.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="bench-qemu-qmp", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[object, object, T], timeout: float) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def submit(self, coro: Coroutine[object, object, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class _Live:
    """What one running instance holds in this bench process."""

    paths: InstancePaths
    proc: subprocess.Popen[bytes] | None = None
    qmp: QMPClient | None = None  # once connected
    console: socket.socket | None = None
    port: socket.socket | None = None  # the debug port's chardev, when it is the channel
    destroyed: bool = False


class QemuBackend(Backend):
    kind = kinds.VM
    Settings = QemuSettings

    def __init__(self, settings: QemuSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: QemuSettings = settings
        # No PCI and no firmware: the Firecracker design. q35 and pc are full VMs.
        self.kind = kinds.MICROVM if settings.machine == "microvm" else kinds.VM
        self.binary = QEMU_BINARY
        self.accel: str | None = None
        self._boot = BootSource({})
        self._lock = threading.Lock()
        self._loop: _Loop | None = None
        self._hub: IOHub | None = None
        self._version: str | None = None
        self._device_types: set[str] | None = None  # QOM device types of self.binary

    # -- the CLI's hooks ----------------------------------------------------------------

    @classmethod
    def _default(cls, name: str) -> QemuBackend:
        return cls(QemuSettings(name=name, backend="qemu"))

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        # State files are on this machine: there is one "engine" and nothing to reach.
        return [cls._default("clean")]

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        q = cls._default("doctor")
        try:
            return q._doctor_checks(say)
        except BenchError as e:
            fix = "apt-get install qemu-system-x86 qemu-utils; pip install qemu.qmp"
            return [Check("qemu", False, str(e), fix, engine=True)]
        finally:
            q.close()

    def _doctor_checks(self, say: Callable[[str], None]) -> list[Check]:
        version = self.qemu_version()
        machines = self.machines()
        checks = [Check("qemu", True, f"{self.binary} {version}")]
        has_microvm = "microvm" in machines
        checks.append(
            Check(
                "qemu machines",
                has_microvm,
                ", ".join(m for m in MACHINE_ARGS if m in machines) or "none of bench's",
                "" if has_microvm else "a QEMU with the microvm machine (5.0 or later)",
            )
        )
        try:
            import qemu.qmp  # noqa: F401
        except ImportError:
            checks.append(Check("qemu.qmp", False, "not installed", "pip install qemu.qmp"))
        checks.append(guest_network_check())
        checks.append(guest_disk_check())
        if images.vm_artifacts("busybox") is not None:
            accel, detail = self.resolve_accel(
                on_probe=lambda: say(kvm_wait_message(" for direct QEMU"))
            )
            text = (
                "KVM boots guests"
                if accel == "kvm"
                else f"TCG only (software emulation): {detail}; VM boot times are not "
                "representative of KVM"
            )
            checks.append(Check("qemu accel", True, text))
        return checks

    # -- the engine: a program on this host ------------------------------------------

    def qemu_version(self) -> str:
        """`7.2.22`; raises EngineUnavailable when the program is missing."""
        if self._version is None:
            done = self.host.run([self.binary, "--version"], timeout=30)
            if done.returncode == 127:
                raise EngineUnavailable(
                    f"{self.binary} not found: `apt-get install qemu-system-x86`"
                )
            m = re.search(r"version\s+(\S+)", done.stdout)
            if done.returncode != 0 or not m:
                raise EngineUnavailable(
                    f"{self.binary} --version failed: {(done.stderr or done.stdout).strip()[:200]}"
                )
            self._version = m.group(1)
        return self._version

    def machines(self) -> set[str]:
        done = self.host.run([self.binary, "-machine", "help"], timeout=30)
        return {line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip()}

    def preflight(self) -> None:
        self.qemu_version()
        try:
            import qemu.qmp  # noqa: F401
        except ImportError:
            raise EngineUnavailable(
                "the qemu backend needs the qemu.qmp package: `pip install qemu.qmp`"
            ) from None
        if self.settings.machine not in self.machines():
            raise EngineUnavailable(
                f"{self.binary} {self._version} has no {self.settings.machine!r} machine"
            )
        check_boot_files(self.settings, self.host)
        check_volume_kernel(self.settings)

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        self._boot = resolve_boot(
            self.settings, self.host, build_missing, say, pvh=self.settings.boots_pvh()
        )
        self.accel, accel_detail = self.resolve_accel(
            on_probe=lambda: say(kvm_wait_message(" for direct QEMU"))
        )
        if self._boot.kernel:
            k, initrd, cmdline = self._boot.kernel
            cmdline = guest_cmdline(cmdline, self.settings.machine, self.accel, host_tsc_khz())
            self._boot = BootSource({**self._boot.facts, "cmdline": cmdline}, (k, initrd, cmdline))
        self.host.make_dirs(qemu_root())
        return {
            "engine": "qemu",
            "qemu_binary": self.binary,
            "qemu_version": self.qemu_version(),
            "machine": self.settings.machine,
            "network": self.settings.network,
            "accel": self.accel,
            "accel_detail": accel_detail,
            **self._boot.facts,
            # volume: true: each instance's disk (its cache mode is the instance's own fact).
            **({"volume_bytes": VOLUME_BYTES} if self.settings.volume else {}),
        }

    # -- accel: the same rule as libvirt's, by a probe boot of QEMU itself -------------

    def resolve_accel(self, on_probe: Callable[[], None] = lambda: None) -> tuple[str, str]:
        """(accel, why) for this platform's instances; `on_probe` before a probe boot."""
        if self.settings.accel != "auto":
            return self.settings.accel, "set by accel:"
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "tcg", "no usable /dev/kvm"
        probed = kvm_probe(self._probe_key(), self._probe_kvm, on_probe)
        return ("kvm" if probed.ok else "tcg"), probed.detail

    def _probe_key(self) -> str:
        # Re-probe when anything that decides whether KVM works has changed.
        parts = ["qemu-direct", self.binary, self.qemu_version(), os.uname().release]
        parts.append(self.host.key)
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _probe_kvm(self) -> ProbeResult:
        """The test boot of kvm_probe: the bench guest in a QEMU of its own under KVM."""
        art = probe_guest(self.host)
        settings = QemuSettings(name="kvm-probe", backend="qemu", accel="kvm", memory="128MiB")
        probe = type(self)(settings, self.host)
        probe.accel = "kvm"
        probe._boot = BootSource({}, (art.kernel, art.initrd, art.cmdline))

        def start(inst: Instance) -> None:
            probe.create(inst)
            probe.start(inst)

        def stop(inst: Instance) -> None:
            probe.destroy(inst)
            probe.close()

        return boot_test(f"{NAME_PREFIX}kvm-probe-qemu-{os.getpid()}", start, stop)

    # -- instances -------------------------------------------------------------------

    def _qmp_loop(self) -> _Loop:
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
            return self._loop

    def _io(self) -> IOHub:
        with self._lock:
            if self._hub is None:
                self._hub = IOHub("bench-qemu-io")
            return self._hub

    def create(self, inst: Instance) -> None:
        from qemu.qmp import QMPClient

        s = self.settings
        paths = InstancePaths.of(inst.name)
        live = _Live(paths)
        with self._lock:
            inst.handle = live
        # The state file first: from here on `bench clean` finds this instance.
        self.host.make_dirs(paths.state.parent)
        write_state(paths.state, instance_state(inst, paths, None))
        self.host.make_dirs(paths.dir)
        disk = None
        if s.disk:
            make_overlay(self.host, s.disk, paths.overlay)
            disk = paths.overlay
        volume = None
        if s.volume:
            # In the instance's directory: removed with it (remove_instance_files), and
            # found with it by `bench clean`.
            volume = (paths.volume, make_volume(self.host, paths.volume))
            inst.info["volume"] = str(paths.volume)
            inst.info[VOLUME_CACHE_KEY] = volume[1]
        nic = None
        if s.user_net:
            nic = forwards(s, netprobe.free_local_port)
            inst.info[FORWARDS_KEY] = {str(f.guest_port): f.host_port for f in nic}
        loop = self._qmp_loop()
        qmp = QMPClient(inst.name)
        serial = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        debugcon = s.ready.channel == DEBUGCON
        port = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) if debugcon else None
        conn: socket.socket | None = None
        port_conn: socket.socket | None = None
        try:
            serial.bind(str(paths.serial))
            serial.listen(1)
            if port is not None:
                port.bind(str(paths.debugcon))
                port.listen(1)
            loop.run(qmp.start_server(str(paths.qmp)), QMP_TIMEOUT_S)
            argv = qemu_argv(
                binary=self.binary,
                name=inst.name,
                machine=s.machine,
                accel=self.accel or "tcg",
                memory_bytes=s.memory or DEFAULT_MEMORY,
                vcpus=s.vcpus,
                paths=paths,
                kernel=self._boot.kernel,
                disk=disk,
                nic=nic,
                debugcon=debugcon,
                volume=volume,
            )
            with self._lock:
                if live.destroyed:  # torn down (interrupt) before it was spawned
                    raise RuntimeError("destroyed before start")
                with paths.log.open("wb") as log:
                    live.proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        start_new_session=True,  # its own process group; no terminal signals
                    )
            write_state(paths.state, instance_state(inst, paths, live.proc.pid))
            inst.info["accel"] = self.accel
            inst.info["machine"] = s.machine
            inst.info["qemu_pid"] = live.proc.pid
            accept = loop.submit(qmp.accept())
            self._wait_connected(live, accept, inst)
            # QEMU has initialised its machine and answers QMP: the VMM's own start.
            inst.console.note(phases.VMM_READY)
            live.qmp = qmp
            serial.settimeout(CONNECT_TIMEOUT_S)
            # QEMU opened its serial chardev before its monitor: already in the backlog.
            conn, _ = serial.accept()
            if port is not None:  # and its debug port's, in the same pass
                port.settimeout(CONNECT_TIMEOUT_S)
                port_conn, _ = port.accept()
        except BaseException:
            with contextlib.suppress(Exception):
                loop.run(qmp.disconnect(), QMP_TIMEOUT_S)
            for accepted in (conn, port_conn):
                if accepted is not None:
                    accepted.close()
            if live.destroyed:
                # destroy() ran while this was starting and may have found no files
                # yet: what it missed goes now (a spawned QEMU it did kill).
                remove_instance_files(paths)
            raise
        finally:
            serial.close()
            if port is not None:
                port.close()
            # Connected: the paths are no longer needed (and would outlive a kill -9).
            paths.qmp.unlink(missing_ok=True)
            paths.serial.unlink(missing_ok=True)
            paths.debugcon.unlink(missing_ok=True)
        conn.setblocking(False)
        live.console = conn
        console = inst.console

        self._io().add_stream(
            conn,
            console.feed,
            lambda err: console.close(f"serial console closed ({err or 'qemu exited'})"),
        )
        if port_conn is not None:
            port_conn.setblocking(False)
            live.port = port_conn
            # Its end is the serial's too (the same QEMU exiting): said there, once.
            self._io().add_stream(port_conn, console.port, lambda _err: None)

    def endpoint(self, inst: Instance, port: int) -> tuple[str, int]:
        return forwarded_endpoint(inst, port)

    def forward_accepted(self, inst: Instance, port: int) -> bool | None:
        # slirp's own connection table (HMP `info usernet`, QEMU's only view of it):
        # a probe's connection stays SYN_SENT until the guest accepts it.
        live: _Live | None = inst.handle
        if not self.settings.user_net or live is None or live.qmp is None:
            return None
        table = self._qmp_loop().run(
            live.qmp.execute("human-monitor-command", {"command-line": "info usernet"}),
            QMP_TIMEOUT_S,
        )
        return guest_established(str(table), port)

    def host_address(self, inst: Instance) -> str | None:
        return user_net_host_address(self.settings)

    def host_address_seen(self, inst: Instance, bound: str) -> str:
        return user_net_address_seen(self.settings, bound)

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        # No guest agent: the workloads image's init runs what is written on its serial
        # line and answers there (bench.backends.guest.run_in_guest).
        live: _Live = inst.handle
        conn = live.console
        if conn is None:
            raise EngineUnavailable(f"{inst.name}: its serial console is closed")
        return run_in_guest(inst, argv, conn.sendall, self.settings.image, timeout_s)

    def _wait_connected(
        self, live: _Live, accept: concurrent.futures.Future[None], inst: Instance
    ) -> None:
        """Until QEMU has connected to QMP; fails at once if QEMU exits or is destroyed."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                accept.result(0.05)
                return
            except TimeoutError:
                pass
            proc = live.proc
            if live.destroyed or (proc is not None and proc.poll() is not None):
                accept.cancel()
                why = "destroyed while starting" if live.destroyed else self._log_tail(live)
                raise EngineUnavailable(f"qemu exited before connecting: {why}")
            if time.monotonic() > deadline:
                accept.cancel()
                raise EngineUnavailable(
                    f"qemu did not connect to QMP within {CONNECT_TIMEOUT_S}s ({inst.name})"
                )

    @staticmethod
    def _log_tail(live: _Live) -> str:
        try:
            text = live.paths.log.read_text(errors="replace").strip()
        except OSError:
            text = ""
        code = live.proc.returncode if live.proc else None
        return (text.splitlines()[-1] if text else f"exit status {code}")[:300]

    def start(self, inst: Instance) -> None:
        live: _Live = inst.handle
        if live.qmp is None:  # create() failed or destroy() came first
            raise RuntimeError(f"{inst.name}: its QEMU is not connected")
        self._qmp_loop().run(live.qmp.execute("cont"), QMP_TIMEOUT_S)

    def sample(self, inst: Instance, host: Host) -> Facts:
        live: _Live = inst.handle
        pid = live.proc.pid if live.proc else host.read_pidfile(str(live.paths.pidfile))
        disk = self.settings.disk
        return {
            "pids": [pid] if pid else [],
            # Its VMM and the RAM it was given: the process view finds the guest's RAM
            # among QEMU's mappings by this size (its VMM overhead is the rest).
            "vmm_pid": pid,
            "guest_memory_bytes": max(1, (self.settings.memory or DEFAULT_MEMORY) // 2**20)
            * 2**20,  # as qemu_argv gave it: -m in MiB
            # QEMU keeps no account of its own memory use (no cgroup, no balloon device
            # here): the process view (PSS of the QEMU process) is the measure.
            "engine_mem_bytes": None,
            "engine_mem_source": "none (direct QEMU: see the process view)",
            # No overlay: the guest runs from its initramfs, in RAM, and writes nothing.
            # A volume is not counted, as a container's volume is not its writable layer.
            "disk_writable_bytes": host.allocated_bytes(live.paths.overlay) if disk else 0,
        }

    def boundary_view(self, inst: Instance, host: Host) -> BoundaryView:
        """QEMU's pid and its devices, as its QMP answers (qom_devices)."""
        live: _Live = inst.handle
        pid = live.proc.pid if live.proc else host.read_pidfile(str(live.paths.pidfile))
        missing = {} if pid else {"pids": "no QEMU pid (its pid file is unreadable)"}
        devices = None
        if live.qmp is None:
            missing["devices"] = "its QMP connection is closed"
        else:
            try:
                loop = self._qmp_loop()
                if self._device_types is None:  # the binary's answer: asked once
                    self._device_types = loop.run(qom_device_types(live.qmp), QMP_TIMEOUT_S)
                devices = loop.run(qom_devices(live.qmp, self._device_types), QMP_TIMEOUT_S)
            except Exception as e:  # a QEMU that went away: said, not raised
                missing["devices"] = f"QMP: {first_line(e)}"
        return BoundaryView({"vmm": pid} if pid else {}, devices, QOM_DEVICES_SOURCE, missing)

    def reachable(self) -> bool:
        return True  # no daemon: each instance is its own process

    def storage_dirs(self) -> list[Path]:
        root = qemu_root()
        return [root] if self.host.is_dir(root) else []

    def destroy(self, inst: Instance) -> None:
        live: _Live | None = inst.handle
        paths = live.paths if live else InstancePaths.of(inst.name)
        if live is not None:
            with self._lock:
                live.destroyed = True
                proc = live.proc
            for sock in (live.console, live.port):
                if sock is not None:
                    if self._hub:
                        self._hub.remove(sock)
                    sock.close()
            live.console = live.port = None
            asked = False
            if live.qmp is not None:
                asked = self._quit(live.qmp)
                live.qmp = None
            if proc is not None:
                try:
                    proc.wait(QUIT_WAIT_S if asked else 0)
                except subprocess.TimeoutExpired:
                    kill_group(proc.pid)
                    proc.wait(30)
        else:
            # create() never got as far as a handle: go by the state file.
            state = read_state(paths.state)
            pid = parse_pid(state.get("pid")) if state else None
            if pid and is_instance_process(pid, inst.name, self.binary):
                kill_group(pid)
        remove_instance_files(paths)

    def _quit(self, qmp: QMPClient) -> bool:
        """QMP quit; False if QEMU could not be asked (it gets SIGKILL at once)."""
        loop = self._qmp_loop()
        asked = True
        try:
            loop.run(qmp.execute("quit"), QUIT_WAIT_S)
        except EOFError:
            pass  # QEMU hung up before its reply reached us: it is quitting
        except Exception:
            asked = False
        # QEMU hangs up after quit: the EOFError disconnect() raises is the normal end.
        with contextlib.suppress(Exception):
            loop.run(qmp.disconnect(), QUIT_WAIT_S)
        return asked

    # -- what a crashed bench left -------------------------------------------------------

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        return find_leftovers(qemu_root(), run_id, self.binary)

    def remove_leftover(self, leftover: Leftover) -> None:
        root = qemu_root()
        if leftover.kind == "file":  # an instance directory without its state file
            shutil.rmtree(leftover.name, ignore_errors=True)
            return
        paths = InstancePaths.of(leftover.name, root)
        state = read_state(paths.state) or {}
        pid = parse_pid(state.get("pid")) or self.host.read_pidfile(str(paths.pidfile))
        if pid and is_instance_process(pid, leftover.name, self.binary):
            kill_group(pid)
            # Not our child: wait for it to go before its files do.
            deadline = time.monotonic() + 10
            while pid_alive(pid) and is_instance_process(pid, leftover.name, self.binary):
                if time.monotonic() > deadline:
                    raise BenchError(f"qemu pid {pid} of {leftover.name} would not die")
                time.sleep(0.05)
        remove_instance_files(paths)

    def close(self) -> None:
        with self._lock:
            hub, self._hub = self._hub, None
            loop, self._loop = self._loop, None
        if hub:
            hub.close()
        if loop:
            loop.close()


def find_leftovers(root: Path, run_id: str | None, binary: str = QEMU_BINARY) -> list[Leftover]:
    """Instances whose state file is still there (kind "vm" if the QEMU still runs,
    else "files"), and instance directories whose state file is gone ("file")."""
    out: list[Leftover] = []
    if not root.is_dir():
        return out
    # Directories before state files: a directory seen here had its state file
    # written before it, so a run starting meanwhile is never taken for debris.
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    keys = set()
    for f in sorted(root.glob("*.json")):
        state = read_state(f)
        if state is None:
            continue
        keys.add(f.stem)
        rid = text(state.get("run_id"))
        if run_id is not None and rid != run_id:
            continue
        name = str(state["name"])  # read_state: a string
        pid = parse_pid(state.get("pid"))
        running = pid is not None and pid != 0 and is_instance_process(pid, name, binary)
        owner_pid = parse_pid(state.get("owner_pid"))
        owner_host = text(state.get("owner_host"))
        out.append(Leftover("qemu", "vm" if running else "files", name, rid, owner_pid, owner_host))
    if run_id is None:
        # A directory is made after its state file and removed before it: one alone is
        # what a removal cut short left.
        for d in (d for d in dirs if d.name not in keys):
            out.append(Leftover("qemu", "file", str(d), None))
    return out
