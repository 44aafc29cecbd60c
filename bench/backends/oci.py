"""What the OCI container backends (docker, podman) share: bench's labels and leftovers,
the attach stream's framing and its reading into a console, the process view of a
container, runtime version lines, the runtime probe's verdict and the doctor lines.

Engine calls stay in each backend (docker's APIClient, podman's REST service): this
module imports neither SDK, so `bench --help` stays instant.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from pydantic import JsonValue, ValidationError

from bench.backends.base import (
    LABEL_OWNER,
    LABEL_OWNER_HOST,
    LABEL_PLATFORM,
    LABEL_PREFIX,
    LABEL_RUN,
    NAME_PREFIX,
    Backend,
    BoundaryView,
    Check,
    Instance,
    Leftover,
    Options,
    option_text,
    parse_pid,
)
from bench.backends.probe_cache import ProbeResult
from bench.machines import images, procfs
from bench.machines.iohub import IOHub
from bench.model import kinds
from bench.model.errors import BenchError, UsageError
from bench.model.owner import owner_labels
from bench.model.records import text
from bench.model.settings import NETWORK_READY

if TYPE_CHECKING:
    import docker
    from podman import PodmanClient

    from bench.backends.docker_backend import DockerSettings
    from bench.machines.host import Host
    from bench.machines.procfs import ProcessTable

API_TIMEOUT_S = 60  # every engine call is bounded: a dead engine must not hang a run
API_CONNECTIONS = 64  # launches, sampling and teardown run many calls at once
# A container whose output ended has exited, or is about to: its engine says so within
# this, or it is still running (its output closed, its process not).
EXIT_WAIT_S = 10
RUNTIME_PROBE_TIMEOUT_S = float(os.environ.get("BENCH_RUNTIME_PROBE_TIMEOUT", "30"))
# The run id on a probe container's label: `bench clean` finds one a crash left behind.
PROBE_RUN_ID = "runtime-probe"
PROBE_IMAGE = "busybox"  # the bench image a runtime probe starts
# An instance's volume (`volume: true`): named after it, mounted where fio-volume writes.
VOLUME_SUFFIX = "-vol"
VOLUME_DIR = "/bench-volume"
# What `runtime:` may name: an engine's runtime name, never a path or an option.
RUNTIME_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
# An engine's JSON answer (a container list row, /info, /version) as its SDK returns it
# (docker's stubs say dict[str, Any]; podman's client is untyped): JSON, each value of
# a shape the engine and its version decide, so it is narrowed where it is read
# (section, entries, bench.model.records.text).
EngineJson = Mapping[str, JsonValue]


def section(answer: EngineJson, key: str) -> EngineJson:
    """A nested object of an engine's answer; empty when absent or not an object."""
    v = answer.get(key)
    return v if isinstance(v, dict) else {}


def entries(answer: EngineJson, key: str) -> list[EngineJson]:
    """The objects of a list in an engine's answer (Components, Stats); [] when absent."""
    v = answer.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


class Demux:
    """Split docker's multiplexed attach stream (8-byte frame headers) into payloads
    (podman's attach and logs speak the same format)."""

    # The engines write a frame per read of the container's output (32 KiB here); a
    # header announcing more is not their stream, and waiting for 4 GiB to arrive would
    # hold it all in memory.
    MAX_FRAME_BYTES = 1 * 2**20

    def __init__(self) -> None:
        self._buf = b""
        #: Why the stream stopped being read (a frame too large), or None.
        self.error: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        self._buf += data
        out = []
        while len(self._buf) >= 8:
            (size,) = struct.unpack(">I", self._buf[4:8])
            if size > self.MAX_FRAME_BYTES:
                self.error = f"a console frame of {size} bytes (more than 1 MiB): not read"
                self._buf = b""
                break
            if len(self._buf) < 8 + size:
                break
            out.append(self._buf[8 : 8 + size])
            self._buf = self._buf[8 + size :]
        return out


