"""Readiness as the platform's `ready:` defines it (bench.model.settings.ReadyRule).

A console line decides a marker and a regular expression (bench.machines.console).
For the others the runner asks, engine-agnostic, through what the backend exposes:

- tcp, http: once the instance's start call returned, a probe from this host into its
  address (Backend.endpoint: the container's IP on its network) tries the port, then
  again after a short, growing pause, until it answers, the instance's console ends
  (it exited), its deadline passes or the step stops waiting. Each attempt is one
  connection with a short timeout (bench.machines.netprobe). ready_s is the instant
  the successful attempt returned; `ready_window_s` says how long before it the last
  failed attempt began (ready_s is late by at most that).
- exit: when the instance's console ends, its exit status is asked of the engine
  (Backend.exit_code); the expected status makes it ready at the instant its output
  ended (run to completion: ready means done).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.backends.base import Backend, Instance
from bench.machines import netprobe
from bench.machines.clock import Clock
from bench.machines.console import Console, regex_match
from bench.model.errors import first_line
from bench.model.settings import NETWORK_READY, ReadyRule

# The pause between a probe's attempts: 5 ms, growing by half up to 20 ms. A refused
# connection costs the host tens of microseconds; the cap bounds how late ready_s can
# be (recorded per sample as ready_window_s) and the attempts per instance (50/s).
FIRST_GAP_S = 0.005
MAX_GAP_S = 0.02
GROWTH = 1.5
# One attempt: a service that accepts but does not answer within this is not ready.
ATTEMPT_TIMEOUT_S = 1.0
# Probing threads per step: each probing instance holds one while it waits; more
# instances than this are probed as threads come free (later: their ready_s is late).
PROBE_WORKERS = 128


def console_for(rule: ReadyRule, clock: Callable[[], float]) -> Console:
    """The console of one instance, deciding what a console can under `rule`."""
    kind = rule.kind
    if kind == "marker":
        return Console(rule.marker, clock=clock, kind=kind, channel=rule.channel)
    if kind == "regex":
        assert rule.regex is not None
        return Console(
            None,
            clock=clock,
            match=regex_match(re.compile(rule.regex)),
            waits_for=f"line matching {rule.regex!r}",
            kind=kind,
            channel=rule.channel,
        )
    return Console(
        None, clock=clock, waits_for=rule.describe(), exit_decides=kind == "exit", kind=kind
    )


def not_ready_reason(console: Console, timeout: float, exited: bool) -> str:
    """Why an instance did not become ready, by ready kind: it exited (or exited with
    another status), or its deadline passed with what its probe saw last."""
    if exited:
        if console.kind == "exit" and console.exit_code is not None:
            return f"exited {console.exit_code} before ready ({console.waits_for})"
        return f"{console.closed_reason} before {console.awaited}"
    if console.kind in NETWORK_READY and console.probe_last:
        return f"{console.probe_last} until the {timeout:g}s timeout"
    if console.kind == "exit":
        return f"still running at the {timeout:g}s timeout (ready: {console.waits_for})"
    return f"no {console.awaited} within {timeout:g}s"


def last_seen(previous: str | None, answer: netprobe.Answer, limit: float) -> str:
    """What a failed probe saw last, for the failure's reason: this attempt's answer,
    unless the deadline cut its timeout short and an earlier one said more (a service
    answering 404 all along is not "no answer within 7 ms")."""
    if previous and answer.timed_out and limit < ATTEMPT_TIMEOUT_S:
        return previous
    return answer.seen


class Prober:
    """One step's probes (tcp, http) and exit-status questions (exit), on their own
    threads: the wait loop calls `changed` for each instance it is woken for."""

    def __init__(self, rule: ReadyRule, backend: Backend, clock: Clock, size: int):
        self.rule = rule
        self.backend = backend
        self.clock = clock
        self._size = max(1, min(PROBE_WORKERS, size))
        self._pool: ThreadPoolExecutor | None = None
        self._asked: set[str] = set()
        self._stop = threading.Event()

    @property
    def idle(self) -> bool:
        """Nothing to ask under this rule: the console decides alone."""
        return self.rule.kind in ("marker", "regex")

    def changed(
        self, inst: Instance, launch_at: float, started_at: float | None, timeout: float
    ) -> None:
        """An instance not yet decided changed: start what its rule needs, once."""
        if self.idle or self._stop.is_set() or inst.name in self._asked:
            return
        if self.rule.kind in NETWORK_READY and started_at is not None:
            self._submit(inst, self._probe, inst, started_at, launch_at + timeout)
        elif self.rule.kind == "exit" and inst.console.awaits_exit:
            self._submit(inst, self._exit, inst)

    def _submit(self, inst: Instance, fn: Callable[..., None], *args: object) -> None:
        self._asked.add(inst.name)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._size, thread_name_prefix="bench-probe")
        self.clock.submit(self._pool, fn, *args)

    def stop(self) -> None:
        """No more attempts: the step stopped waiting."""
        self._stop.set()

    def join(self) -> None:
        """Stop, and wait for attempts in flight (each ends within ATTEMPT_TIMEOUT_S)."""
        self._stop.set()
        if self._pool is not None:
            with self.clock.idle():
                self._pool.shutdown(wait=True, cancel_futures=True)

    def _probe(self, inst: Instance, started_at: float, deadline: float) -> None:
        console, rule, now = inst.console, self.rule, self.clock.now
        port = rule.port
        assert port is not None
        try:
            host, host_port = self.backend.endpoint(inst, port)
        except Exception as e:
            console.fail(f"no address to probe port {port} at: {first_line(e)}")
            return
        # A port forwarded into a VM: the backend says whether the guest took the
        # connection (None: no forward, or it cannot tell; the connect decides).
        forwarded = rule.tcp is not None and self.backend.forward_accepted(inst, port) is not None
        gap, since = FIRST_GAP_S, started_at
        while not self._stop.is_set() and not console.done:
            begun = now()
            if begun >= deadline:
                return
            limit = min(ATTEMPT_TIMEOUT_S, deadline - begun)
            if rule.http is not None:
                h = rule.http
                answer = netprobe.http_status(host, host_port, h.path, h.status, limit, port)
            elif forwarded:
                answer = netprobe.tcp_forwarded(
                    host,
                    host_port,
                    limit,
                    lambda: self.backend.forward_accepted(inst, port) is True,
                    port,
                )
            else:
                answer = netprobe.tcp(host, host_port, limit, port)
            console.probes += 1
            if answer.ok:
                console.mark_ready(window_s=now() - since)
                return
            console.probe_last = last_seen(console.probe_last, answer, limit)
            since = begun
            self.clock.sleep(max(0.0, min(gap, deadline - now())))
            gap = min(gap * GROWTH, MAX_GAP_S)

    def _exit(self, inst: Instance) -> None:
        console = inst.console
        try:
            code = self.backend.exit_code(inst)
        except Exception as e:
            console.settle_exit(
                None, False, f"{console.closed_reason}; its exit status unknown: {first_line(e)}"
            )
            return
        why = None if code is not None else f"{console.closed_reason}, but it had not exited"
        console.settle_exit(code, code == self.rule.exit, why)
