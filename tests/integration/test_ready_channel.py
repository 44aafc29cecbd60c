"""ready: {channel: debugcon} on the real QEMU, under TCG: one microvm guest with no
kernel console on its UART (`console: false`, 8250.nr_uarts=0) is ready by the byte its
init writes to the debug port 0xe9, the only way it can be: nothing reaches the serial
console but the setup code's one line. Whatever the run leaves is removed in a
`finally` (run_real removes the run's leftovers; qemu_remaining must then be empty).
"""

from __future__ import annotations

import pytest

from tests.integration.bench_runs import run_real
from tests.integration.test_qemu_backend import qemu_remaining

pytestmark = pytest.mark.qemu

PORT_ONLY = """\
name: ready-port
timeout: 150s
counts: [1]
settle: 0s
warmup: 0
platforms:
  - name: vm
    backend: qemu
    machine: microvm
    image: busybox
    accel: tcg
    memory: 192MiB
    console: false
    ready: {channel: debugcon}
"""


def test_a_microvm_without_a_uart_console_is_ready_by_its_debug_port(qemu_binary):
    sink, engines, left = run_real(PORT_ONLY)
    assert left == []
    (s,) = sink.samples
    assert qemu_remaining(s["run_id"]) == []
    assert s["ok"], (s["error"], s["console_tail"])
    assert 0 < s["create_s"] <= s["start_s"] < s["ready_s"] < 150
    # No kernel line reached the console, so no marker either: readiness came by the port.
    assert s["kernel_start_s"] is None and s["init_start_s"] is None
    assert s["marker_fields"] == {} and s["guest_uptime_s"] is None
    # What the guest was told, and the device QEMU had.
    cmdline = engines["vm"]["cmdline"].split()
    assert "8250.nr_uarts=0" in cmdline and "bench_ready=debugcon" in cmdline
    assert not any(w.startswith(("console=ttyS", "earlyprintk=")) for w in cmdline)
    assert s["extras"]["boundary"]["devices"]["isa-debugcon"] == 1
    print(f"{s['name']}: ready_s {s['ready_s']:.2f} by the debug port, no UART console")
