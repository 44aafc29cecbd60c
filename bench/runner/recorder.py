"""Recorder: the only writer of a run's results.

A sample and a step record are each built by one function here (`sample_row`,
`step_row`) as the typed records of bench.model.records: a field the model does not declare
cannot be written, and a backend's facts land in `extras`, never on a core field. They
stay records up to the sink (`Sink`: the run's RunWriter, or a test's), which stores
their dumps; everything the runner writes to the sink goes through `Recorder`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from pydantic import BaseModel

from bench.backends.base import Backend
from bench.model import kinds, phases
from bench.model.records import (
    AbPairs,
    Facts,
    Sample,
    StepRecord,
    Warmup,
    WarmupPlatform,
    backend_facts,
    split_extras,
)
from bench.plan.scenario import Step
from bench.runner import readiness
from bench.runner.executor import Launch, LaunchedStep
from bench.runner.policy import Refusal


class Sink(Protocol):
    """Where a run's records go: bench.model.results.RunWriter, or a test's memory sink."""

    def add_samples(self, samples: Sequence[Sample]) -> None: ...
    def add_step(self, step: StepRecord) -> None: ...
    def update(self, **fields: BaseModel | list[RampTeardown]) -> None:
        """Metadata parts the run adds as it goes (warmup, ab, ramp_teardowns)."""


class StepHead(TypedDict):
    """The keys a step's record and each of its samples share."""

    run_id: str
    step: int
    platform: str
    backend: str
    kind: str
    host: str
    n: int
    repeat: int


class RampTeardown(BaseModel):
    """A ramp's one teardown of all its levels, in metadata.json's `ramp_teardowns`."""

    platform: str
    repeat: int
    after_step: int | None
    instances: int
    teardown_s: float
    destroy_failures: int


def step_head(run_id: str, step: Step, index: int, backend: Backend) -> StepHead:
    return StepHead(
        run_id=run_id,
        step=index,
        platform=step.platform.name,
        backend=step.platform.backend,
        kind=backend.kind,
        # The machine the instances ran on (metadata's "hosts" has its facts).
        host=backend.host.key,
        n=step.n,
        repeat=step.repeat,
    )


def sample_row(
    head: StepHead,
    i: int,
    launch: Launch,
    step_start: float,
    timeout: float,
    wait_end: float | None,
    unfinished: str | None = None,
) -> Sample:
    """One instance's sample: its times from its own launch call, and why it failed."""
    inst, console = launch.inst, launch.inst.console
    t0 = launch.launch_at

    def rel(t: float | None) -> float | None:
        return None if t is None or t0 is None else t - t0

    # A marker that arrives after the deadline (while the step tore down) is late:
    # the instance did not become ready within the timeout.
    in_time = console.ready_at is not None and t0 is not None and console.ready_at - t0 <= timeout
    ok = launch.error is None and in_time
    # A console that closed after its deadline, or once the wait was over, was
    # closed by bench's own teardown: the instance did not exit by itself.
    exited = (
        console.closed_at is not None
        and t0 is not None
        and console.closed_at <= t0 + timeout
        and (wait_end is None or console.closed_at <= wait_end)
    )
    error, failure = launch.error, "launch" if launch.error else None
    if error is None and not in_time:
        if t0 is None:
            error, failure = "never launched", "launch"
        elif unfinished:
            error, failure = unfinished, "interrupted"
        elif console.failed_reason is not None:
            error, failure = console.failed_reason, "probe"
        elif exited:
            error, failure = readiness.not_ready_reason(console, timeout, exited=True), "exited"
        else:
            error = readiness.not_ready_reason(console, timeout, exited=False)
            failure = "timeout"
    guest_uptime = _float(console.fields.get("uptime"))
    return Sample(
        **head,
        index=i,
        name=inst.name,
        ok=ok,
        failure=failure,
        error=error,
        queued_s=rel_to(t0, step_start),
        create_s=rel(launch.created_at),
        start_s=rel(launch.started_at),
        ready_s=rel(console.ready_at),
        ready_at_s=rel_to(console.ready_at, step_start),
        # A container's init reads the host's uptime (shared kernel): only a guest with
        # its own kernel (a VM's, gVisor's) reports its own (the raw value stays in
        # marker_fields).
        guest_uptime_s=guest_uptime if kinds.own_kernel(head["kind"]) else None,
        guest_kernel=console.fields.get("kernel"),
        marker_fields=console.fields,
        ready_kind=console.kind,
        exit_code=console.exit_code,
        ready_probes=console.probes or None,
        ready_window_s=console.probe_window_s,
        console_tail=None if ok else console.tail(),
        **phases.console_fields(list(console.lines), console.first_byte_at, console.instants, t0),
        # What the backend and the measurer found: declared fields or extras.
        **backend_facts(inst.info),
    )


