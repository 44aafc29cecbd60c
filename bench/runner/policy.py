"""Step policy: which steps a platform runs, the memory guard, limits and stop rules.

Pure: plain data in, decisions out. No threads, no engines, no clock; the runner
asks it before and after each step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bench.model.records import Sample, StepRecord
from bench.model.stats import percentile
from bench.plan.scenario import PlatformBase, Scenario

# Measured memory per instance is scaled by this before predicting a larger step:
# instances of a bigger step cost a little more each (page tables, engine bookkeeping).
GUARD_MARGIN = 1.25
# First step of a platform with no memory setting: a guess, replaced by measurement.
DEFAULT_INSTANCE_ESTIMATE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Refusal:
    """A step the guard will not start: it would push MemAvailable below the reserve."""

    detail: str
    predicted_bytes: int
    mem_available_bytes: int
    reserve_bytes: int


def ab_order(counts: Sequence[int], repeat: int) -> list[tuple[int, int, bool]]:
    """The pairs of an A/B run: (N, repeat, baseline first?) in the order they run.

    Every repeat goes through every N, so N values are spread evenly through the run.
    Each N's pairs run AB, BA, BA, AB (then again), whatever the number of N values:
    a drift that is linear in time adds as much to A as to B within every 4 repeats.
    Neighbouring N values of a repeat alternate, so the run as a whole alternates too.
    """
    return [
        (n, r, (r % 4 in (0, 3)) != (j % 2 == 1))
        for r in range(repeat)
        for j, n in enumerate(counts)
    ]


def guard(
    n: int,
    available_bytes: int,
    reserve_bytes: int,
    configured_bytes: int | None,
    measured: Sequence[tuple[int, float]],
) -> Refusal | None:
    """Refuse a step of n instances predicted to leave less than the reserve.

    `measured` holds (N, host drop per instance) of the platform's steps so far. The
    prediction scales the drop of the largest step measured: small steps are
    dominated by noise (a few MiB of page cache either way).
    """
    if measured:
        largest = max(m for m, _ in measured)
        drop = [d for m, d in measured if m == largest][-1]
        estimate = int(drop * GUARD_MARGIN)
        basis = f"{drop / 2**20:.0f} MiB measured at N={largest}, x{GUARD_MARGIN:g}"
    else:
        estimate = configured_bytes or DEFAULT_INSTANCE_ESTIMATE_BYTES
        basis = "configured memory" if configured_bytes else "default guess"
    predicted = estimate * n
    if available_bytes - predicted >= reserve_bytes:
        return None
    detail = (
        f"N={n} needs ~{predicted / 2**20:.0f} MiB ({estimate / 2**20:.0f} MiB each: "
        f"{basis}) but only {(available_bytes - reserve_bytes) / 2**20:.0f} MiB is available "
        f"above the {reserve_bytes / 2**20:.0f} MiB reserve"
    )
    return Refusal(detail, predicted, available_bytes, reserve_bytes)


def step_limit(
    samples: Sequence[Sample],
    n: int,
    slo_ready_p95_s: float | None,
    mem_available_after_bytes: int | None,
    reserve_bytes: int,
) -> tuple[str | None, str | None]:
    """The first density limit a finished step broke, and why: (None, None) if none.

    In this order: an instance failed (or timed out), the ready p95 SLO, the reserve.
    """
    failed = [s for s in samples if not s.ok]
    if failed:
        errors = sorted({s.error or "" for s in failed})
        limit = "timeout" if all(s.failure == "timeout" for s in failed) else "failure"
        # Of the instances the step launched (a ramp level's new ones, not all N).
        return limit, f"{len(failed)} of {len(samples)} not ready: {errors[0]}"
    if slo_ready_p95_s is not None:
        p95 = percentile([s.ready_s for s in samples if s.ready_s is not None], 95)
        if p95 is not None and p95 > slo_ready_p95_s:
            return "slo", f"ready p95 {p95:.3f}s > SLO {slo_ready_p95_s:g}s"
    after = mem_available_after_bytes
    if after is not None and after < reserve_bytes:
        return "memory_reserve", (
            f"MemAvailable fell to {after / 2**20:.0f} MiB, below the "
            f"{reserve_bytes / 2**20:.0f} MiB reserve"
        )
    return None, None


@dataclass
class PlatformPolicy:
    """One platform's steps: each count `repeat` times, until a step is refused or
    breaks a density limit (a search is over, and fixed counts after a refused N
    would need as much memory or more: counts usually grow)."""

    counts: list[int]
    repeat: int
    reserve_bytes: int
    configured_bytes: int | None = None
    searching: bool = False
    slo_ready_p95_s: float | None = None
    on_failure: str = "continue"
    #: A ramp search (density `mode: ramp`): each level adds to the previous one's instances.
    ramp: bool = False
    #: (N, measured host drop per instance) of this platform's steps so far.
    measured: list[tuple[int, float]] = field(default_factory=list)
    ended: bool = False

    @classmethod
    def of(cls, scenario: Scenario, platform: PlatformBase) -> PlatformPolicy:
        search = scenario.search_for(platform)
        return cls(
            counts=scenario.counts_for(platform),
            repeat=scenario.repeat,
            reserve_bytes=scenario.reserve_for(platform),
            configured_bytes=platform.memory,
            searching=search is not None,
            slo_ready_p95_s=search.slo.ready_p95 if search is not None else None,
            on_failure=scenario.on_failure,
            ramp=search is not None and search.mode == "ramp",
        )

    def steps(self) -> Iterator[tuple[int, int]]:
        """(N, repeat) in order, lazily: a refusal or a limit ends the sequence."""
        for n in self.counts:
            for r in range(self.repeat):
                if self.ended:
                    return
                yield n, r

    def ramp_steps(self) -> Iterator[tuple[int, int]]:
        """A ramp's (N, repeat): every N of one repeat in a row (its instances stay up
        from one N to the next), then the next repeat from zero."""
        for r in range(self.repeat):
            for n in self.counts:
                if self.ended:
                    return
                yield n, r

    def would_refuse(self, n: int, available_bytes: int) -> bool:
        """The guard's answer for n instances, without ending the platform's steps."""
        measured = self.measured
        return (
            guard(n, available_bytes, self.reserve_bytes, self.configured_bytes, measured)
            is not None
        )

    def guard(self, n: int, available_bytes: int) -> Refusal | None:
        refusal = guard(
            n, available_bytes, self.reserve_bytes, self.configured_bytes, self.measured
        )
        if refusal is not None:
            self.ended = True
        return refusal

    def judge(
        self, n: int, samples: Sequence[Sample], record: StepRecord
    ) -> tuple[str | None, str | None] | None:
        """After a step: remember its host drop for the guard; its density limit.

        None when the platform runs fixed counts (no limits are judged then).
        """
        drop = record.host_drop_per_instance_bytes
        if drop is not None and drop > 0:
            self.measured.append((n, drop))
        if not self.searching:
            return None
        limit = step_limit(
            samples,
            n,
            self.slo_ready_p95_s,
            record.mem_available_after_bytes,
            self.reserve_bytes,
        )
        if limit[0] is not None:
            self.ended = True
        return limit

    def stops_run(self, failures: int) -> bool:
        """`on_failure: stop`: a step with a failed instance ends the whole run."""
        return failures > 0 and self.on_failure == "stop"
