"""The backend interface: what the runner may ask of an engine, and nothing more.

A backend creates, starts and destroys instances on one engine through that engine's
own SDK and streams each instance's console into its `Console`. It measures nothing
and computes no statistics: the runner owns the clock.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.console import Console
from bench.scenario import PlatformBase

if TYPE_CHECKING:
    from bench.host import Host

# Everything bench creates carries these, so `bench clean` finds it after a crash.
LABEL_RUN = "bench.run_id"
LABEL_PLATFORM = "bench.platform"
# The pid of the bench process that owns it: `bench clean` leaves a live run alone.
LABEL_OWNER = "bench.owner_pid"
NAME_PREFIX = "bench-"


@dataclass
class Instance:
    name: str
    run_id: str
    platform: str
    console: Console
    handle: Any = None  # the backend's own object (container, domain, ...)
    info: dict[str, Any] = field(default_factory=dict)  # stored with the sample


@dataclass(frozen=True)
class Leftover:
    backend: str
    kind: str  # "container" | "domain" | "file"
    name: str
    run_id: str | None
    owner_pid: int | None = None

    @property
    def owner_alive(self) -> bool:
        """Its bench process still runs: not a leftover but part of a live run."""
        return owner_alive(self.owner_pid)


def print_nothing(_message: str) -> None:
    pass


def owner_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            # A reused pid belongs to some other program: only a bench process counts.
            return b"bench" in f.read()
    except OSError:
        return False


def parse_pid(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Backend(ABC):
    #: "container" or "vm": what one instance of this backend is.
    kind: ClassVar[str]
    #: The pydantic model of this backend's platform keys.
    Settings: ClassVar[type[PlatformBase]]

    def __init__(self, settings: PlatformBase, host: Host | None = None):
        self.settings = settings
        self._host = host

    @property
    def host(self) -> Host:
        """The machine this backend's engine runs on: where its instances are measured.

        Chosen from the engine's address when first asked, so a backend can be made
        (for `bench clean`, for a preflight that explains a bad address) without one.
        """
        if self._host is None:
            from bench.host import host_for

            self._host = host_for(self.engine_address())
        return self._host

    def engine_address(self) -> str | None:
        """The engine's address (socket path, URI); None: this machine."""
        return None

    @classmethod
    def for_cleanup(cls, options: dict[str, Any]) -> list[Backend]:
        """This backend's engines on this host that `bench clean` searches for leftovers.

        `options` holds the CLI's engine options (docker_host, libvirt_uris); each
        backend reads its own.
        """
        return []

    def preflight(self) -> None:
        """Cheap checks that start and build nothing: engine reachable, the scenario's
        own images present. Every platform passes these before any is prepared, so a
        bad file never gets as far as a probe boot or an image build."""

    @abstractmethod
    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> dict[str, Any]:
        """Connect, resolve the image (building the bench pair if allowed).

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

    @abstractmethod
    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        """Instances and files bench created on this engine that still exist."""

    @abstractmethod
    def remove_leftover(self, leftover: Leftover) -> None: ...

    def prefetch(self, insts: list[Instance], host: Host) -> None:
        """Before sample() is called for each of insts: fetch what one call can answer
        for all (sizes, the host's process table), so sampling a step stays O(N)."""

    def sample(self, inst: Instance, host: Host) -> dict[str, Any]:
        """Raw facts about a running, ready instance, from the engine's point of view.

        `host` (this backend's own `self.host`) answers process questions.
        Keys (all optional): `pids` (its host processes, for the process view),
        `engine_mem_bytes` + `engine_mem_source` (the engine's own memory figure),
        `disk_writable_bytes` (its own writable storage), plus anything else to store.
        """
        return {}

    def reachable(self) -> bool:
        """Whether the engine still answers (asked when a whole step failed)."""
        return True

    def storage_dirs(self) -> list[Path]:
        """Directories where the engine puts per-instance state (for step disk growth)."""
        return []

    def close(self) -> None:
        """Release connections and I/O threads."""
