"""Where an instance's time to ready went: named phases from host-clock instants.

Every instant is on the runner's clock, relative to the instance's launch call (the
Sample's `*_s` fields): the create and start calls returning, the VMM answering its
control socket, and console lines as their first byte reached bench (bench.machines.console).
A phase is the difference of two such instants; what no phase covers (a boundary that
was not seen: a guest whose kernel prints nothing, a backend that cannot tell) is
"unattributed", so the phases and it always add up to `ready_s`.

The guest's own clock (printk times, the marker's `uptime=`) is recorded beside the
host's, never mixed into a phase: under TCG it need not run at the host's rate.

Pure functions over plain values: no engine, no pandas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.model import kinds

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# The kernel's first printk ("Linux version 6.1.0-57-amd64 (...)"): on the console when
# the guest has an early console (earlyprintk=/earlycon=), else replayed later, when
# its serial console registers (then only its printk time tells when it was printed).
KERNEL_START = re.compile(r"\bLinux version \d")
# The kernel's real-mode setup code (arch/x86/boot), the first of the kernel to run
# after the firmware loaded it, before the decompressor; printed unless `quiet`. Under
# microvm each character came twice here ("PPrroobbiinngg  EEDDDD"), presumably once
# through qboot's BIOS console, once from the setup code's own early serial console.
SETUP_START = re.compile(r"\bP+r+o+b+i+n+g+\s+E+D+D+")
# init/main.c: "Run %s as init process" (initramfs /init, or init= / rdinit=).
INIT_START = re.compile(r"\bRun \S+ as init process")
PRINTK_TIME = re.compile(r"^\[\s*(\d+\.\d+)\]")

LAUNCH = "launch"  # the launch call itself: instant 0


@dataclass(frozen=True)
class BootLines:
    """What a guest kernel's console lines tell, on the host's clock and on its own."""

    kernel_start_at: float | None = None  # host instant of the first kernel line
    init_start_at: float | None = None  # host instant of "Run /init as init process"
    guest_init_s: float | None = None  # printk time of that line: the guest's clock
    setup_start_at: float | None = None  # host instant of the setup code's first line


def boot_lines(lines: Iterable[tuple[float, str]]) -> BootLines:
    """The kernel's setup line, first line and start of init in timed console lines."""
    kernel_at = init_at = guest_init = setup_at = None
    for at, text in lines:
        if setup_at is None and kernel_at is None and SETUP_START.search(text):
            setup_at = at
        elif kernel_at is None and KERNEL_START.search(text):
            kernel_at = at
        elif init_at is None and INIT_START.search(text):
            init_at = at
            m = PRINTK_TIME.match(text)
            guest_init = float(m.group(1)) if m else None
            break
    return BootLines(kernel_at, init_at, guest_init, setup_at)


@dataclass(frozen=True)
class PhaseDef:
    name: str
    label: str
    # The first of these instants that was recorded starts the phase (LAUNCH: the launch
    # call); `end` ends it. Missing `end`, or no start: the phase is not recorded.
    starts: tuple[str, ...]
    end: str