def version_line(stdout: str) -> str | None:
    """`runc --version` / `runsc --version` / `crun --version` -> the version itself:
    "runsc version release-20221219.0" -> "release-20221219.0"."""
    lines = stdout.strip().splitlines()
    if not lines:
        return None
    first = lines[0].strip()
    _, sep, rest = first.partition(" version ")
    return (rest.strip() if sep else first)[:100] or None


def binary_version(host: Host, path: str) -> str | None:
    """`<path> --version` on the engine's host, its version line; None if it cannot say."""
    try:
        out = host.run([path, "--version"], timeout=10)
    except Exception:
        return None
    return version_line(out.stdout) if out.returncode == 0 else None


def instance_labels(run_id: str, platform: str) -> dict[str, str]:
    """The labels of everything bench creates: `bench clean` finds it after a crash and
    leaves a live run's alone."""
    return {LABEL_RUN: run_id, LABEL_PLATFORM: platform, **owner_labels(LABEL_PREFIX)}


def volume_name(inst_name: str) -> str:
    """The volume of an instance (`volume: true`): its name plus a suffix, so it carries
    the run's prefix and `bench clean` can tell it is bench's."""
    return f"{inst_name}{VOLUME_SUFFIX}"


def run_label(run_id: str | None) -> str:
    """The label filter of one run's containers, or of every bench container."""
    return f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN


def volume_leftover(backend: str, row: EngineJson) -> Leftover:
    """A leftover from one row of the engine's volume list (docker's and libpod's keys)."""
    labels = section(row, "Labels")
    return Leftover(
        backend,
        "volume",
        str(row.get("Name")),
        text(labels.get(LABEL_RUN)),
        parse_pid(labels.get(LABEL_OWNER)),
        text(labels.get(LABEL_OWNER_HOST)),
    )


def container_leftover(backend: str, row: EngineJson) -> Leftover:
    """A leftover from one row of the engine's container list."""
    labels = section(row, "Labels")
    names = row.get("Names")
    name = names[0] if isinstance(names, list) and names else str(row["Id"])[:12]
    return Leftover(
        backend,
        "container",
        str(name).lstrip("/"),
        text(labels.get(LABEL_RUN)),
        parse_pid(labels.get(LABEL_OWNER)),
        text(labels.get(LABEL_OWNER_HOST)),
    )


def container_processes(
    procs: ProcessTable, pid: int, keeper: int | None, kind: str
) -> tuple[list[int], list[int]]:
    """(every host process of a container, the runtime's own among them), from the pid
    its engine reports and the process that keeps it (docker's containerd-shim, podman's
    conmon; one per container with either engine).

    Under runc or crun the runtime's own is the keeper alone: the container's init and
    its descendants are the container's. Under a sandbox runtime (gVisor) the engine's
    pid is the sandbox (the Sentry, gVisor's kernel) and the keeper also runs its gofer
    (the file proxy, a sibling of the sandbox): keeper, gofer and sandbox are the
    runtime's, and only the sandbox's children (the stubs holding the application's
    address spaces) are the container's own. The Sentry's memory still holds the
    application's memory file, so a sandbox's runtime figure includes what the workload
    allocates; a workload that sleeps allocates almost nothing."""
    own = procs.descendants(pid) if pid else []
    if not (keeper and keeper > 1):
        return own, []
    if kind == kinds.SANDBOX:
        everything = procs.descendants(keeper)
        inside = set(own) - {pid}
        return everything, [p for p in everything if p not in inside]
    return [*own, keeper], [keeper]


