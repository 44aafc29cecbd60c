"""The step policy on plain data: no threads, no engines, no clock."""

import pytest

from bench.model.records import Sample, StepRecord
from bench.plan.scenario import parse_scenario
from bench.runner.policy import (
    DEFAULT_INSTANCE_ESTIMATE_BYTES,
    GUARD_MARGIN,
    PlatformPolicy,
    guard,
    step_limit,
)

MiB, GiB = 2**20, 2**30


def ok(ready_s):
    return Sample(platform="p", n=1, ok=True, ready_s=ready_s)


def bad(failure, error):
    return Sample(platform="p", n=1, ok=False, failure=failure, error=error)


def record(**fields):
    return StepRecord(platform="p", n=1, **fields)


# -- the guard ------------------------------------------------------------------------


def test_guard_first_step_uses_configured_memory_then_default_guess():
    # 1 GiB free above a 1 GiB reserve: 4 x 256 MiB fits exactly, 5 do not.
    assert guard(4, 2 * GiB, GiB, 256 * MiB, []) is None
    r = guard(5, 2 * GiB, GiB, 256 * MiB, [])
    assert r is not None and r.predicted_bytes == 5 * 256 * MiB
    assert (r.mem_available_bytes, r.reserve_bytes) == (2 * GiB, GiB)
    assert "(256 MiB each: configured memory)" in r.detail
    r = guard(100, 2 * GiB, GiB, None, [])
    assert r.predicted_bytes == 100 * DEFAULT_INSTANCE_ESTIMATE_BYTES
    assert "default guess" in r.detail


def test_guard_scales_the_largest_measured_step_by_the_margin():
    # Small steps are noise: the largest N decides, its last measurement wins.
    measured = [(1, 500 * MiB), (4, 90 * MiB), (4, 100 * MiB), (2, 10 * MiB)]
    estimate = int(100 * MiB * GUARD_MARGIN)
    n_fits = GiB // estimate  # 8 at 125 MiB each
    assert guard(n_fits, 2 * GiB, GiB, 4 * GiB, measured) is None
    r = guard(n_fits + 1, 2 * GiB, GiB, 4 * GiB, measured)
    assert r.predicted_bytes == (n_fits + 1) * estimate
    assert "100 MiB measured at N=4, x1.25" in r.detail
    assert f"N={n_fits + 1} needs ~{(n_fits + 1) * estimate / MiB:.0f} MiB" in r.detail
    assert "only 1024 MiB is available above the 1024 MiB reserve" in r.detail


# -- limits -----------------------------------------------------------------------------


def test_limit_order_failure_before_slo_before_memory_reserve():
    samples = [ok(5.0), bad("exited", "b crashed"), bad("timeout", "a timed out")]
    # Everything broken at once: a failure names the limit.
    limit, detail = step_limit(samples, 3, 1.0, 0, GiB)
    assert limit == "failure" and detail == "2 of 3 not ready: a timed out"
    # Only timeouts: the limit is "timeout".
    limit, _ = step_limit([ok(5.0), bad("timeout", "t")], 2, 1.0, 0, GiB)
    assert limit == "timeout"
    # All ready but slow, and memory low: the SLO comes first.
    limit, detail = step_limit([ok(0.1), ok(2.0)], 2, 1.0, 0, GiB)
    assert limit == "slo" and "> SLO 1s" in detail
    # Fast, but MemAvailable fell below the reserve.
    limit, detail = step_limit([ok(0.1), ok(0.2)], 2, 1.0, 512 * MiB, GiB)
    assert limit == "memory_reserve"
    assert detail == "MemAvailable fell to 512 MiB, below the 1024 MiB reserve"
    # None broken; no SLO set means only failures and memory count.
    assert step_limit([ok(0.1), ok(9.0)], 2, None, 2 * GiB, GiB) == (None, None)
    assert step_limit([ok(0.1)], 1, None, None, GiB) == (None, None)


# -- the platform's steps and stop rules ------------------------------------------------


def policy(text: str) -> PlatformPolicy:
    sc = parse_scenario(text)
    return PlatformPolicy.of(sc, sc.platforms[0])


def test_fixed_counts_with_repeats_and_no_limits():
    p = policy("name: t\ncounts: [1, 3]\nrepeat: 2\nplatforms:\n  - {name: f, backend: fake}\n")
    seen = []
    for n, r in p.steps():
        seen.append((n, r))
        # Fixed counts judge no limits, but remember the drop for the guard.
        assert p.judge(n, [bad("timeout", "t")], record(host_drop_per_instance_bytes=5.0)) is None
    assert seen == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert p.measured == [(1, 5.0), (1, 5.0), (3, 5.0), (3, 5.0)]


def test_a_limit_ends_the_density_search():
    p = policy(
        "name: t\nrepeat: 2\ndensity: {factor: 2, max: 16, slo: {ready_p95: 1s}}\n"
        "platforms:\n  - {name: f, backend: fake}\n"
    )
    seen, limits = [], []
    for n, r in p.steps():
        seen.append((n, r))
        ready = 2.0 if n == 4 else 0.1  # N=4 is too slow
        limits.append(p.judge(n, [ok(ready)] * n, record()))
    # The repeat of N=4 and every larger N are never started.
    assert seen == [(1, 0), (1, 1), (2, 0), (2, 1), (4, 0)]
    assert limits[:-1] == [(None, None)] * 4 and limits[-1][0] == "slo" and p.ended


def test_a_refusal_ends_the_platform_and_negative_drops_are_not_remembered():
    p = policy(
        "name: t\ncounts: [1, 2, 4]\nmemory_reserve: 1GiB\n"
        "platforms:\n  - {name: f, backend: fake, memory: 100MiB}\n"
    )
    seen = []
    for n, _ in p.steps():
        seen.append(n)
        if p.guard(n, GiB + 250 * MiB) is not None:
            continue
        # MemAvailable rose during the step: noise, not a measurement.
        p.judge(n, [ok(0.1)] * n, record(host_drop_per_instance_bytes=-3.0))
    assert seen == [1, 2, 4] and p.ended
    assert p.measured == []


def test_on_failure_stop_rule():
    text = "name: t\n{}platforms:\n  - {{name: f, backend: fake}}\n"
    assert policy(text.format("on_failure: stop\n")).stops_run(1)
    assert not policy(text.format("on_failure: stop\n")).stops_run(0)
    assert not policy(text.format("")).stops_run(3)


@pytest.mark.parametrize("counts", [[4], [1, 4], [1, 2, 4]])
def test_ab_order_is_abba_for_every_n_whatever_the_number_of_counts(counts):
    from bench.runner.policy import ab_order

    order = ab_order(counts, 8)
    assert [n for n, _, _ in order] == counts * 8  # every N in every repeat
    for n in counts:
        x = [a_first for m, _, a_first in order if m == n]
        # AB BA BA AB (or its mirror) per N: balanced within every 4 repeats.
        assert x == [x[0], not x[0], not x[0], x[0]] * 2
    overall = [a_first for _, _, a_first in order]
    assert overall.count(True) == overall.count(False) or len(counts) % 2
