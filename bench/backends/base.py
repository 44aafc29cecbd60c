"""The backend interface: what the runner may ask of an engine, and nothing more.

A backend creates, starts and destroys instances on one engine through that engine's
own SDK and streams each instance's console into its `Console`. It measures nothing
and computes no statistics: the runner owns the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.machines.console import Console
from bench.model import owner
from bench.model.errors import BenchError
from bench.model.records import Facts
from bench.model.settings import PlatformBase

if TYPE_CHECKING:
    from bench.machines.host import Host

# Everything bench creates carries these, so `bench clean` finds it after a crash.
LABEL_RUN = "bench.run_id"
LABEL_PLATFORM = "bench.platform"
# The bench process that owns it (pid, and the controller host it runs on): `bench
# clean` leaves a live run alone, and never judges another host's pid by this /proc.
LABEL_PREFIX = "bench."
LABEL_OWNER = "bench.owner_pid"
LABEL_OWNER_HOST = "bench.owner_host"
NAME_PREFIX = "bench-"

#: The commands whose options a backend may extend (see CliOption.commands).
CLI_COMMANDS = frozenset({"doctor", "clean", "images"})


@dataclass
class Instance:
    name: str
    run_id: str
    platform: str
    console: Console
    handle: Any = None  # the backend's own object (container, domain, ...): its SDK's
    # What the backend and the measurements found, stored with the sample (bench.model.records.
    # backend_facts); `_` keys are the backend's own (sockets, timers), never stored.
    info: dict[str, object] = field(default_factory=dict)
    # The wall clock (time.time_ns) at its launch call, beside the runner's clock: an
    # engine's event instants (wall clock) are placed relative to it.
    launch_wall_ns: int | None = None


@dataclass(frozen=True)
class EngineEvents:
    """What an engine's event stream told of a step's instances: per instance name, the
    engine's event names (create, start, ...) and the wall-clock instant (ns) of each
    one's first occurrence; `why_not`: why none could be placed on bench's clock."""

    wall_ns: dict[str, dict[str, int]] = field(default_factory=dict)
    why_not: str | None = None


@dataclass(frozen=True)
class BoundaryView:
    """Where an instance's boundary lies, as its backend knows it: the host processes
    that hold it, by role, and a VM's devices as its VMM or libvirt lists them. Only
    where to look: the boundary measurement (bench.measurements.boundary) reads the
    facts itself, and says "not read" for whatever is missing here, with `missing`'s why.

    Roles: "container" (the instance's own first process, run by the host kernel),
    "sandbox" (the host process of a user-space kernel, gVisor's Sentry), "vmm" (QEMU).
    """

    pids: dict[str, int] = field(default_factory=dict)
    # Device type -> how many (a VM's), and where the list came from.
    devices: dict[str, int] | None = None
    devices_source: str | None = None
    # Fact ("pids", "devices") -> why the backend cannot give it.
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    """A command run inside a running instance, to its end (Backend.run_in)."""

    rc: int
    stdout: bytes
    stderr: bytes


class CannotRunIn(BenchError):
    """The backend cannot run a command inside its instances (a VM without a guest
    agent): workloads cannot run on it."""


@dataclass(frozen=True)
class Leftover:
    backend: str
    kind: str  # "container" | "volume" | "domain" | "file"
    name: str
    run_id: str | None
    owner_pid: int | None = None
    owner_host: str | None = None  # None: labelled before bench recorded hosts (local)

    @property
    def owner_remote(self) -> bool:
        """Owned by a bench on another controller host: this machine cannot tell
        whether that run still goes."""
        return not owner.is_local(self.owner_host)

    @property
    def owner_alive(self) -> bool:
        """Its run still goes here (its bench holds the run's lock): not a leftover."""
        return not self.owner_remote and owner.run_alive(self.run_id, self.owner_pid)

    @property
    def in_use(self) -> bool:
        """Possibly part of a run still going (here, or on another host): leave it alone."""
        return self.owner_remote or self.owner_alive


@dataclass
class Check:
    """One line of `bench doctor`."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    engine: bool = False  # an unreachable engine: exit 3, like bench run
    # Works, but the user should know (an engine with a known bug): "warn", still exit 0.
    warn: bool = False


@dataclass(frozen=True)
class CliOption:
    """A command-line option a backend adds to `bench doctor`, `clean` or `images build`.

    Its value reaches the backend's hooks as options[key]: None or False when not given,
    a list when `multiple`.
    """

    flag: str  # "--docker-host"
    key: str  # "docker_host"
    help: str
    multiple: bool = False
    is_flag: bool = False
    metavar: str | None = None
    commands: frozenset[str] = CLI_COMMANDS
    hidden: bool = False  # left out of --help
    # Checks a value (raises ValueError with the reason) before the command does anything:
    # an address is refused before any engine is asked (bench.model.addresses).
    check: Callable[[str], object] | None = None


def print_nothing(_message: str) -> None:
    pass


def parse_pid(value: object) -> int | None:
    """A pid from whatever an engine said (a label's text, a number), or None."""
    if not isinstance(value, str | bytes | int | float):
        return None
    try:
        return int(value)
    except ValueError:
        return None


# The values of every backend's cli_options, by key (CliOption: None or False when not
# given, a list when `multiple`).
OptionValue = str | bool | list[str] | None
Options = Mapping[str, OptionValue]


def option_text(options: Options, key: str) -> str | None:
    """An option's text, None when not given."""
    value = options.get(key)
    return value if isinstance(value, str) else None


def option_list(options: Options, key: str) -> list[str]:
    """A `multiple` option's values, [] when not given."""
    value = options.get(key)
    return list(value) if isinstance(value, list) else []


class Backend(ABC):
    #: Where its instances sit from container to VM (bench.model.kinds): a class default,
    #: which a backend whose settings decide it (runtime, machine) sets per instance.
    kind: str
    #: The pydantic model of this backend's platform keys.
    Settings: ClassVar[type[PlatformBase]]

    #: Options this backend adds to the CLI (its engine's address, ...).
    cli_options: ClassVar[tuple[CliOption, ...]] = ()
    #: False hides this backend's options from --help (a backend for tests).
    listed: ClassVar[bool] = True
    #: What the user should know when this engine stops destroying instances (its
    #: calls time out): a known cause and its cure, said in the run's error line.
    stall_hint: ClassVar[str] = ""
    #: True: a teardown halts every one of its instances (halt()) before destroying
    #: any, for an engine measured to do less work that way (DockerBackend says why).
    halt_first: ClassVar[bool] = False

    def __init__(self, settings: PlatformBase, host: Host | None = None):
        self.settings = settings
        self._host = host
        # Tells the user about slow work in preflight() (a runtime probe): prepare() is
        # given `say`, preflight() has it here (bench.runner.run sets it).
        self.say: Callable[[str], None] = print_nothing
        # Whether preflight() may start a probe (a runtime that cannot start anything is
        # refused before a run); `bench validate` starts nothing: known results only.
        self.may_probe = True

    @property
    def host(self) -> Host:
        """The machine this backend's engine runs on: where its instances are measured.

        Chosen from the engine's address when first asked, so a backend can be made
        (for `bench clean`, for a preflight that explains a bad address) without one.
        """
        if self._host is None:
            from bench.machines.host import host_for

            self._host = host_for(self.engine_address())
        return self._host

    def engine_address(self) -> str | None:
        """The engine's address (socket path, URI); None: this machine."""
        return None

    # -- what the CLI asks every registered backend ----------------------------------
    # `options` holds the values of every backend's cli_options, by key; each backend
    # reads its own. None of these is called for a scenario's platforms.

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        """This backend's engines that `bench clean` searches for leftovers."""
        return []

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        """`bench doctor`'s checks of this backend: engine reachable, images built, ...

        `say` tells the user about slow work (a probe boot). Never raises: a failure is a
        failed Check with a fix.
        """
        return []

    @classmethod
    def build_images(
        cls, name: str, options: Options, say: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        """This backend's part of `bench images build NAME`, after the shared rootfs,
        initramfs and kernel are built (bench.machines.images). Returns (label, text) lines to show.
        """
        return []

    def preflight(self) -> None:
        """Cheap checks that start and build nothing: engine reachable, the scenario's
        own images present. Every platform passes these before any is prepared, so a
        bad file never gets as far as a probe boot or an image build."""

    @abstractmethod
    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        """Connect, resolve the image (building the bench pair if allowed). Called only
        after preflight() passed (bench.runner.run.prepare_backends does both), so it does not
        repeat those checks.

        `say` tells the user about slow first-time work (an image build, a KVM probe).
        Returns facts for the run's metadata (engine versions, accel, image digest).
        Raises EngineUnavailable / ImageError with an actionable message.
        """

    @abstractmethod
    def create(self, inst: Instance) -> None:
        """Create the instance, not yet running, with its console attached to inst.console.

        Attaching before start means no console output can be missed.
        """

    @abstractmethod
    def start(self, inst: Instance) -> None:
        """Let the instance run."""

    @abstractmethod
    def destroy(self, inst: Instance) -> None:
        """Stop and remove the instance and its files. Idempotent; "already gone" is fine."""

    def halt(self, inst: Instance) -> None:
        """Stop the instance's processes and stop reading its console, leaving the rest
        to destroy(); only called when `halt_first`. Idempotent; "already stopped" and
        "already gone" are fine."""

    @abstractmethod
    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        """Instances and files bench created on this engine that still exist."""

    @abstractmethod
    def remove_leftover(self, leftover: Leftover) -> None: ...

    def prefetch(self, insts: list[Instance], host: Host) -> None:
        """Before sample() is called for each of insts: fetch what one call can answer
        for all (sizes, the host's process table), so sampling a step stays O(N)."""

    def engine_events(self, insts: list[Instance]) -> EngineEvents:
        """The engine's own events of these instances (one query for all of them, after
        they are ready), on its wall clock. The default: an engine without an event
        stream bench reads (nothing recorded, nothing to explain)."""
        return EngineEvents()

    def sample(self, inst: Instance, host: Host) -> Facts:
        """Raw facts about a running, ready instance, from the engine's point of view.

        `host` (this backend's own `self.host`) answers process questions.
        Keys (all optional): `pids` (its host processes, for the process view),
        `engine_mem_bytes` + `engine_mem_source` (the engine's own memory figure),
        `disk_writable_bytes` (its own writable storage), plus anything else to store.
        """
        return {}

    def boundary_view(self, inst: Instance, host: Host) -> BoundaryView:
        """The host processes of a running instance and, for a VM, its devices (see
        BoundaryView). Called once per instance after it is ready; may ask the engine."""
        why = f"the {type(self).__name__} does not say which host processes run its instances"
        return BoundaryView(missing={"pids": why, "devices": why})

    def endpoint(self, inst: Instance, port: int) -> tuple[str, int]:
        """Where this machine reaches TCP `port` of a started instance: its address on
        its network, and the port there (ready: tcp, http; the runner probes it).
        Asked once per instance, after its start call returned."""
        raise NotImplementedError(f"{type(self).__name__} gives no address to probe")

    def host_address(self, inst: Instance) -> str | None:
        """The address of this host that a ready instance reaches over its network (network
        workloads bind their host-side server to it, and only to it). None: the backend's
        tools are fakes that need no server."""
        raise NotImplementedError(f"{type(self).__name__} gives its instances no network path")

    def forward_accepted(self, inst: Instance, port: int) -> bool | None:
        """Whether the guest itself holds a connection on its TCP `port` that came in
        through a forward (ready: tcp into a VM): user-mode networking accepts on this
        host's side first, so a connect alone says nothing. None: the endpoint is no
        forward (the connect decides) or the backend cannot tell."""
        return None

    def host_address_seen(self, inst: Instance, bound: str) -> str:
        """The address the instance dials for a server of this host bound to `bound`
        (host_address's): the same, unless the instance sees this host under another
        one (a VM on user-mode networking reaches this host's loopback as its gateway)."""
        return bound

    def instance_address(self, inst: Instance) -> str | None:
        """The address other instances of its network reach a ready instance at (a peer
        workload's server listens there, bound to it only). None: fake tools, no server."""
        raise NotImplementedError(f"{type(self).__name__} gives its instances no network path")

    def exit_code(self, inst: Instance) -> int | None:
        """The exit status of an instance whose console ended (ready: exit), as its
        engine tells; None when it has not exited."""
        raise NotImplementedError(f"{type(self).__name__} gives no exit status")

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        """Run `argv` inside a running, ready instance (its root filesystem, its
        namespaces, its limits) and wait for its end: how a workload (bench.measurements.
        workloads) runs. The command bounds its own time (busybox `timeout`); a backend
        that waits for the answer itself gives up after `timeout_s`."""
        raise CannotRunIn(
            f"the {type(self).__name__} cannot run a command inside its instances, so "
            "workloads cannot run on it (yet)"
        )

    def reachable(self) -> bool:
        """Whether the engine still answers (asked when a whole step failed)."""
        return True

    def storage_dirs(self) -> list[Path]:
        """Directories where the engine puts per-instance state (for step disk growth)."""
        return []

    def close(self) -> None:
        """Release connections and I/O threads."""