# A VM: its VMM's start (direct QEMU only), the rest of the create call, the start call
# (resume / QMP cont: the first instruction follows), the firmware until the kernel's
# setup code prints, its decompression until the kernel's first line (both together
# when the setup line was not seen), the kernel's own init until it runs init, userspace.
VM_PHASES = (
    PhaseDef("vmm_start", "VMM process start", (LAUNCH,), "vmm_ready_s"),
    PhaseDef("create", "create call", ("vmm_ready_s", LAUNCH), "create_s"),
    PhaseDef("start", "start call", ("create_s",), "start_s"),
    PhaseDef("firmware", "firmware and kernel loading", ("start_s",), "setup_start_s"),
    PhaseDef("decompression", "kernel decompression", ("setup_start_s",), "kernel_start_s"),
    # Only when the two above are not both there (it would overlap them).
    # A kernel entered by PVH (microvm's default) prints no setup line: it has no
    # firmware and no decompressor, and this phase is QEMU's loading alone.
    PhaseDef(
        "firmware_decompression",
        "until the kernel's first line (firmware, decompression if any)",
        ("start_s",),
        "kernel_start_s",
    ),
    PhaseDef("kernel", "kernel init", ("kernel_start_s",), "init_start_s"),
    PhaseDef("userspace", "userspace until the marker", ("init_start_s",), "ready_s"),
)
# A container (or sandbox): create, start, until its first output, until the marker.
# Where the engine's event stream was read (bench.measurements.engine_events), its own
# create and start events split each call in two: until the engine said so, and from
# there until the call returned to bench. The whole call is kept only where the two
# halves are not both there (it would overlap them).
CONTAINER_PHASES = (
    PhaseDef("create_engine", "create call → engine's create event", (LAUNCH,), "engine_create_s"),
    PhaseDef(
        "create_return",
        "engine's create event → create call returned",
        ("engine_create_s",),
        "create_s",
    ),
    PhaseDef("create", "create call", (LAUNCH,), "create_s"),
    PhaseDef("start_engine", "start call → engine's start event", ("create_s",), "engine_start_s"),
    PhaseDef(
        "start_return", "engine's start event → start call returned", ("engine_start_s",), "start_s"
    ),
    PhaseDef("start", "start call", ("create_s",), "start_s"),
    PhaseDef("first_output", "until the first output byte", ("start_s",), "first_output_s"),
    PhaseDef("marker", "first output until the marker", ("first_output_s",), "ready_s"),
)
UNATTRIBUTED = "unattributed"


@dataclass(frozen=True)
class Phase:
    name: str
    label: str
    seconds: float
    start_s: float  # from the launch call
    end_s: float


def phase_defs(kind: str | None) -> tuple[PhaseDef, ...]:
    return VM_PHASES if kinds.is_vm(kind) else CONTAINER_PHASES


def phases(sample: Mapping[str, object]) -> tuple[list[Phase], float | None]:
    """One sample's (ready) phases in order, and the unattributed rest of `ready_s`.

    `sample` is a stored sample row (or Sample.model_dump()). A phase whose instants were
    not both recorded is left out and its time counts as unattributed; so is a negative
    difference (instants out of order: a clock or parsing fault), which is never shown
    as a phase. A phase still going on at ready ends there. No `ready_s`: ([], None).
    """
    ready = _num(sample.get("ready_s"))
    if ready is None:
        return [], None
    kind = sample.get("kind")
    out: list[Phase] = []
    for d in phase_defs(kind if isinstance(kind, str) else None):
        end = _num(sample.get(d.end))
        start = next(
            (t for t in map(lambda k: _instant(sample, k), d.starts) if t is not None), None
        )
        if end is None or start is None:
            continue
        # An instance can be ready before a call returns (a container's marker often
        # reaches bench before its start call does): the phase ends at ready.
        end = min(end, ready)
        if end < start:
            continue
        out.append(Phase(d.name, d.label, end - start, start, end))
    # Phases never overlap when their instants are in order (each starts where an
    # earlier one ended); one that would is dropped and left to unattributed.
    kept: list[Phase] = []
    for p in out:
        if kept and p.start_s < kept[-1].end_s:
            continue
        kept.append(p)
    return kept, ready - sum(p.seconds for p in kept)


@dataclass(frozen=True)
class PhaseColumns:
    """`phases` of many samples: per phase name, its seconds and its start (from the
    launch call) per sample, NaN where it was not recorded; the unattributed rest (NaN
    without ready_s)."""

    seconds: dict[str, NDArray[np.float64]]
    starts: dict[str, NDArray[np.float64]]
    unattributed: NDArray[np.float64]


