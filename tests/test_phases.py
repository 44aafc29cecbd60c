"""The phase arithmetic of bench.model.phases and the console's timed lines it reads."""

import pytest

from bench.machines.console import MAX_TIMED_LINES, Console
from bench.model.phases import (
    UNATTRIBUTED,
    boot_lines,
    console_fields,
    guest_vs_host,
    phases,
)
from bench.model.records import Sample
from tests.helpers import run_fake

VM_SAMPLE = {
    "platform": "vm",
    "n": 1,
    "kind": "microvm",
    "vmm_ready_s": 0.05,
    "create_s": 0.08,
    "start_s": 0.10,
    "setup_start_s": 0.20,
    "kernel_start_s": 4.60,
    "init_start_s": 6.50,
    "ready_s": 6.56,
}


def by_name(ps):
    return {p.name: p.seconds for p in ps}


def test_vm_phases_are_differences_of_instants_and_add_up_to_ready():
    ps, rest = phases(VM_SAMPLE)
    names = ["vmm_start", "create", "start", "firmware", "decompression", "kernel", "userspace"]
    assert [p.name for p in ps] == names
    got = by_name(ps)
    assert got == pytest.approx(
        {
            "vmm_start": 0.05,
            "create": 0.03,
            "start": 0.02,
            "firmware": 0.10,
            "decompression": 4.40,
            "kernel": 1.90,
            "userspace": 0.06,
        }
    )
    assert rest == pytest.approx(0.0, abs=1e-9)
    # Each phase starts where the one before it ended.
    for a, b in zip(ps, ps[1:], strict=False):
        assert a.end_s == b.start_s


def test_without_the_setup_line_firmware_and_decompression_are_one_phase():
    ps, rest = phases({**VM_SAMPLE, "setup_start_s": None})
    names = ["vmm_start", "create", "start", "firmware_decompression", "kernel", "userspace"]
    assert [p.name for p in ps] == names
    assert by_name(ps)["firmware_decompression"] == pytest.approx(4.50)
    assert rest == pytest.approx(0.0, abs=1e-9)


def test_a_missing_boundary_leaves_its_time_unattributed():
    # A guest whose kernel printed nothing (quiet): no kernel line, no init line.
    quiet = {**VM_SAMPLE, "setup_start_s": None, "kernel_start_s": None, "init_start_s": None}
    ps, rest = phases(quiet)
    assert [p.name for p in ps] == ["vmm_start", "create", "start"]
    assert rest == pytest.approx(6.56 - 0.10)
    # Only the init line seen: the kernel's first line missing takes firmware and
    # kernel init with it; userspace is still known.
    ps, rest = phases({**VM_SAMPLE, "setup_start_s": None, "kernel_start_s": None})
    assert by_name(ps)["userspace"] == pytest.approx(0.06)
    assert rest == pytest.approx(6.50 - 0.10)
    # The setup line without the kernel's first line: firmware known, the rest not.
    ps, rest = phases({**VM_SAMPLE, "kernel_start_s": None})
    assert by_name(ps)["firmware"] == pytest.approx(0.10)
    assert rest == pytest.approx(6.50 - 0.20)


def test_libvirt_has_no_vmm_instant_so_create_starts_at_the_launch():
    ps, rest = phases({**VM_SAMPLE, "vmm_ready_s": None})
    assert by_name(ps)["create"] == pytest.approx(0.08)
    assert "vmm_start" not in by_name(ps)
    assert rest == pytest.approx(0.0, abs=1e-9)


def test_instants_out_of_order_are_never_shown_as_a_phase():
    # An init line before the kernel's first line (a parsing fault): no negative phase.
    ps, rest = phases({**VM_SAMPLE, "init_start_s": 3.0})
    assert all(p.seconds >= 0 for p in ps)
    assert sum(p.seconds for p in ps) + rest == pytest.approx(6.56)
    assert "kernel" not in by_name(ps)


def test_container_phases_and_no_ready():
    s = {"platform": "c", "n": 1, "kind": "container", "create_s": 0.2, "start_s": 0.5}
    s |= {"first_output_s": 0.9, "ready_s": 0.9}
    ps, rest = phases(s)
    assert by_name(ps) == pytest.approx(
        {"create": 0.2, "start": 0.3, "first_output": 0.4, "marker": 0.0}
    )
    assert rest == pytest.approx(0.0, abs=1e-9)
    assert phases({"platform": "c", "n": 1, "ready_s": None}) == ([], None)
    # A pandas hole (NaN) is a missing value, not a number.
    ps, rest = phases({**s, "first_output_s": float("nan")})
    assert rest == pytest.approx(0.4)