def step_row(
    head: StepHead,
    status: str,
    *,
    samples: Sequence[Sample] = (),
    wait_s: float | None = None,
    teardown_s: float | None = None,
    destroy_failures: int = 0,
    measured: Facts | None = None,
    refusal: Refusal | None = None,
) -> StepRecord:
    """A step's record: "ran", "interrupted" (what was measured so far) or "refused"."""
    # Host readings the record does not declare (a new /sys fact) are kept as extras.
    facts = split_extras(StepRecord, measured or {})
    if status == "refused":
        assert refusal is not None
        return StepRecord(
            **head,
            status="refused",
            limit="memory_reserve",
            limit_detail=refusal.detail,
            predicted_bytes=refusal.predicted_bytes,
            mem_available_before_bytes=refusal.mem_available_bytes,
            memory_reserve_bytes=refusal.reserve_bytes,
        )
    if status == "interrupted":
        return StepRecord.model_validate({**facts, **head, "status": "interrupted"})
    # The instances the step launched: all N, or a ramp level's new ones (its samples).
    launched = len(samples)
    ready = [s for s in samples if s.ok]
    all_ready = (
        max(s.ready_at_s or 0.0 for s in samples) if ready and len(ready) == launched else None
    )
    return StepRecord.model_validate(
        {
            **facts,
            **head,
            "status": status,
            "failures": len(samples) - len(ready),
            "all_ready_s": all_ready,
            "launch_rate_per_s": launched / all_ready if all_ready else None,
            "added": launched,
            "wait_s": wait_s,
            "teardown_s": teardown_s,
            "destroy_failures": destroy_failures,
        }
    )


@dataclass
class Recorder:
    """Writes samples and step records to the run's sink, and nothing else does."""

    sink: Sink
    warmups: dict[str, WarmupPlatform] = field(default_factory=dict)
    # One recorder serves every host's runner (bench.runner.lanes): warm-ups of two
    # hosts must not overwrite each other's metadata.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    ramp_teardowns: list[RampTeardown] = field(default_factory=list)

    def warmup(self, instances: int, platform: str, ready_s: list[float | None]) -> None:
        """What a platform's warm-up saw, in the run's metadata (never as samples)."""
        with self._lock:
            self.warmups[platform] = WarmupPlatform(
                ready=sum(1 for x in ready_s if x is not None), ready_s=ready_s
            )
            self.sink.update(warmup=Warmup(instances=instances, platforms=dict(self.warmups)))

    def ramp_teardown(self, entry: RampTeardown) -> None:
        """A ramp's one teardown of all its levels (its levels' records have none)."""
        with self._lock:
            self.ramp_teardowns.append(entry)
            self.sink.update(ramp_teardowns=list(self.ramp_teardowns))

    def ab_pairs(self, baseline: str, candidate: str, pairs: list[list[int]]) -> None:
        """The A/B pairs finished so far: kept after each pair, so an interrupted run
        can still be analysed."""
        self.sink.update(
            ab=AbPairs(baseline=baseline, candidate=candidate, pairs=[list(p) for p in pairs])
        )

    def step(self, samples: Sequence[Sample], record: StepRecord) -> None:
        self.sink.add_samples(samples)
        self.sink.add_step(record)

    def refused(self, head: StepHead, refusal: Refusal) -> StepRecord:
        record = step_row(head, "refused", refusal=refusal)
        self.sink.add_step(record)
        return record

    def interrupted(
        self,
        head: StepHead,
        step: LaunchedStep,
        timeout: float,
        wait_end: float | None,
        measured: Facts,
    ) -> None:
        """What an interrupted step got to: a sample per launched instance."""
        self.step(
            [
                sample_row(head, i, x, step.start, timeout, wait_end, "run interrupted")
                for i, x in enumerate(step.launches)
                if x.launch_at is not None
            ],
            step_row(head, "interrupted", measured=measured),
        )


def rel_to(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None