def phase_columns(
    column: Callable[[str], NDArray[np.float64]], vm: NDArray[np.bool_]
) -> PhaseColumns:
    """`phases` over many samples at once, by the same rule.

    `column(field)`: a field of the samples as floats (NaN where missing); `vm`: which
    samples are VMs' (kinds.is_vm). A report of a million samples draws its plots from
    these arrays, never from a million dicts."""
    import numpy as np

    ready = column("ready_s")
    out: dict[str, NDArray[np.float64]] = {}
    starts: dict[str, NDArray[np.float64]] = {}
    covered = np.zeros_like(ready)
    for defs, mine in ((VM_PHASES, vm), (CONTAINER_PHASES, ~vm)):
        last_end = np.full_like(ready, -np.inf)
        for d in defs:
            end = column(d.end)
            start = np.full_like(ready, np.nan)
            for key in reversed(d.starts):  # the first recorded of them wins
                t = np.zeros_like(ready) if key == LAUNCH else column(key)
                start = np.where(np.isnan(t), start, t)
            end = np.fmin(end, np.where(np.isnan(end), np.nan, ready))  # as in phases()
            with np.errstate(invalid="ignore"):
                kept = mine & (start <= end) & (start >= last_end)
            seconds = np.where(kept, end - start, np.nan)
            out[d.name] = np.where(mine, seconds, out.get(d.name, np.nan))
            starts[d.name] = np.where(kept, start, starts.get(d.name, np.nan))
            covered += np.nan_to_num(seconds)
            last_end = np.where(kept, end, last_end)
    return PhaseColumns(out, starts, ready - covered)


def _instant(sample: Mapping[str, object], key: str) -> float | None:
    return 0.0 if key == LAUNCH else _num(sample.get(key))


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if v == v else None  # NaN (a pandas hole) is missing


# The instants a backend notes on an instance's console (Console.note), by Sample field.
VMM_READY = "vmm_ready"


def console_fields(
    lines: list[tuple[float, str]],
    first_byte_at: float | None,
    instants: Mapping[str, float],
    t0: float | None,
) -> dict[str, float | int | None]:
    """The Sample fields of one instance's console: its noted instants and what its
    timed lines tell, relative to its launch call `t0` (None: never launched)."""

    def rel(t: float | None) -> float | None:
        return None if t is None or t0 is None else t - t0

    boot = boot_lines(lines)
    return {
        "vmm_ready_s": rel(instants.get(VMM_READY)),
        "first_output_s": rel(first_byte_at),
        "setup_start_s": rel(boot.setup_start_at),
        "kernel_start_s": rel(boot.kernel_start_at),
        "init_start_s": rel(boot.init_start_at),
        "guest_init_s": boot.guest_init_s,
        "console_lines": len(lines),
    }


@dataclass(frozen=True)
class ClockCheck:
    """One span of a guest's boot on the host's clock and on the guest's own."""

    name: str
    host_s: float  # the span between two host instants
    guest_s: float  # the same span as the guest's clock counted it
    # host - guest: positive when the guest's clock ran slow (or started late).
    gap_s: float


def guest_vs_host(sample: Mapping[str, object]) -> list[ClockCheck]:
    """Where the guest's clock and the host's disagree about the same span of its boot.

    The guest's clock starts about when its kernel prints its first line: from there to
    init is `guest_init_s` on its clock, and to the marker the marker's `uptime=`
    (`guest_uptime_s`). Under TCG a guest whose clocksource falls back to jiffies (ticks
    lost while its vCPU waits for the host) counts fewer seconds than passed.
    """
    kernel = _num(sample.get("kernel_start_s"))
    out = []
    for name, end, guest in (
        ("kernel start to init", "init_start_s", "guest_init_s"),
        ("kernel start to marker", "ready_s", "guest_uptime_s"),
    ):
        host_end, guest_s = _num(sample.get(end)), _num(sample.get(guest))
        if kernel is None or host_end is None or guest_s is None:
            continue
        host_s = host_end - kernel
        out.append(ClockCheck(name, host_s, guest_s, host_s - guest_s))
    return out