def container_boundary(pid: object, kind: str, engine: str) -> BoundaryView:
    """The boundary view of a container from the pid its engine reports: the container's
    own init (runc, crun), or under a sandbox runtime the sandbox's process (runsc
    reports its runsc-sandbox, gVisor's Sentry, as the container's pid)."""
    pid = parse_pid(pid)
    if not pid or pid < 1:
        return BoundaryView(missing={"pids": f"{engine} reports no host pid for it"})
    role = "sandbox" if kind == kinds.SANDBOX else "container"
    return BoundaryView(
        {role: pid}, missing={"devices": "no VMM: a container has no virtual devices"}
    )


def cgroup_memory(host: Host, pid: int, container_id: str) -> tuple[int, str] | None:
    """The memory figure `docker stats` shows for a container, read from its cgroup's
    own files on its host, and where it came from; None when they cannot be read.

    The stats endpoint (docker's, podman's) takes a CPU sample a second apart before it
    answers, so asking it costs about a second per container; the memory figures in its
    answer are these same files. The cgroup is found from the init process's
    /proc/<pid>/cgroup (either cgroup driver, v1 or v2), never guessed.
    """
    proc = f"/proc/{pid}/cgroup"
    found = procfs.cgroup_memory_dir(host.read_files([proc])[proc] or "", container_id)
    if found is None:
        return None
    directory, version = found
    usage_file, stat_file = procfs.cgroup_memory_files(directory, version)
    files = host.read_files([usage_file, stat_file])
    usage, stat_text = procfs.parse_int(files[usage_file]), files[stat_file]
    if usage is None or stat_text is None:
        return None
    stats = procfs.parse_memory_stat(stat_text)
    name = usage_file.rsplit("/", 1)[1]
    inactive = "total_inactive_file" if version == 1 else "inactive_file"
    return procfs.docker_mem_usage(usage, stats), (
        f"cgroup v{version} {name} - {inactive} (docker stats' figure, read from the files)"
    )


def probe_name(runtime: str, engine: str = "") -> str:
    """The name of a runtime probe container (bench's prefix: `bench clean` finds it)."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in runtime)
    middle = f"{engine}-" if engine else ""
    return f"{NAME_PREFIX}runtime-probe-{middle}{safe}-{os.getpid()}"


def probe_verdict(code: object, out: str) -> ProbeResult:
    """A finished probe container (it ran `uname -r`): its exit status and output."""
    if code != 0:
        tail = out.splitlines()[-1] if out else "no output"
        return ProbeResult(False, f"the bench image exited with status {code} ({tail})")
    kernel = out.splitlines()[-1] if out else "?"
    return ProbeResult(True, f"starts the bench image (kernel {kernel})")


def container_ip(info: EngineJson, network: str) -> str:
    """A running container's address on its network, from its inspect (docker's and
    podman's have the same NetworkSettings): the one on `network` when it is a network's
    name, else the first one it has."""
    settings = section(info, "NetworkSettings")
    networks = section(settings, "Networks")
    named = text(section(networks, network).get("IPAddress"))
    addresses = (text(section(networks, k).get("IPAddress")) for k in networks)
    first = next((a for a in addresses if a), None)
    found = named or first or text(settings.get("IPAddress"))
    if not found:
        raise OSError(f"the container has no IP address (network {network})")
    return str(found)


def route_source(address: str) -> str:
    """This host's own address on the route to `address` (for a container on a bridge: the
    bridge's gateway), as the kernel picks it: connecting a UDP socket sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return str(s.getsockname()[0])


