"""Noisy neighbours: how much a victim instance slows while others of its platform stress
the machine (issue 23 §2, performance isolation).

A step of a scenario with `neighbours:` launches aggressors + 1 instances of one
platform (bench.plan.scenario sets its count), each with the platform's limits (a
container's `cpus:`, a VM's `vcpus:`). The first ready instance is the victim, the
next `aggressors` are the aggressors. Once every instance is ready the victim runs its
workload (a built-in of bench.measurements.workloads) alone, then once per aggressor
kind while every aggressor runs that kind's stress-ng stressor: the aggressors' runs
start LEAD_S before the victim's and last LEAD_S past it, each on its own thread
through the backend's `run_in`, so the victim's whole window is contended.

Each of those victim runs is stored raw (bench.model.records.NeighbourRun, a list
under the step record's `extras["neighbours"]`); the slowdown (alone over contended)
and its spread across repeats are computed when read (bench.report.neighbours). A
step measurement, not an instance one: it needs every instance of the step at once.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import JsonValue

from bench.measurements.base import StepContext, StepMeasurement
from bench.measurements.workloads import BUILTIN, GRACE_S, VOLUME_DIR, run_workload
from bench.model.errors import first_line
from bench.model.records import Facts, NeighbourRun

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.backends.base import Backend, Instance
    from bench.machines.clock import Clock

# The aggressors start this long before the victim's window and end this long after.
LEAD_S = 1.0
# Marks an aggressor's command (a shell no-op), so a log or the fake backend tells it
# from the victim's.
MARK = ": bench-aggressor;"
THREAD = "bench-aggressor"  # the aggressors' threads' name prefix


@dataclass(frozen=True)
class Kind:
    args: tuple[str, ...]
    doc: str


# One stress-ng worker per aggressor instance: its limit (cpus: 1) is what the
# scenario gives it, and on a 2-core host one worker already contends.
KINDS: dict[str, Kind] = {
    "cpu": Kind(("--cpu", "1", "--cpu-method", "matrixprod"), "CPU (matrix product)"),
    "stream": Kind(
        ("--stream", "1", "--stream-l3-size", "8M"), "memory bandwidth (STREAM, 8 MiB L3 size)"
    ),
    "vm": Kind(("--vm", "1", "--vm-bytes", "64M"), "memory pressure (64 MiB written and read)"),
    "io": Kind(
        ("--hdd", "1", "--hdd-bytes", "64M"),
        "disk I/O (64 MiB written, read, removed in turn; on the platform's volume, "
        "/bench-volume, when it has volume: true, else its writable layer)",
    ),
    "fork": Kind(("--fork", "1"), "process creation (fork and exit)"),
    # stress-ng's socket stressor: a client and a server process over the aggressor's
    # own loopback. It needs no network between instances (network: none works, a VM
    # included): what a neighbour's network traffic costs the others is the shared
    # kernel's network stack (softirqs, locks) under containers, or the VMM's CPU.
    "net": Kind(("--sock", "1"), "network stack (TCP over the aggressor's own loopback)"),
}


def aggressor_command(kind: str, duration_s: float, volume: bool = False) -> list[str]:
    """The stressor of `kind` for `duration_s`, bounded by busybox `timeout`; its
    output is dropped (only whether it ran to its end matters). `volume`: the platform
    has volume: true, and the io kind writes there (stress-ng's --temp-path), on every
    backend alike: in a VM its writable layer is RAM, which no disk I/O reaches."""
    args = list(KINDS[kind].args)
    if volume and kind == "io":
        args += ["--temp-path", VOLUME_DIR]
    tool = ["stress-ng", *args, "-t", f"{duration_s:g}s", "--quiet"]
    body = (
        f"{MARK} cd /tmp; timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(tool)} "
        ">/tmp/bench-aggressor 2>&1; rc=$?; [ $rc -eq 0 ] || tail -n 3 /tmp/bench-aggressor >&2; "
        "rm -f /tmp/bench-aggressor; exit $rc"
    )
    return ["/bin/sh", "-c", body]


def _aggress(backend: Backend, inst: Instance, kind: str, duration_s: float) -> str | None:
    """One aggressor's run; its error line, or None."""
    volume = bool(getattr(backend.settings, "volume", False))
    command = aggressor_command(kind, duration_s, volume)
    try:
        done = backend.run_in(inst, command, duration_s + GRACE_S + 30)
    except Exception as e:
        return f"{inst.handle}: {first_line(e)}"
    if done.rc != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{inst.handle}: stress-ng exited with {done.rc}: {why[-1][:200] if why else ''}"
    return None


def _aggressors_around(
    backend: Backend,
    aggressors: list[Instance],
    kind: str,
    duration_s: float,
    clock: Clock,
    victim_run: Callable[[], JsonValue],
) -> tuple[JsonValue, list[str]]:
    """The victim's run while every aggressor runs `kind` (from LEAD_S before it to
    LEAD_S after it), and the aggressors' error lines."""
    errors: list[str | None] = [None] * len(aggressors)

    def aggress(i: int) -> None:
        errors[i] = _aggress(backend, aggressors[i], kind, duration_s + 2 * LEAD_S)

    threads = [
        threading.Thread(target=aggress, args=(i,), name=f"{THREAD}-{i}", daemon=True)
        for i in range(len(aggressors))
    ]
    for t in threads:
        t.start()
    clock.sleep(LEAD_S)
    run = victim_run()
    for t in threads:
        t.join()
    return run, [e for e in errors if e]


class Neighbours(StepMeasurement[None]):
    fields = ("neighbours",)
    nested = frozenset({"neighbours"})
    # After settle: the step's instances are ready and idle, before any instance's
    # workloads (the instance measurements run after the step ones).
    when = "after_settle"

    def after(self, ctx: StepContext, kept: None) -> Facts:
        spec = ctx.scenario.neighbours
        if spec is None:
            return {}
        backend, clock = ctx.backend, ctx.clock
        victim_spec = BUILTIN[spec.victim]
        duration = spec.duration
        victim, aggressors = (ctx.instances[0], ctx.instances[1:]) if ctx.instances else (None, [])
        if victim is None:
            return {"neighbours": []}
        aggressors = aggressors[: spec.aggressors]

        def victim_run() -> JsonValue:
            return run_workload(
                backend,
                victim,
                spec.victim,
                victim_spec.tool,
                list(victim_spec.args),
                duration,
                clock.now,
            ).model_dump(mode="json")

        runs: list[JsonValue] = []
        alone = NeighbourRun.model_validate(
            {"aggressor": "alone", "aggressors": 0, "victim": victim_run()}
        )
        runs.append(alone.model_dump(mode="json"))
        for kind in spec.kinds:
            errors = _aggressors_around(backend, aggressors, kind, duration, clock, victim_run)
            runs.append(
                NeighbourRun.model_validate(
                    {
                        "aggressor": kind,
                        "aggressors": len(aggressors),
                        "victim": errors[0],
                        "aggressor_errors": errors[1],
                    }
                ).model_dump(mode="json")
            )
        return {"neighbours": runs}
