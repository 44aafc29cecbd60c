"""A real VM boot, under TCG, split into phases from the host's side (bench.model.phases).

One step per VM backend through the runner with the real backends: the direct-QEMU
microvm and a libvirt PC. Each records every instant its phases need, in order, and
the phases explain at least 90 % of its time to ready (the rest unattributed).
run_real removes whatever a run left, also when the test fails.
"""

from __future__ import annotations

import pytest

from bench.model.phases import phases
from tests.integration.bench_runs import run_real

pytestmark = pytest.mark.qemu

SCENARIO = """\
name: phases
timeout: 150s
counts: [1]
settle: 0s
warmup: 0
platforms:
  - %s
"""
QEMU = "{name: microvm, backend: qemu, image: busybox, accel: tcg, memory: 192MiB}"
LIBVIRT = "{name: vm, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}"


def check_phases(s: dict, expected: list[str], setup_line: bool = True) -> None:
    assert s["ok"], (s["error"], s["console_tail"])
    ready = s["ready_s"]
    # The instants, on bench's clock from the launch call, in the order they happen; a
    # bzImage's setup code prints its line, a kernel entered by PVH has none.
    order = ["create_s", "start_s", "setup_start_s", "kernel_start_s", "init_start_s", "ready_s"]
    if not setup_line:
        assert s["setup_start_s"] is None
        order.remove("setup_start_s")
    values = [s[k] for k in order]
    assert all(v is not None for v in values), dict(zip(order, values, strict=True))
    assert values == sorted(values), dict(zip(order, values, strict=True))
    # The kernel's boot log reached the console: its first line came after the start call.
    assert s["console_lines"] > 50
    assert s["first_output_s"] <= s["kernel_start_s"]
    # The guest's own clock beside the host's: printk time at init, uptime at the marker.
    assert 0 < s["guest_init_s"] <= s["guest_uptime_s"] < ready
    ps, rest = phases(s)
    assert [p.name for p in ps] == expected
    assert sum(p.seconds for p in ps) + rest == pytest.approx(ready)
    assert rest <= 0.10 * ready, (rest, ready)
    print(
        f"{s['platform']}: ready_s {ready:.2f} = "
        + " + ".join(f"{p.name} {p.seconds:.2f}" for p in ps)
        + f" + unattributed {rest:.2f}; guest: init at {s['guest_init_s']:.2f}, "
        f"uptime {s['guest_uptime_s']:.2f}"
    )


def test_qemu_microvm_boot_is_explained_by_phases(qemu_binary):
    """microvm enters the kernel by PVH (no firmware, no decompressor), as Firecracker."""
    sink, engines, left = run_real(SCENARIO % QEMU)
    assert left == []
    (s,) = sink.samples
    assert engines["microvm"]["kernel_entry"] == "pvh"
    names = ["vmm_start", "create", "start", "firmware_decompression", "kernel", "userspace"]
    check_phases(s, names, setup_line=False)
    # QEMU answered QMP within the create call.
    assert 0 < s["vmm_ready_s"] <= s["create_s"]


def test_qemu_microvm_bzimage_boot_is_explained_by_phases(qemu_binary):
    """With pvh: false the bzImage goes through qboot and its own decompressor."""
    sink, engines, left = run_real(SCENARIO % QEMU.replace("}", ", pvh: false}"))
    assert left == []
    (s,) = sink.samples
    assert engines["microvm"]["kernel_entry"] == "bzimage"
    names = ["vmm_start", "create", "start", "firmware", "decompression", "kernel", "userspace"]
    check_phases(s, names)


def test_libvirt_pc_boot_is_explained_by_phases(libvirt_conn):
    sink, _engines, left = run_real(SCENARIO % LIBVIRT)
    assert left == []
    (s,) = sink.samples
    # libvirt's createXML starts the VMM inside one call: no instant of its own.
    assert s["vmm_ready_s"] is None
    check_phases(s, ["create", "start", "firmware", "decompression", "kernel", "userspace"])