def test_older_samples_load_without_the_new_fields():
    old = Sample.model_validate({"platform": "vm", "n": 1, "ready_s": 7.0, "kind": "vm"})
    assert old.kernel_start_s is None and old.console_lines is None
    ps, rest = phases(old.model_dump())
    assert ps == [] and rest == pytest.approx(7.0)
    assert UNATTRIBUTED == "unattributed"


def test_boot_lines_kernel_start_init_and_printk_time():
    lines = [
        (0.04, "Probing EDD (edd=off to disable)... ok"),
        (4.61, "[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)"),
        (5.00, "[    0.400000] Linux version in a later line is not the start"),
        (6.50, "[    1.402565] Run /init as init process"),
        (6.56, "BENCH_READY uptime=1.44 kernel=6.1.0-57-amd64"),
    ]
    b = boot_lines(lines)
    assert (b.kernel_start_at, b.init_start_at, b.guest_init_s) == (4.61, 6.50, 1.402565)
    assert b.setup_start_at == 0.04
    # microvm's firmware echoes each character of the setup code's line.
    twice = [(0.05, "PPrroobbiinngg  EEDDDD  ((eedddd==ooffff  ttoo  ddiissaabbllee))......  ookk")]
    assert boot_lines(twice).setup_start_at == 0.05
    # A kernel printing without printk times; and a console with no kernel at all.
    assert boot_lines([(1.0, "Run /sbin/init as init process")]).guest_init_s is None
    assert boot_lines([(0.5, "hello")]).kernel_start_at is None


def test_console_times_each_line_from_its_first_byte():
    t = iter([1.0, 2.0, 3.0, 4.0])
    c = Console("BENCH_READY", clock=lambda: next(t))
    c.feed(b"[ 0.0] Linux version 6")  # a line whose first byte came at 1.0...
    c.feed(b".1\nsecond\nthi")  # ...ends at 2.0; "second" arrived whole at 2.0
    c.feed(b"rd\n")
    c.feed(b"BENCH_READY uptime=1\nafter the marker\n")
    assert c.first_byte_at == 1.0
    assert c.lines == [
        (1.0, "[ 0.0] Linux version 6.1"),
        (2.0, "second"),
        (2.0, "third"),
        (4.0, "BENCH_READY uptime=1"),
    ]
    assert c.ready_at == 4.0


def test_console_timed_lines_are_bounded():
    c = Console("BENCH_READY")
    c.feed(b"x\n" * (MAX_TIMED_LINES + 100))
    assert len(c.lines) == MAX_TIMED_LINES


def test_console_fields_are_relative_to_the_launch():
    t = iter([10.0, 11.0, 14.0, 16.5, 16.6])
    c = Console("BENCH_READY", clock=lambda: next(t))
    c.note("vmm_ready")
    c.feed(b"Probing EDD\n")
    c.feed(b"[    0.000000] Linux version 6.1\n")
    c.feed(b"[    2.400000] Run /init as init process\n")
    c.feed(b"BENCH_READY uptime=2.5\n")
    f = console_fields(c.lines, c.first_byte_at, c.instants, 9.5)
    assert f == pytest.approx(
        {
            "vmm_ready_s": 0.5,
            "first_output_s": 1.5,
            "setup_start_s": 1.5,
            "kernel_start_s": 4.5,
            "init_start_s": 7.0,
            "guest_init_s": 2.4,
            "console_lines": 4,
        }
    )
    assert console_fields([], None, {}, None)["kernel_start_s"] is None


FAKE_VM = """
name: phases
counts: [2]
settle: 0s
warmup: 0
platforms:
  - {name: vm, backend: fake, kind: microvm, boot: 4s, uptime: 2s, create_delay: 0.2s,
     kernel_log: true}
  - {name: c, backend: fake, boot: 1s}
"""


def test_fake_runs_record_the_phases_through_the_runner():
    _results, sink, _ = run_fake(FAKE_VM)
    vms = [s for s in sink.samples if s["platform"] == "vm"]
    assert len(vms) == 2
    for s in vms:
        assert s["ok"]
        ps, rest = phases(s)
        got = by_name(ps)
        # The fake's clock is exact: create 0.2 s (VMM halfway), boot 4 s from start,
        # its setup line at 10 % of it, its first line at 30 %, init at 90 %.
        assert got["vmm_start"] == pytest.approx(0.1)
        assert got["create"] == pytest.approx(0.1)
        assert got["firmware"] == pytest.approx(0.4)
        assert got["decompression"] == pytest.approx(0.8)
        assert got["kernel"] == pytest.approx(2.4)
        assert got["userspace"] == pytest.approx(0.4)
        assert rest == pytest.approx(0.0, abs=1e-6)
        assert s["guest_init_s"] == pytest.approx(1.8)
        assert s["console_lines"] == 5
    for s in (s for s in sink.samples if s["platform"] == "c"):
        ps, rest = phases(s)
        assert [p.name for p in ps] == ["create", "start", "first_output", "marker"]
        assert sum(p.seconds for p in ps) + rest == pytest.approx(s["ready_s"])


