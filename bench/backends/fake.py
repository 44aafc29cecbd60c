"""An in-process backend for unit tests of the runner's logic. It starts nothing:
each "instance" is a timer that prints the marker on its console after `boot`.
Never use it to measure anything.

Under `ready: {tcp: ...}` or `{http: ...}` each instance also holds a real socket on
127.0.0.1 (bound at create, so a probe is refused until then) that starts listening
at `boot` and answers HTTP GETs with `http_status`; under `ready: {exit: ...}` it
exits with `exit_status` at `boot`. So the runner's probes run for real against it.

Its timers and slow creates run on the clock it is given: give it the runner's
`FakeClock` and a test's times are exact and take no wall time.

It also shows the CLI's side of the backend boundary: `bench doctor`, `bench clean`
and `bench images build` reach it through the registry like any other backend, but
only while a test has plugged in a `FakeEngine` (so users never see it).
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from bench.backends.base import (
    Backend,
    Check,
    CliOption,
    ExecResult,
    Instance,
    Leftover,
    Options,
    option_text,
    print_nothing,
)
from bench.machines.clock import REAL_CLOCK, Clock, Timer
from bench.machines.console import CONSOLE, DEBUGCON
from bench.model.phases import VMM_READY
from bench.model.records import Facts
from bench.model.settings import NETWORK_READY, READY_KINDS, PlatformBase, Seconds

if TYPE_CHECKING:
    from bench.machines.host import Host


class FakeSettings(PlatformBase):
    ready_kinds: ClassVar[frozenset[str]] = frozenset(READY_KINDS)
    backend: Literal["fake"]
    image: str = "fake"
    boot: Seconds = 0.01
    # Instances whose index (within a step) is listed here never print the marker...
    silent: list[int] = Field(default_factory=list)
    # ...and these exit (console closed) right after start.
    crash: list[int] = Field(default_factory=list)
    fail_launch: list[int] = Field(default_factory=list)
    create_delay: Seconds = 0.0  # a slow create call, to see launches queue
    # Instances whose index (within a step) is listed here take `slow_create_delay`
    # more to create: one stalled engine call, for the phase-anomaly notes.
    slow_create: list[int] = Field(default_factory=list)
    slow_create_delay: Seconds = 2.0
    # The uptime its marker line reports, and the kind the runner records (bench.model.kinds):
    # test-only, to make the fake look like a VM whose guest booted in `uptime`.
    uptime: Seconds = 0.5
    kind: Literal["native", "container", "sandbox", "microvm", "vm"] = "container"
    # Extra boot time per instance already running: a crude model of contention.
    boot_per_instance: Seconds = 0.0
    # Every destroy call hangs this long, then fails: a wedged engine whose calls time
    # out (0: destroys succeed at once).
    hang_destroy: Seconds = 0.0
    # ready: {http: ...}: the status its server answers; ready: {exit: ...}: the status
    # it exits with at `boot` (a `crash` instance exits 1 at once).
    http_status: int = Field(200, ge=100, le=599)
    exit_status: int = Field(0, ge=0, le=255)
    # A fake VM's boot log: its VMM answers halfway through the create call, its kernel's
    # setup prints at 10% of `boot`, its first line at 30% and it runs init at 90%
    # (test-only, for the phase arithmetic of bench.model.phases).
    kernel_log: bool = False
    # Workloads (run_in): the rate a fake tool reports, in its own units, and what a
    # fake VM's accel is (tcg: its figures are emulated). Each call's rate moves by
    # +/- `work_spread` (a fixed cycle, so tests are exact).
    work_rate: float = 1000.0
    work_spread: float = 0.0
    # Accepted as docker's and native's (the *-volume workloads need it); its fio is a fake.
    volume: bool = False
    # Noisy neighbours: while an aggressor's stress-ng stressor (cpu, stream, vm, hdd,
    # fork) runs in another instance, a victim's rate is divided by 1 + the sum of the
    # running aggressors' factors (bench.measurements.neighbours).
    neighbour_slowdown: dict[str, float] = Field(default_factory=dict)
    accel: Literal["kvm", "tcg"] | None = None
    # ready: {channel: debugcon}: the fake writes its debug-port byte this long before
    # its marker line (test-only: the fake plays a VM's debug port too).
    port_lead: Seconds = 0.0

    ready_channels: ClassVar[frozenset[str]] = frozenset({CONSOLE, DEBUGCON})


@dataclass
class FakeEngine:
    """What the CLI hooks of the fake backend see and do, for tests to plant and read."""

    healthy: bool = True
    leftovers: list[Leftover] = field(default_factory=list)  # what `bench clean` finds
    calls: list[tuple[str, Options]] = field(default_factory=list)  # (hook, options)


class FakeBackend(Backend):
    kind = "container"
    Settings = FakeSettings
    listed = False
    cli_options = (
        CliOption("--fake-address", "fake_address", "The fake engine's address.", metavar="ADDR"),
        CliOption(
            "--skip-fake",
            "skip_fake",
            "Skip the fake part.",
            is_flag=True,
            commands=frozenset({"images"}),
        ),
    )
    #: Plugged in by tests; None (the default) hides the fake from the CLI's hooks.
    engine: ClassVar[FakeEngine | None] = None

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        if cls.engine is None:
            return []
        cls.engine.calls.append(("clean", options))
        return [cls(FakeSettings(name="clean", backend="fake"))]

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        if cls.engine is None:
            return []
        cls.engine.calls.append(("doctor", options))
        where = option_text(options, "fake_address") or "fake://default"
        if not cls.engine.healthy:
            return [Check("fake", False, f"no fake engine at {where}", "plug one in", engine=True)]
        return [Check("fake", True, f"fake engine at {where}")]

    @classmethod
    def build_images(
        cls, name: str, options: Options, say: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        if cls.engine is None or options.get("skip_fake"):
            return []
        cls.engine.calls.append(("images", options))
        return [("fake", f"{name} (nothing to build)")]

    def __init__(self, settings: FakeSettings, host: Host | None = None, clock: Clock = REAL_CLOCK):
        super().__init__(settings, host)
        self.settings: FakeSettings = settings
        self.kind = settings.kind  # test-only: lets a fake claim to be a VM
        self.clock = clock
        self.live: dict[str, Instance] = {}
        self._timers: dict[str, Timer] = {}  # each instance's boot timer, by name
        self._kernel_timers: dict[str, list[Timer]] = {}  # its fake kernel log's lines
        self.created = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.destroy_calls = 0  # only counted while destroys hang
        self._exit_codes: dict[str, int] = {}
        self.run_in_calls = 0
        # Aggressors running (their stressors), and the victim runs that ended.
        self._aggressors: list[str] = []
        self._victim_runs = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        return {"engine": "fake"}

    def create(self, inst: Instance) -> None:
        index = int(inst.name.rsplit("-", 1)[1])
        if index in self.settings.fail_launch:
            raise RuntimeError("fake launch failure")
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        delay = self.settings.create_delay
        if index in self.settings.slow_create:
            delay += self.settings.slow_create_delay
        if self.settings.kernel_log:
            self.clock.sleep(delay / 2)
            inst.console.note(VMM_READY)
            delay /= 2
        self.clock.sleep(delay)
        with self._lock:
            self.in_flight -= 1
            self.live[inst.name] = inst
            self.created += 1
        inst.handle = index
        if self.settings.ready.kind in NETWORK_READY:
            # Bound but not listening: a connection is refused until it boots.
            inst.info["_server"] = _Server(self.settings.http_status)
        if self.settings.accel is not None:
            inst.info["accel"] = self.settings.accel

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        """A fake tool's result in the real tool's format (stress-ng YAML, fio JSON), at
        `work_rate`, so the parsers and the report read it as they read the real one."""
        from bench.measurements.neighbours import MARK

        script = argv[-1]
        if script.startswith(MARK):
            return self._aggress(script, timeout_s)
        self._await_aggressors()
        with self._lock:
            self.run_in_calls += 1
            step = (self.run_in_calls % 3) - 1  # -1, 0, +1, -1, ...
            load = sum(self.settings.neighbour_slowdown.get(k, 0.0) for k in self._aggressors)
            self._victim_runs += 1
            self._changed.notify_all()
        rate = self.settings.work_rate * (1 + step * self.settings.work_spread) / (1 + load)
        if "stress-ng" in script:
            stressor = script.split("stress-ng ", 1)[1].split()[0].lstrip("-")
            out = (
                f"---\nmetrics:\n    - stressor: {stressor}\n"
                f"      bogo-ops-per-second-real-time: {rate}\n"
                f"      bogo-ops-per-second-usr-sys-time: {rate * 2}\n"
                "      cpu-usage-per-instance: 50.0\n...\n"
            )
            return ExecResult(0, out.encode(), b"")
        if "iperf3 " in script:
            doc = {
                "start": {"version": "iperf 3-fake"},
                "end": {
                    "sum_sent": {"bits_per_second": rate * 1.01, "retransmits": 0},
                    "sum_received": {"bits_per_second": rate},
                },
            }
            return ExecResult(0, json.dumps(doc).encode(), b"")
        if "sockperf ping-pong" in script:
            # sockperf's printout, microseconds: a round trip of 1/rate seconds.
            rtt_us = 1e6 / rate
            out = (
                "sockperf: == version #3.7-fake == \n"
                "sockperf: Total 1000 observations; each percentile contains 10.00 observations\n"
                f"sockperf: ---> percentile 99.000 = {rtt_us * 3:.3f}\n"
                f"sockperf: ---> percentile 50.000 = {rtt_us:.3f}\n"
            )
            return ExecResult(0, out.encode(), b"")
        if "fio " in script:
            # The direction and order its --rw asks (fio's JSON names them in "job
            # options"); a sequential job's bandwidth is at 1 MiB blocks.
            rw = script.split("--rw=", 1)[1].split()[0] if "--rw=" in script else "read"
            block = 4096 if rw.startswith("rand") else 2**20
            job = {"iops": rate, "bw_bytes": rate * block, "io_bytes": block}
            idle = {"io_bytes": 0}
            parts = {"write": job, "read": idle} if "write" in rw else {"read": job, "write": idle}
            doc = {"fio version": "fio-fake", "jobs": [{"job options": {"rw": rw}, **parts}]}
            return ExecResult(0, json.dumps(doc).encode(), b"")
        if "wrk " in script:
            # The JSON of the workloads image's wrk script: `rate` requests a second for
            # 2 s, each answered in 1/rate s (p99: three times that).
            doc = {
                "duration_us": 2e6,
                "requests": rate * 2,
                "bytes": rate * 2 * 4300,
                "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
                "latency_us": {"p50": 1e6 / rate, "p99": 3e6 / rate, "mean": 1.2e6 / rate},
            }
            return ExecResult(0, json.dumps(doc).encode(), b"")
        return ExecResult(127, b"", b"sh: not found\n")

    def _aggress(self, script: str, timeout_s: float) -> ExecResult:
        """An aggressor: it runs until the victim's next run has ended (bounded)."""
        stressor = script.split("stress-ng ", 1)[1].split()[0].lstrip("-")
        with self._changed:
            self._aggressors.append(stressor)
            self._changed.notify_all()
            seen = self._victim_runs
            self._changed.wait_for(lambda: self._victim_runs > seen, timeout=timeout_s)
            self._aggressors.remove(stressor)
        return ExecResult(0, b"", b"")

    def _await_aggressors(self) -> None:
        """Deterministic on any clock: wait (real time, bounded) until every aggressor
        thread the measurement started has entered its run."""
        from bench.measurements.neighbours import THREAD

        with self._changed:
            self._changed.wait_for(
                lambda: (
                    len(self._aggressors)
                    >= sum(
                        1
                        for t in threading.enumerate()
                        if t.name.startswith(THREAD) and t.is_alive()
                    )
                ),
                timeout=2.0,
            )

    def start(self, inst: Instance) -> None:
        if inst.handle in self.settings.crash:
            inst.console.feed(b"fake: exiting\n")
            self._exit(inst, 1)
            return
        if inst.handle in self.settings.silent:
            return
        with self._lock:
            boot = self.settings.boot + self.settings.boot_per_instance * len(self.live)
        uptime = self.settings.uptime
        line = f"booting\nBENCH_READY uptime={uptime:g} kernel=fake-{inst.handle}\n".encode()
        if self.settings.kernel_log:
            kernel = b"[    0.000000] Linux version 6.1.0-fake (fake@bench)\n"
            init = f"[{uptime * 0.9:12.6f}] Run /init as init process\n".encode()
            setup = b"Probing EDD (edd=off to disable)... ok\n"
            self._kernel_timers[inst.name] = [
                self.clock.call_later(boot * 0.1, inst.console.feed, setup),
                self.clock.call_later(boot * 0.3, inst.console.feed, kernel),
                self.clock.call_later(boot * 0.9, inst.console.feed, init),
            ]
        if self.settings.ready.channel == DEBUGCON:
            lead = min(self.settings.port_lead, boot)
            self._kernel_timers.setdefault(inst.name, []).append(
                self.clock.call_later(boot - lead, inst.console.port, b"R")
            )
        self._timers[inst.name] = self.clock.call_later(boot, self._boot, inst, line)

    def _boot(self, inst: Instance, line: bytes) -> None:
        inst.console.feed(line)
        server = inst.info.get("_server")
        if isinstance(server, _Server):
            server.listen()
        if self.settings.ready.kind == "exit":
            self._exit(inst, self.settings.exit_status)

    def _exit(self, inst: Instance, status: int) -> None:
        with self._lock:
            self._exit_codes[inst.name] = status
        inst.console.close("fake instance exited")

    def endpoint(self, inst: Instance, port: int) -> tuple[str, int]:
        server = inst.info.get("_server")
        if not isinstance(server, _Server):
            raise RuntimeError("fake: this instance has no server")
        return server.address

    def host_address(self, inst: Instance) -> str | None:
        return None  # its iperf3 and sockperf are fakes (run_in): no host-side server

    def instance_address(self, inst: Instance) -> str | None:
        return None  # its tools are fakes: no server in the peer either

    def exit_code(self, inst: Instance) -> int | None:
        with self._lock:
            return self._exit_codes.get(inst.name)

    def destroy(self, inst: Instance) -> None:
        if self.settings.hang_destroy:
            with self._lock:
                self.destroy_calls += 1
            self.clock.sleep(self.settings.hang_destroy)
            raise TimeoutError("fake engine: the destroy call timed out")
        timer = self._timers.pop(inst.name, None)
        if timer:
            timer.cancel()
        for t in self._kernel_timers.pop(inst.name, []):
            t.cancel()
        server = inst.info.pop("_server", None)
        if isinstance(server, _Server):
            server.stop()
        with self._lock:
            self.live.pop(inst.name, None)

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        with self._lock:
            live = [Leftover("fake", "container", i.name, i.run_id) for i in self.live.values()]
        planted = self.engine.leftovers if self.engine else []
        return [x for x in live + planted if run_id is None or x.run_id == run_id]

    def remove_leftover(self, leftover: Leftover) -> None:
        with self._lock:
            self.live.pop(leftover.name, None)
        if self.engine and leftover in self.engine.leftovers:
            self.engine.leftovers.remove(leftover)


class _Server:
    """A fake instance's service: a socket on 127.0.0.1 bound at once, listening (and
    answering every GET with `status`) only from `listen()`."""

    def __init__(self, status: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        # TCPServer, not HTTPServer: its bind looks up no host name.
        self._server = socketserver.TCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.server_bind()
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    def listen(self) -> None:
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
