"""libvirt/QEMU through libvirt-python.

Each instance is a transient domain created paused, its serial console opened as a
non-blocking libvirt stream served by libvirt's event loop, then resumed: so the
console sees the guest from its first byte, and `start_s` is the resume call.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator

from bench.backends.base import (
    NAME_PREFIX,
    Backend,
    BoundaryView,
    Check,
    CliOption,
    ExecResult,
    Instance,
    Leftover,
    Options,
    option_list,
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
from bench.machines.console import DEBUGCON, DEBUGCON_PORT, Console
from bench.model import addresses, kinds
from bench.model.addresses import FORWARD_ADDRESS, USER_NET, Forward
from bench.model.errors import (
    BenchError,
    EngineUnavailable,
    UsageError,
    first_line,
)
from bench.model.owner import owner_labels
from bench.model.paths import state_dir
from bench.model.records import Facts
from bench.model.units import format_bytes

if TYPE_CHECKING:
    # libvirt-python ships no type information: its classes name what is meant here, and
    # mypy reads them as untyped (the SDK boundary).
    from libvirt import virConnect, virStream

    from bench.machines.host import Host

METADATA_NS = "http://bench.invalid/xmlns/instance/1"
METADATA_KEY = "bench"
# libvirt's namespace for QEMU command-line arguments in a domain's XML.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
PASST = "passt"
SLIRP = "slirp"
DEFAULT_URI = "qemu:///system"
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
# The alias libvirt gives the debug port's serial device (the console is serial0).
DEBUGCON_ALIAS = "serial1"


class LibvirtSettings(GuestSettings):
    backend: Literal["libvirt"] = Field(description="a VM through libvirt")
    uri: str = Field(DEFAULT_URI, min_length=1, max_length=512, description="libvirt URI")
    network: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a libvirt network's name; user: user-mode networking by passt, the "
        "guest at 10.0.2.15, ready:'s port forwarded from 127.0.0.1 (http: needs it); "
        "none (the default): no NIC",
    )

    @field_validator("uri")
    @classmethod
    def _readable_host(cls, v: str) -> str:
        # Memory and disk are read on the hypervisor's machine: here for qemu:///, over
        # SSH for qemu+ssh:// (a machine bench cannot read, qemu+tcp://, is refused). No
        # other driver or transport, and no parameters: libvirt runs the program a
        # qemu+ext:// URI's `command=` names, as root here.
        addresses.check_libvirt(v)
        return v

    def placed_on(self, address: str) -> LibvirtSettings:
        """The same hypervisor (system or session) on that machine."""
        path = addresses.check_libvirt(self.uri).path
        ssh = addresses.check_host(address)
        if ssh is not None and path != "/system":
            raise ValueError(f"{self.uri} runs only on this machine: use qemu:///system")
        return self.model_copy(update={"uri": str(addresses.LibvirtUri(path, ssh))})


# libvirt's event loop runs once per process, in one daemon thread; it serves the
# console streams of every domain of every connection.
_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> ModuleType:
    global _event_loop_started
    import libvirt

    with _event_loop_lock:
        if not _event_loop_started:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # we report errors
            libvirt.virEventRegisterDefaultImpl()

            def run() -> None:
                while True:
                    libvirt.virEventRunDefaultImpl()

            threading.Thread(target=run, name="bench-libvirt-events", daemon=True).start()
            _event_loop_started = True
    return libvirt


class LibvirtBackend(Backend):
    kind = kinds.VM
    Settings = LibvirtSettings

    def __init__(self, settings: LibvirtSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: LibvirtSettings = settings
        self._conn: virConnect | None = None
        self.accel: str | None = None
        self._boot = BootSource({})
        # network: user's form: passt where this libvirt offers it, else QEMU's slirp
        # (user_nic_form).
        self._nic_form = PASST

    cli_options = (
        CliOption(
            "--libvirt-uri",
            "libvirt_uris",
            f"libvirt URI; repeat for several (default {DEFAULT_URI}).",
            multiple=True,
            metavar="URI",
            commands=frozenset({"doctor", "clean"}),
            check=addresses.check_libvirt,
        ),
    )

    @classmethod
    def _for_options(cls, options: Options, name: str) -> list[LibvirtBackend]:
        out = []
        for uri in option_list(options, "libvirt_uris") or [DEFAULT_URI]:
            try:
                settings = LibvirtSettings(name=name, backend="libvirt", image="busybox", uri=uri)
            except ValidationError as e:
                msg = e.errors()[0]["msg"].removeprefix("Value error, ")
                raise UsageError(f"--libvirt-uri {uri}: {msg}") from None
            out.append(cls(settings))
        return out

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        return list(cls._for_options(options, "clean"))

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        checks = []
        for lv in cls._for_options(options, "doctor"):
            try:
                checks += lv._doctor_checks(say)
            except BenchError as e:
                fix = "virtlogd -d && libvirtd -d (or: make demo)"
                checks.append(Check("libvirt", False, str(e), fix, engine=True))
            finally:
                lv.close()
        return checks

    def _doctor_checks(self, say: Callable[[str], None]) -> list[Check]:
        conn = self.connect()
        uri = self.settings.uri
        checks = [
            Check(
                "libvirt",
                True,
                f"libvirt {version_string(conn.getLibVersion())}, "
                f"QEMU {version_string(conn.getVersion())} at {uri}",
            )
        ]
        # On the hypervisor's host, which makes the overlays of disk: VMs.
        qemu_img = self.host.run(["qemu-img", "--version"], timeout=10)
        found = qemu_img.returncode == 0
        version = qemu_img.stdout.splitlines()[0] if found and qemu_img.stdout else ""
        checks.append(
            Check(
                "qemu-img",
                found,
                version or "not found (only needed for disk: VMs)",
                "apt-get install qemu-utils",
            )
        )
        art = images.vm_artifacts("busybox")
        checks.append(
            Check(
                "vm image",
                art is not None,
                f"{art.kernel.parent}" if art else "busybox kernel+initramfs not built",
                "bench images build",
            )
        )
        if art is not None:
            accel, _ = self.resolve_accel(on_probe=lambda: say(kvm_wait_message()))
            detail = (
                "KVM boots guests"
                if accel == "kvm"
                else "TCG only (software emulation): KVM is absent or a probe boot under "
                "KVM did not reach the guest's init; VM boot times are not representative of KVM"
            )
            checks.append(Check("accel", True, detail))
        return checks

    @classmethod
    def build_images(
        cls, name: str, options: Options, say: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        # The kernel and initramfs are built with the shared rootfs (bench.machines.images);
        # nothing goes into libvirt itself: each domain's XML points at the files.
        art = images.vm_artifacts(name) or images.build_rootfs(name)
        m = art.manifest
        return [
            ("vm", f"{art.kernel} ({m['kernel_release']}, {format_bytes(m['kernel_bytes'])})"),
            ("", f"{art.initrd} ({format_bytes(m['initramfs_bytes'])})"),
        ]

    def engine_address(self) -> str | None:
        return self.settings.uri

    def connect(self) -> virConnect:
        if self._conn is None:
            libvirt = _ensure_event_loop()
            try:
                self._conn = libvirt.open(self.settings.uri)
                # A libvirtd that stops answering closes the connection after ~15 s
                # instead of hanging the run (needs the event loop started above).
                self._conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
            except libvirt.libvirtError as e:
                raise EngineUnavailable(
                    f"cannot reach libvirt at {self.settings.uri} ({first_line(e)}): start it "
                    "(`libvirtd -d` after `virtlogd -d`, `systemctl start libvirtd` or "
                    "`make demo`) or set `uri:`"
                ) from None
        return self._conn

    # -- preparation ---------------------------------------------------------------

    def preflight(self) -> None:
        self.connect()
        check_boot_files(self.settings, self.host)
        check_volume_kernel(self.settings)

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        conn = self.connect()
        self._boot = resolve_boot(self.settings, self.host, build_missing, say)
        self.accel, _ = self.resolve_accel(
            on_probe=lambda: say(kvm_wait_message(f" on {self.settings.uri}"))
        )
        lib = conn.getLibVersion()
        hv = conn.getVersion()
        facts: Facts = {
            "engine": "libvirt",
            "uri": self.settings.uri,
            "libvirt_version": version_string(lib),
            "qemu_version": version_string(hv),
            "accel": self.accel,
            "network": self.settings.network or "none",
            **self._boot.facts,
            # volume: true: each instance's disk (its cache mode is the instance's own fact).
            **({"volume_bytes": VOLUME_BYTES} if self.settings.volume else {}),
        }
        if self.settings.user_net:
            caps = conn.getDomainCapabilities(
                None, None, None, "kvm" if self.accel == "kvm" else "qemu"
            )
            self._nic_form = user_nic_form(caps)
            facts["nic_backend"] = self._nic_form
        return facts

    def resolve_accel(self, on_probe: Callable[[], None] = lambda: None) -> tuple[str, str]:
        """(accel, why) for this platform's instances; `on_probe` before a probe boot."""
        if self.settings.accel != "auto":
            return self.settings.accel, "set by accel:"
        if not self._kvm_offered():
            return "tcg", "libvirt offers no kvm domain"
        probed = kvm_probe(self._probe_key(), self._probe_kvm, on_probe)
        return ("kvm" if probed.ok else "tcg"), probed.detail

    def _kvm_offered(self) -> bool:
        import libvirt

        try:
            self.connect().getDomainCapabilities(None, None, None, "kvm")
            return True
        except libvirt.libvirtError:
            return False

    def _probe_key(self) -> str:
        # Re-probe when anything that decides whether KVM works has changed.
        conn = self.connect()  # connected already: asked after connect()
        parts = [self.settings.uri, conn.getHostname(), str(conn.getVersion())]
        parts.append(str(self.host.describe().get("kernel")))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _probe_kvm(self) -> ProbeResult:
        """The test boot of kvm_probe: the bench guest as a transient domain under KVM."""
        art = probe_guest(self.host)
        name = f"{NAME_PREFIX}kvm-probe-{os.getpid()}"
        xml = domain_xml(
            name,
            "kvm-probe",
            "kvm-probe",
            "kvm",
            128 * 2**20,
            1,
            kernel=(art.kernel, art.initrd, art.cmdline),
        )

        def start(inst: Instance) -> None:
            self._create_xml(inst, xml)
            inst.handle.resume()

        return boot_test(name, start, self.destroy)

    # -- instances -------------------------------------------------------------------

    def create(self, inst: Instance) -> None:
        s = self.settings
        overlay = None
        nic = None
        if s.user_net:
            nic = forwards(s, netprobe.free_local_port)
            inst.info[FORWARDS_KEY] = {str(f.guest_port): f.host_port for f in nic}
        if s.disk:
            overlay = overlay_dir(inst.run_id) / f"{inst.name}.qcow2"
            # Recorded first: destroy() removes it (and its run directory) even when
            # qemu-img fails half-way.
            inst.info["_overlay"] = str(overlay)
            self.host.make_dirs(overlay.parent)
            make_overlay(self.host, s.disk, overlay)
        volume = None
        if s.volume:
            # Beside the run's overlays, on the hypervisor's host (libvirt gives its
            # QEMU user the file, as it does an overlay); recorded first, as an overlay.
            path = overlay_dir(inst.run_id) / f"{inst.name}{VOLUME_SUFFIX}"
            inst.info["_volume"] = inst.info["volume"] = str(path)
            self.host.make_dirs(path.parent)
            volume = (path, make_volume(self.host, path))
            inst.info[VOLUME_CACHE_KEY] = volume[1]
        xml = domain_xml(
            inst.name,
            inst.run_id,
            inst.platform,
            self.accel or "tcg",
            s.memory or DEFAULT_MEMORY,
            s.vcpus,
            kernel=self._boot.kernel,
            disk=overlay,
            network=s.network,
            nic=nic,
            nic_form=self._nic_form,
            debugcon=s.ready.channel == DEBUGCON,
            volume=volume,
        )
        inst.info["accel"] = self.accel
        self._create_xml(inst, xml, debugcon=s.ready.channel == DEBUGCON)

    def _create_xml(self, inst: Instance, xml: str, *, debugcon: bool = False) -> None:
        """Create the domain of `xml` paused and open its console; with `debugcon`
        (its XML has the debug port, serial1) open that one too. The KVM probe's XML
        never has it, whatever the platform's channel."""
        libvirt = _ensure_event_loop()
        conn = self.connect()
        dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        inst.handle = dom
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        inst.info["_stream"] = stream
        console = inst.console
        if debugcon:
            # The debug port is a second serial device (its alias, DEBUGCON_ALIAS): a
            # stream of its own, opened before the resume like the console's.
            port = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            dom.openConsole(DEBUGCON_ALIAS, port, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            inst.info["_port_stream"] = port
            port.eventAddCallback(
                libvirt.VIR_STREAM_EVENT_READABLE
                | libvirt.VIR_STREAM_EVENT_ERROR
                | libvirt.VIR_STREAM_EVENT_HANGUP,
                functools.partial(_on_port_event, libvirt, console),
                None,
            )

        def on_event(st: virStream, events: int, _opaque: object) -> None:
            while True:
                try:
                    data = st.recv(65536)
                except libvirt.libvirtError as e:
                    _close_stream(st)
                    console.close(f"serial console error: {first_line(e)}")
                    return
                if data == -2:  # EAGAIN: drained for now
                    break
                if not data:
                    _close_stream(st)
                    console.close("serial console closed (domain stopped)")
                    return
                console.feed(data)
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                _close_stream(st)
                console.close("serial console hung up (domain stopped)")

        stream.eventAddCallback(
            libvirt.VIR_STREAM_EVENT_READABLE
            | libvirt.VIR_STREAM_EVENT_ERROR
            | libvirt.VIR_STREAM_EVENT_HANGUP,
            on_event,
            None,
        )

    def start(self, inst: Instance) -> None:
        inst.handle.resume()

    def sample(self, inst: Instance, host: Host) -> Facts:
        dom = inst.handle
        stats = dom.memoryStats()  # rss always; balloon figures when the guest has a driver
        pid = host.read_pidfile(f"{self._run_dir()}/{dom.name()}.pid")
        overlay = inst.info.get("_overlay")
        out: Facts = {
            "pids": [pid] if pid else [],
            # Its QEMU and the RAM the domain was given (as in its XML): the process
            # view finds the guest's RAM among QEMU's mappings by this size.
            "vmm_pid": pid,
            "guest_memory_bytes": (self.settings.memory or DEFAULT_MEMORY) // 1024 * 1024,
            "engine_mem_bytes": stats["rss"] * 1024 if "rss" in stats else None,
            "engine_mem_source": "libvirt memoryStats rss",
            # No overlay: the guest runs from its initramfs, in RAM, and writes nothing.
            # A volume is not counted, as a container's volume is not its writable layer.
            "disk_writable_bytes": host.allocated_bytes(overlay) if isinstance(overlay, str) else 0,
        }
        for key in ("actual", "available", "unused", "usable"):
            if key in stats:
                out[f"balloon_{key}_bytes"] = stats[key] * 1024
        return out

    def boundary_view(self, inst: Instance, host: Host) -> BoundaryView:
        """QEMU's pid (libvirt's pid file) and the domain's devices as libvirt describes
        the running domain (its live XML, with the devices libvirt added)."""
        dom = inst.handle
        pid = host.read_pidfile(f"{self._run_dir()}/{dom.name()}.pid")
        missing = {} if pid else {"pids": f"no pid file in {self._run_dir()} for it"}
        try:
            devices = domain_devices(dom.XMLDesc(0))
        except Exception as e:  # a domain that went away: said, not raised
            devices = None
            missing["devices"] = f"libvirt: {first_line(e)}"
        source = "libvirt domain XML <devices> (virDomainGetXMLDesc)"
        return BoundaryView({"vmm": pid} if pid else {}, devices, source, missing)

    def _run_dir(self) -> str:
        # Where the QEMU driver keeps pid files, on the hypervisor's host. qemu:///session
        # is always the calling user's own daemon on this machine (a session URI cannot
        # name another host), so the controller's environment is the right one there.
        if self.settings.uri.startswith("qemu:///session"):
            base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
            return f"{base}/libvirt/qemu/run"
        return "/run/libvirt/qemu"

    def reachable(self) -> bool:
        try:
            return bool(self._conn is not None and self._conn.isAlive())
        except Exception:
            return False

    def storage_dirs(self) -> list[Path]:
        dirs = [
            state_dir() / "overlays",
            Path("/var/lib/libvirt/qemu"),
            Path("/var/log/libvirt/qemu"),
        ]
        return [d for d in dirs if self.host.is_dir(d)]

    def endpoint(self, inst: Instance, port: int) -> tuple[str, int]:
        return forwarded_endpoint(inst, port)

    def host_address(self, inst: Instance) -> str | None:
        if self.settings.user_net and self._nic_form == PASST:
            # passt gives the guest the host's own gateway, not 10.0.2.2: not mapped yet.
            raise ValueError("network workloads in a VM on passt are not done yet")
        from bench.machines.host import LocalHost

        if not isinstance(self.host, LocalHost) and self.settings.user_net:
            # The server runs on this machine (as for containers, bench.backends.oci).
            raise ValueError(
                "network workloads need the platform on this machine, not on a remote host"
            )
        return user_net_host_address(self.settings)

    def host_address_seen(self, inst: Instance, bound: str) -> str:
        return user_net_address_seen(self.settings, bound)

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        # No guest agent: the workloads image's init runs what is written on its serial
        # console and answers there (bench.backends.guest.run_in_guest).
        stream = inst.info.get("_stream")
        if stream is None:
            raise EngineUnavailable(f"{inst.name}: its console stream is closed")

        def write(data: bytes) -> None:
            # A non-blocking stream: -2 is "would block" (libvirt's virStreamSend).
            deadline = time.monotonic() + 10
            while data:
                sent = stream.send(data)  # type: ignore[attr-defined]
                if sent == -2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                if sent < 0:
                    raise EngineUnavailable(f"{inst.name}: cannot write to its console")
                data = data[sent:]

        return run_in_guest(inst, argv, write, self.settings.image, timeout_s)

    def destroy(self, inst: Instance) -> None:
        import libvirt

        gone = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
        for key in ("_stream", "_port_stream"):
            stream = inst.info.pop(key, None)
            if stream is not None:
                _close_stream(stream)
        try:
            dom = inst.handle
            if dom is None:
                # createXML never answered (timeout, dropped connection): libvirtd may
                # have created it all the same, and the name is bench's own.
                try:
                    dom = self.connect().lookupByName(inst.name)
                except libvirt.libvirtError as e:
                    if e.get_error_code() not in gone:
                        raise
            if dom is not None:
                try:
                    dom.destroy()
                except libvirt.libvirtError as e:
                    if e.get_error_code() in gone:
                        pass
                    elif self._conn is not None and self._conn.isAlive():
                        raise
                    else:
                        # Its connection died (a dropped SSH link): find it again by
                        # name on a new one.
                        self.close()
                        self._destroy_by_name(inst.name, gone)
        finally:
            for key in ("_overlay", "_volume"):
                path = inst.info.pop(key, None)
                if isinstance(path, str) and path:
                    self.host.remove_file(path)
                    self.host.remove_empty_dir(Path(path).parent)

    def _destroy_by_name(self, name: str, gone: tuple[int, ...]) -> None:
        import libvirt

        try:
            self.connect().lookupByName(name).destroy()
        except libvirt.libvirtError as e:
            if e.get_error_code() not in gone:
                raise

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        import libvirt

        out = []
        for dom in self.connect().listAllDomains():
            if not dom.name().startswith(NAME_PREFIX):
                continue
            try:
                meta = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
            except libvirt.libvirtError:
                continue  # not ours: no bench metadata
            rid = meta.get("run_id")
            if run_id is None or rid == run_id:
                pid, host = parse_pid(meta.get("owner_pid")), meta.get("owner_host")
                out.append(Leftover("libvirt", "domain", dom.name(), rid, pid, host))
        # Overlays live in one directory per run: the directory name is the run id.
        # They belong to the owner of their run's domains.
        owners = {x.run_id: (x.owner_pid, x.owner_host) for x in out}
        root = state_dir() / "overlays"
        for rid in self.host.list_dir(root):
            if run_id is not None and rid != run_id:
                continue
            pid, host = owners.get(rid, (None, None))
            for name in self.host.list_dir(root / rid):
                if name.endswith((".qcow2", VOLUME_SUFFIX)):
                    out.append(Leftover("libvirt", "file", str(root / rid / name), rid, pid, host))
        return out

    def remove_leftover(self, leftover: Leftover) -> None:
        import libvirt

        if leftover.kind == "file":
            path = Path(leftover.name)
            self.host.remove_file(path)
            self.host.remove_empty_dir(path.parent)  # the run's directory, once empty
            return
        try:
            dom = self.connect().lookupByName(leftover.name)
        except libvirt.libvirtError:
            return
        # A transient domain is gone once destroyed: ask before destroying it.
        persistent = dom.isPersistent()
        if dom.isActive():
            dom.destroy()
        if persistent:
            dom.undefine()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def domain_xml(
    name: str,
    run_id: str,
    platform: str,
    accel: str,
    memory_bytes: int,
    vcpus: int,
    *,
    kernel: KernelBoot | None = None,
    disk: Path | None = None,
    network: str | None = None,
    nic: list[Forward] | None = None,
    nic_form: str = "passt",
    debugcon: bool = False,
    volume: tuple[Path, str] | None = None,
) -> str:
    """Domain XML built as a tree: names and paths are escaped by the XML library.
    `network`: a libvirt network's name; `nic`: instead, a user-mode NIC (passt) with
    these forwards. `volume`: a raw file and its cache mode, the guest's virtio disk
    (volume: true)."""
    dom = ET.Element("domain", type="kvm" if accel == "kvm" else "qemu")
    ET.SubElement(dom, "name").text = name
    meta = ET.SubElement(dom, "metadata")
    ET.SubElement(
        meta,
        f"{{{METADATA_NS}}}instance",
        {"run_id": run_id, "platform": platform, **owner_labels()},
    )
    ET.SubElement(dom, "memory", unit="KiB").text = str(memory_bytes // 1024)
    ET.SubElement(dom, "vcpu").text = str(vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    if kernel:
        k, initrd, cmdline = kernel
        ET.SubElement(os_el, "kernel").text = str(k)
        if initrd:
            ET.SubElement(os_el, "initrd").text = str(initrd)
        ET.SubElement(os_el, "cmdline").text = cmdline
    else:
        ET.SubElement(os_el, "boot", dev="hd")
    # No <cpu> element: the probe boot and the measured instances use the same XML,
    # and libvirt's default model is the one most likely to boot everywhere.
    ET.SubElement(dom, "clock", offset="utc")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(dom, event).text = "destroy"
    devices = ET.SubElement(dom, "devices")
    if disk:
        d = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type="qcow2")
        ET.SubElement(d, "source", file=str(disk))
        ET.SubElement(d, "target", dev="vda", bus="virtio")
    if volume:
        # vda: GuestSettings refuses volume: true with disk:, so it is the only disk.
        path, cache = volume
        d = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type="raw", cache=cache)
        ET.SubElement(d, "source", file=str(path))
        ET.SubElement(d, "target", dev="vda", bus="virtio")
    if nic is not None and nic_form == SLIRP:
        # QEMU's own slirp with its forwards, as direct QEMU has it: libvirt's
        # <interface type='user'> (slirp) takes no port forwards, so the NIC is given
        # on QEMU's command line (libvirt then marks the domain tainted: custom-argv).
        qemu_cmd = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
        netdev = ",".join(["user,id=benchnet0", *(f"hostfwd={f.hostfwd}" for f in nic)])
        # QEMU reads these before libvirt's own devices, which libvirt addresses from
        # PCI slot 2 up: the NIC takes the last slot of the pc machine's bus instead.
        device = "virtio-net-pci,netdev=benchnet0,romfile=,bus=pci.0,addr=0x1f"
        for arg in ("-netdev", netdev, "-device", device):
            ET.SubElement(qemu_cmd, f"{{{QEMU_NS}}}arg", value=arg)
    elif nic is not None:
        # passt, a process of its own that libvirt starts beside QEMU. The guest's
        # address is the one the bench image's init sets (addresses.USER_NET); each
        # forward listens on this host's loopback only.
        iface = ET.SubElement(devices, "interface", type="user")
        ET.SubElement(iface, "backend", type="passt")
        ET.SubElement(
            iface, "ip", family="ipv4", address=USER_NET.address, prefix=str(USER_NET.prefix)
        )
        for f in nic:
            fwd = ET.SubElement(iface, "portForward", proto="tcp", address=FORWARD_ADDRESS)
            ET.SubElement(fwd, "range", start=str(f.host_port), to=str(f.guest_port))
        ET.SubElement(iface, "model", type="virtio")
        # No option ROM: SeaBIOS would load iPXE, a network boot bench never does.
        ET.SubElement(iface, "rom", enabled="no")
    elif network and network != "none":
        iface = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(iface, "source", network=network)
        ET.SubElement(iface, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    if debugcon:
        # QEMU's isa-debugcon as libvirt (8.1 and later) describes it: a serial device
        # of target type isa-debug, at the conventional port 0xe9; alias serial1.
        port = ET.SubElement(devices, "serial", type="pty")
        target = ET.SubElement(port, "target", type="isa-debug", port="1")
        ET.SubElement(target, "model", name="isa-debugcon")
        ET.SubElement(port, "address", type="isa", iobase=f"{DEBUGCON_PORT:#x}")
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    ET.register_namespace("qemu", QEMU_NS)
    return ET.tostring(dom, encoding="unicode")


def user_nic_form(domain_caps: str) -> str:
    """How a `network: user` NIC is given on this libvirt: passt where its domain
    capabilities list it as an interface backend (libvirt 9.0, Debian 12's, refuses
    <backend type='passt'> as invalid, libvirt issue 462, and lists no interface
    backends), else QEMU's own slirp on the domain's QEMU command line."""
    root = ET.fromstring(domain_caps)
    listed = root.findall("./devices/interface/enum[@name='backendType']/value")
    return PASST if any(v.text == PASST for v in listed) else SLIRP


def domain_devices(xml: str) -> dict[str, int]:
    """The devices of a domain's XML, counted by element and its type/bus/model (a
    `<controller type="usb" model="piix3-uhci">` is "controller usb piix3-uhci")."""
    root = ET.fromstring(xml)
    counts: dict[str, int] = {}
    found = root.find("devices")
    for dev in list(found) if found is not None else []:
        if dev.tag == "emulator":  # the QEMU binary's path, not a device
            continue
        words = [dev.tag]
        words += [dev.get(a) or "" for a in ("type", "bus", "model") if dev.get(a)]
        model = dev.find("model")
        if model is not None and model.get("type"):
            words.append(model.get("type") or "")
        name = " ".join(words)
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


# A volume's file (volume: true) beside the run's overlays: <instance>.volume.raw.
VOLUME_SUFFIX = ".volume.raw"


def overlay_dir(run_id: str) -> Path:
    """Where a run's overlays live (on the engine's host: create it there)."""
    return state_dir() / "overlays" / run_id


def _on_port_event(
    libvirt: ModuleType, console: Console, st: virStream, events: int, _opaque: object
) -> None:
    """The debug port's stream: its bytes go to `console.port`. Its end says nothing:
    the serial console's stream ends too (the domain stopped), and says so."""
    while True:
        try:
            data = st.recv(4096)
        except libvirt.libvirtError:
            _close_stream(st)
            return
        if data == -2:  # EAGAIN: drained for now
            break
        if not data:
            _close_stream(st)
            return
        console.port(data)
    if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
        _close_stream(st)


def _close_stream(stream: virStream) -> None:
    try:
        stream.eventRemoveCallback()
    except Exception:
        pass
    try:
        stream.abort()
    except Exception:
        pass


def version_string(v: int) -> str:
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
