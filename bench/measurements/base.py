"""The base every measurement shares, and what it sees of the step it measures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypedDict, TypeVar

from bench.model.records import Facts, FieldInfo, Record, Sample, StepRecord, fields_of

if TYPE_CHECKING:
    from bench.backends.base import Backend, Instance
    from bench.machines.clock import Clock
    from bench.machines.host import Host
    from bench.plan.scenario import Scenario

# When a measurement's after-launch reading is taken: as soon as every instance is
# ready (before the scenario's settle wait), or after the settle wait and the cache
# drop. Both are before the step's teardown; a step measurement's `before` reading is
# taken before the step's launch (for a ramp: before its first level).
When = Literal["after_ready", "after_settle"]
WHENS: tuple[When, ...] = ("after_ready", "after_settle")
Per = Literal["step", "instance"]
# What a step measurement reads before launch, for its after-reading (its own type).
Kept = object
KeptT = TypeVar("KeptT")


class Found(TypedDict, total=False):
    """What an instance's measurements pass on to the next ones (not stored)."""

    pids: list[int]  # its host processes, found by the engine view
    # Of those, the container runtime's own (shim, conmon, gVisor's gofer and sandbox),
    # as its backend knows them: the process view measures them apart.
    runtime_pids: list[int]
    # A VM's configured RAM and its VMM's pid: the process view finds the guest's RAM
    # in the VMM's mappings by this size.
    guest_memory_bytes: int
    vmm_pid: int


# Fields the measurer fills itself: the conditions the step's readings were taken in,
# and why an instance's readings are missing.
_STEP: Per = "step"
_INSTANCE: Per = "instance"
MEASURER_FIELDS: frozenset[tuple[Per, str]] = frozenset(
    [(_STEP, "settle_s"), (_STEP, "dropped_caches"), (_STEP, "sampling_s")]
    + [(_INSTANCE, "sample_error")]
)


@dataclass
class StepContext:
    """One step as its measurements see it."""

    scenario: Scenario
    clock: Clock
    backend: Backend
    # After launch: the instances the step counts (a ramp level: all running) and those
    # of this step that launched (the ones to sample).
    n: int = 0
    instances: list[Instance] = field(default_factory=list)

    @property
    def host(self) -> Host:
        return self.backend.host


class Measurement(ABC):
    """A plug-in: named by its registry key, filling the record fields it declares.

    `fields` are field names of `record` (StepRecord for a step measurement, Sample for
    an instance one); their unit and direction are declared there (bench.model.records), so
    summary, compare and the report know them. A name the record does not declare is
    stored under the record's `extras`.
    """

    per: ClassVar[Per]
    record: ClassVar[type[Record]]
    fields: ClassVar[tuple[str, ...]] = ()
    when: ClassVar[When] = "after_settle"
    # The kinds (bench.model.kinds) it applies to; None: every kind.
    kinds: ClassVar[frozenset[str] | None] = None
    # Counted in the step's sampling_s: bench's own time asking about the instances.
    sampling: ClassVar[bool] = False
    # Fields that are one structured mapping of facts (no unit, nothing to summarise),
    # stored under the record's `extras` and documented by the measurement itself.
    nested: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str):
        self.name = name

    def applies(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    @classmethod
    def declared(cls) -> dict[str, FieldInfo | None]:
        """Each field with its declaration in bench.model.records (None: stored in extras)."""
        known = fields_of(cls.record)
        return {name: known.get(name) for name in cls.fields}


class StepMeasurement(Measurement, Generic[KeptT]):
    """Fills StepRecord fields: one reading before launch (a `KeptT`), one after it."""

    per: ClassVar[Per] = "step"
    record: ClassVar[type[Record]] = StepRecord

    def before(self, ctx: StepContext) -> KeptT | None:
        """Read before the step launches; what it returns is given to `after`."""
        return None

    @abstractmethod
    def after(self, ctx: StepContext, kept: KeptT) -> Facts:
        """The step's fields, read `when` the step is ready (`kept`: from `before`)."""


class InstanceMeasurement(Measurement):
    """Fills Sample fields of each launched instance, on the sampling threads."""

    per: ClassVar[Per] = "instance"
    record: ClassVar[type[Record]] = Sample

    def prepare(self, ctx: StepContext) -> None:
        """Once per step, before any instance is sampled (one call for all of them)."""

    @abstractmethod
    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        """One instance's fields. `found`: what the instance measurements before this
        one put there for this instance (not stored), for this one to build on."""