def close_attach(sock: Closable, raw: socket.socket) -> None:
    """Really close an attach socket: docker-py's SocketIO wrapper holds a reference to
    the socket (and the HTTP response a cycle to it), so closing the raw socket alone
    leaves the descriptor open until a garbage collection."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    with contextlib.suppress(Exception):
        sock.close()
    response = getattr(sock, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


class Closable(Protocol):
    def close(self) -> None: ...


class ContainerBackend(Backend):
    """The part of the docker and podman backends that does not depend on the engine's
    API. A subclass names its engine and start hint, lists its address option first in
    `cli_options` (its skip option second), and implements the engine calls below
    `connect()`: `_list`, `_remove`, `_disconnect`, `import_image`, `_runtime_checks`."""

    kind = kinds.CONTAINER
    Settings: ClassVar[type[DockerSettings]]  # docker's, or podman's (a DockerSettings)
    #: "docker" | "podman": the doctor's and leftovers' name, the I/O thread's.
    engine: ClassVar[str]
    #: How the doctor names a reachable engine ("Docker Engine 24.0 at ...").
    engine_title: ClassVar[str]
    #: The doctor's fix for an engine it cannot reach.
    start_hint: ClassVar[str]

    def __init__(self, settings: DockerSettings, host: Host | None = None):
        super().__init__(settings, host)
        # runsc makes a sandbox; docker without `runtime:` asks the daemon in prepare().
        self.kind = kinds.for_runtime(settings.runtime)
        self._hub: IOHub | None = None
        self._image_ref = settings.image
        # The prepared image's id, which instances are created from (None until prepare).
        self._image_pin: str | None = None
        self._lock = threading.Lock()
        self._sizes: dict[str, int | None] = {}
        self._procs: ProcessTable | None = None  # host process table, per sampling round
        self._storage_dirs: list[Path] = []
        self._info: EngineJson | None = None  # the engine's info(), once per connection
        self._runtime_checked = False  # the probe of the runtime passed
        self._runtime_version: str | None = None

    @property
    def container_settings(self) -> DockerSettings:
        """The platform's keys, as docker's and podman's (a DockerSettings) share them."""
        return self.settings  # type: ignore[return-value]  # set from a DockerSettings

    # -- what each engine implements ---------------------------------------------------

    @property
    @abstractmethod
    def address(self) -> str:
        """The engine's socket, unix://PATH."""

    @abstractmethod
    def connect(self) -> docker.APIClient | PodmanClient:
        """The engine's client, connected once (raises EngineUnavailable)."""

    @abstractmethod
    def has_image(self, ref: str) -> bool: ...

    @abstractmethod
    def import_image(self, name: str) -> str:
        """Import bench image `name` into the engine; returns the image id."""

    @abstractmethod
    def _list(self, label: str, size: bool = False) -> Sequence[EngineJson]:
        """The engine's container list rows (all states) carrying `label`."""

    @staticmethod
    @abstractmethod
    def _writable_bytes(row: EngineJson) -> int | None:
        """A list row's writable-layer size (asked with size=True)."""

    @abstractmethod
    def _remove(self, name: str) -> None:
        """Force-remove a container by id or name; already gone is fine."""

    def _remove_volume(self, name: str) -> None:
        """Remove a volume bench created (its container gone first); gone is fine."""
        raise NotImplementedError(f"{type(self).__name__} makes no volumes")

    def _list_volumes(self, label: str) -> Sequence[EngineJson]:
        """The engine's volumes carrying `label` (a key=value filter)."""
        return []

    def _disconnect(self) -> None:
        """Close the engine connection, if any."""

    def _runtime_checks(self, probe: bool, say: Callable[[str], None]) -> list[Check]:
        return []

    def version_checks(self, version: EngineJson) -> list[Check]:
        """Known faults of this engine's version (its /version answer), as doctor lines."""
        return []

    # -- CLI hooks ---------------------------------------------------------------------

    @classmethod
    def _for_options(cls, options: Options, name: str) -> Self:
        """A backend for the CLI's own use, at the address its option gives."""
        option = cls.cli_options[0]
        address = option_text(options, option.key)
        if address is not None and "://" not in address:
            # A bare word would be read as a `hosts:` name, which only a scenario has.
            raise UsageError(f"{option.flag} {address}: give an address such as unix://PATH")
        try:
            settings = cls.Settings(name=name, backend=cls.engine, image="busybox", host=address)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageError(f"{option.flag} {address}: {msg}") from None
        return cls(settings)

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        return [cls._for_options(options, "clean")]

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        backend = cls._for_options(options, "doctor")
        try:
            v = backend.connect().version()
            title = f"{cls.engine_title} {v.get('Version')} at {backend.address}"
            checks = [Check(cls.engine, True, title), *backend.version_checks(v)]
            ref = images.docker_ref(PROBE_IMAGE)
            has = backend.has_image(ref)
            checks.append(
                Check(
                    f"{cls.engine} image",
                    has,
                    ref if has else f"{ref} missing",
                    "bench images build",
                )
            )
            checks += backend._runtime_checks(has, say)
            return checks
        except BenchError as e:
            return [Check(cls.engine, False, str(e), cls.start_hint, engine=True)]
        finally:
            backend.close()

    @classmethod
    def build_images(
        cls, name: str, options: Options, say: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        if options.get(cls.cli_options[1].key):
            return []
        backend = cls._for_options(options, "images")
        try:
            image_id = backend.import_image(name)
        finally:
            backend.close()
        short = image_id.removeprefix("sha256:")[:12]
        # The rootfs digest names the userland: the same on two engines, the same image.
        rootfs = images.ensure_rootfs(name)["rootfs_sha256"]
        return [
            (
                cls.engine,
                f"{images.docker_ref(name)} ({short}) at {backend.address}, "
                f"rootfs sha256 {rootfs[:12]}",
            )
        ]

    # -- run ----------------------------------------------------------------------------

    def engine_address(self) -> str | None:
        return self.address

    def engine_info(self) -> EngineJson:
        if self._info is None:
            self._info = self.connect().info()
        return self._info

    def _io(self) -> IOHub:
        with self._lock:
            if self._hub is None:
                self._hub = IOHub(f"bench-{self.engine}-io")
            return self._hub

    def _attach_console(
        self, inst: Instance, sock: Closable, raw: socket.socket, early: bytes = b""
    ) -> None:
        """Read a created container's attach stream (`raw`: non-blocking, `early`: stream
        bytes already read) into its console, until the stream ends."""
        inst.info["_sock"] = (sock, raw)
        demux = Demux()

        def on_data(data: bytes) -> None:
            for chunk in demux.feed(data):
                inst.console.feed(chunk)
            if demux.error is not None:
                inst.console.close(f"container output unreadable ({demux.error})")

        if early:
            on_data(early)
        self._io().add_stream(
            raw,
            on_data,
            lambda err: inst.console.close(f"container output ended ({err or 'container exited'})"),
        )

    def _processes(self, host: Host) -> ProcessTable:
        return host.processes() if self._procs is None else self._procs

    def prefetch(self, insts: list[Instance], host: Host) -> None:
        # Writable-layer sizes of the whole step in one list call per run (the list
        # endpoint is the way to ask for sizes; one call per container would cost O(N)
        # each), and the host's process table once.
        self._procs = host.processes()
        self._sizes = {}
        for run_id in {i.run_id for i in insts}:
            for c in self._list(run_label(run_id), size=True):
                self._sizes[str(c["Id"])] = self._writable_bytes(c)

    def storage_dirs(self) -> list[Path]:
        return self._storage_dirs

    def endpoint(self, inst: Instance, port: int) -> tuple[str, int]:
        # Under `network: host` the container's ports are this host's own.
        network = self.container_settings.network
        if network == "host":
            return "127.0.0.1", port
        return container_ip(self._inspect(inst), network), port

    def host_address(self, inst: Instance) -> str | None:
        from bench.machines.host import LocalHost

        if not isinstance(self.host, LocalHost):
            # The server runs on this machine; an instance on another host would need
            # it there (over SSH), which bench does not do yet.
            raise ValueError(
                "network workloads need the platform on this machine, not on a remote host"
            )
        network = self.container_settings.network
        if network == "host":
            return "127.0.0.1"
        if network == "none":
            raise ValueError("the container has no network (network: none): set network: bridge")
        return route_source(container_ip(self._inspect(inst), network))

    def instance_address(self, inst: Instance) -> str | None:
        network = self.container_settings.network
        if network == "none":
            raise ValueError("the container has no network (network: none): set network: bridge")
        # network: host shares this host's namespace: its peers meet on loopback.
        return "127.0.0.1" if network == "host" else container_ip(self._inspect(inst), network)

    def exit_code(self, inst: Instance) -> int | None:
        return self._wait_exit(inst)

    @abstractmethod
    def _inspect(self, inst: Instance) -> EngineJson:
        """The engine's inspect of a created container."""

    @abstractmethod
    def _wait_exit(self, inst: Instance) -> int | None:
        """The exit status of a container whose output ended, once the engine has seen
        it stop (a short wait); None when it is still running."""

    def _check_ready_reach(self) -> None:
        """A probe from this host reaches a container on this host's engine only."""
        kind = self.settings.ready.kind
        if kind in NETWORK_READY and not self.address.startswith("unix://"):
            raise UsageError(
                f"platform {self.settings.name!r}: ready: {kind} probes the container "
                f"from this host, which cannot reach containers of the engine at "
                f"{self.address}: use a marker or exit readiness there"
            )

    def reachable(self) -> bool:
        try:
            return bool(self.connect().ping())
        except Exception:
            return False

    def destroy(self, inst: Instance) -> None:
        self._detach(inst)
        # By name when the create call never answered (timeout, dropped connection):
        # the engine may have created it all the same, and names are bench's own.
        self._remove(inst.handle or inst.name)
        if self.container_settings.volume:
            # After its container: a volume in use cannot be removed.
            self._remove_volume(volume_name(inst.name))

    def _detach(self, inst: Instance) -> None:
        """Stop reading the container's output (before it is stopped, so its end does
        not read as the container's own exit)."""
        socks = inst.info.pop("_sock", None)
        if isinstance(socks, tuple):  # (socket, raw): _attach_console's
            if self._hub:
                self._hub.remove(socks[1])
            close_attach(*socks)

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        label = run_label(run_id)
        return [container_leftover(self.engine, c) for c in self._list(label)] + [
            volume_leftover(self.engine, v) for v in self._list_volumes(label)
        ]

    def remove_leftover(self, leftover: Leftover) -> None:
        if leftover.kind == "volume":
            self._remove_volume(leftover.name)
        else:
            self._remove(leftover.name)

    def close(self) -> None:
        if self._hub:
            self._hub.close()
            self._hub = None
        self._disconnect()
        self._info = None


def event_window(insts: Sequence[Instance]) -> tuple[str, str] | None:
    """since/until from a second before the first launch of insts until now, as the
    events APIs take them ("SECONDS.NANOSECONDS"): a bounded query of past events,
    which returns and closes (an `until` still ahead would keep it open until then)."""
    launched = [i.launch_wall_ns for i in insts if i.launch_wall_ns is not None]
    if not launched:
        return None
    return _stamp(min(launched) - 1_000_000_000), _stamp(time.time_ns())


def _stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def first_events(rows: Iterable[EngineJson], names: set[str]) -> dict[str, dict[str, int]]:
    """Per container name, each container event's first wall-clock instant (timeNano).

    docker's and podman's (libpod) /events share this shape: Type, Action, Actor.
    Attributes.name, timeNano. Other objects' events and other containers' are skipped."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        actor = row.get("Actor")
        attrs = actor.get("Attributes") if isinstance(actor, dict) else None
        name = attrs.get("name") if isinstance(attrs, dict) else None
        action, at = row.get("Action") or row.get("status"), row.get("timeNano")
        if row.get("Type") != "container" or name not in names or not isinstance(at, int):
            continue
        if isinstance(action, str) and isinstance(name, str):
            out.setdefault(name, {}).setdefault(action, at)
    return out