def test_guest_clock_beside_the_hosts():
    s = {**VM_SAMPLE, "guest_init_s": 1.4, "guest_uptime_s": 1.45}
    checks = {c.name: c for c in guest_vs_host(s)}
    assert checks["kernel start to init"].host_s == pytest.approx(1.90)
    assert checks["kernel start to init"].gap_s == pytest.approx(0.50)
    assert checks["kernel start to marker"].gap_s == pytest.approx(1.96 - 1.45)
    # No kernel line: nothing to compare the guest's clock with.
    assert guest_vs_host({**s, "kernel_start_s": None}) == []


def test_the_columns_follow_the_same_rule_as_one_sample():
    """phase_columns (the report's plot, a million samples at once) and phases (one
    sample) agree on every phase and the unattributed rest, over random instants:
    missing, out of order, beyond ready, for VMs and containers."""
    import math
    import random

    import numpy as np

    from bench.model.phases import phase_columns

    rng = random.Random(7)
    fields = [
        "vmm_ready_s", "create_s", "start_s", "setup_start_s", "kernel_start_s",
        "init_start_s", "first_output_s", "ready_s",
    ]  # fmt: skip
    samples = []
    for _ in range(400):
        s = {"kind": rng.choice(["vm", "microvm", "container", "sandbox"])}
        t = 0.0
        for f in fields:
            t += rng.uniform(-0.3, 1.0)  # now and then out of order
            s[f] = None if rng.random() < 0.2 else round(t, 3)
        samples.append(s)

    def column(name):
        return np.array([np.nan if s.get(name) is None else s[name] for s in samples])

    vm = np.array([s["kind"] in ("vm", "microvm") for s in samples])
    found = phase_columns(column, vm)
    cols, rest = found.seconds, found.unattributed
    for i, s in enumerate(samples):
        kept, unattributed = phases(s)
        if unattributed is None:
            assert math.isnan(rest[i])
            continue
        assert rest[i] == pytest.approx(unattributed)
        got = {k: v[i] for k, v in cols.items() if not math.isnan(v[i])}
        assert got == pytest.approx({p.name: p.seconds for p in kept}), s


def test_a_container_ready_before_its_start_call_returned_spends_it_in_that_call():
    # docker's attach often delivers the marker before the start call returns.
    s = {"kind": "container", "create_s": 0.02, "start_s": 0.12, "ready_s": 0.09}
    kept, rest = phases(s)
    assert [(p.name, round(p.seconds, 3)) for p in kept] == [("create", 0.02), ("start", 0.07)]
    assert rest == pytest.approx(0.0)


def test_engine_events_split_container_calls_and_add_up():
    from bench.measurements.engine_events import offsets

    got = offsets({"create": 1_000_020_000_000, "start": 1_000_110_000_000}, 1_000_000_000_000)
    assert got == {"engine_create_s": 0.02, "engine_start_s": 0.11}
    assert offsets({"start": 5}, None) == {}  # no launch wall instant: nothing placed
    s = {"kind": "container", "create_s": 0.03, "start_s": 0.12, "first_output_s": 0.125}
    s |= {"ready_s": 0.13, **got}
    ps, rest = phases(s)
    names = [p.name for p in ps]
    assert names == [
        "create_engine",
        "create_return",
        "start_engine",
        "start_return",
        "first_output",
        "marker",
    ]
    assert sum(p.seconds for p in ps) + rest == pytest.approx(0.13)
    # Without the start event the whole start call is kept.
    ps, _ = phases({**s, "engine_start_s": None})
    assert [p.name for p in ps][2] == "start"


def test_first_events_keeps_each_containers_first_event_of_each_kind():
    from bench.backends.oci import first_events

    def ev(name: str, action: str, at: int, kind: str = "container") -> dict:
        return {
            "Type": kind,
            "Action": action,
            "timeNano": at,
            "Actor": {"Attributes": {"name": name}},
        }

    rows = [ev("a", "create", 1), ev("a", "start", 3), ev("a", "start", 9), ev("b", "create", 2)]
    rows += [ev("other", "create", 4), ev("a", "create", 5, kind="network")]
    assert first_events(rows, {"a", "b"}) == {"a": {"create": 1, "start": 3}, "b": {"create": 2}}
