"""An instance's console as the runner sees it: bytes in, readiness out.

Backends push raw console bytes into `Console.feed` from their own I/O thread (a
selector over docker attach sockets, libvirt's event loop for serial streams) and
call `Console.close` on end of stream. The runner blocks on a shared condition
that consoles notify, so waiting for N instances costs no CPU and no polling.

A console decides readiness itself when a line does (a marker word, a regular
expression); otherwise the runner's probes (bench.runner.readiness) tell it: a port
answered (`mark_ready`), the process exited with some status (`settle_exit`), or the
instance cannot be probed (`fail`). Whoever decides, the instance's one record of
readiness is here.

With `channel="debugcon"` readiness is not the marker's line but the first byte a VM
writes to QEMU's debug I/O port, which its backend pushes into `Console.port`: the
console's lines are still timed and the marker's key=value fields still read, but
they no longer decide when the instance is ready.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable

TAIL_BYTES = 4096  # kept per instance to explain a failure
MAX_LINE = 8192  # a console that never sends a newline must not grow without bound
# Lines timed per instance until its marker: a guest kernel's boot log at loglevel 7 is
# about 300; a console that prints without end must not grow without bound.
MAX_TIMED_LINES = 2048
# Where readiness comes from (bench.model.settings.ReadyRule.channel).
CONSOLE, DEBUGCON = "console", "debugcon"
DEBUGCON_PORT = 0xE9
# What a guest answers a command with after its marker (Console.expect_result): its
# output as base64 between two marker lines. A result larger than this is cut off.
RESULT_BEGIN = "BENCH_RESULT_BEGIN"
RESULT_END = "BENCH_RESULT_END"
MAX_RESULT_CHARS = 16 * 2**20


# What a console line says about readiness: its fields when it means ready, else None.
LineMatch = Callable[[str], "dict[str, str] | None"]


def parse_marker_fields(rest: str) -> dict[str, str]:
    """`key=value` tokens after the marker; anything else on the line is ignored."""
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition("=")
        if sep and key and key.replace("_", "").isalnum():
            fields[key] = visible(value)  # values reach tables and the terminal
    return fields


def _find(marker: str, line: str) -> dict[str, str] | None:
    return find_marker(line, marker)


def find_marker(line: str, marker: str) -> dict[str, str] | None:
    """The marker's fields if `line` carries the marker as a word, else None.

    The marker may sit mid-line: on a serial console kernel messages can land on the
    same line as the guest's output.
    """
    start = line.find(marker)
    while start != -1:
        end = start + len(marker)
        before_ok = start == 0 or not (line[start - 1].isalnum() or line[start - 1] == "_")
        after_ok = end == len(line) or line[end].isspace()
        if before_ok and after_ok:
            return parse_marker_fields(line[end:])
        start = line.find(marker, start + 1)
    return None


def regex_match(pattern: re.Pattern[str]) -> LineMatch:
    """A line matching `pattern` (anywhere in it) is ready; its named groups that took
    part in the match are its fields."""

    def match(line: str) -> dict[str, str] | None:
        m = pattern.search(line[:MAX_LINE])  # the pattern's time grows with the line
        if m is None:
            return None
        return {k: visible(v) for k, v in m.groupdict().items() if v is not None}

    return match


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with every control character but tab written as an escape (\\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Console:
    def __init__(
        self,
        marker: str | None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        *,
        match: LineMatch | None = None,
        waits_for: str | None = None,
        exit_decides: bool = False,
        kind: str = "marker",
        channel: str = CONSOLE,
    ):
        # `marker`: a word that means ready; or `match` decides per line; with neither,
        # no line does (a probe decides).
        self.marker = marker
        self.channel = channel
        self._marker_seen = False
        self._match: LineMatch | None = match
        if match is None and marker:
            self._match = functools.partial(_find, marker)
        # What ready means here, for the reasons of a failure ("port 8080 ...").
        self.waits_for = waits_for or marker or "ready"
        # The ready kind (bench.model.settings.READY_KINDS), stored with each sample.
        self.kind = kind
        # Run to completion: the end of the stream is not a failure until the exit
        # status is known (settle_exit).
        self.exit_decides = exit_decides
        self.exit_code: int | None = None
        self._exit_settled = False
        # Set by a probe that cannot go on (no address to probe): not ready, for this.
        self.failed_reason: str | None = None
        # A probe's attempts, its last observation ("refused", "HTTP 503 on /"), and
        # how long before ready_at its last failed attempt began: the service became
        # ready within that window, so ready_s is late by at most this.
        self.probes = 0
        self.probe_last: str | None = None
        self.probe_window_s: float | None = None
        self.on_change = on_change
        self._clock = clock
        self._partial = b""
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._lock = threading.Lock()
        self.ready_at: float | None = None
        self.fields: dict[str, str] = {}
        self.closed_reason: str | None = None
        self.closed_at: float | None = None
        # Each line until the marker, with the instant (on the runner's clock) its first
        # byte arrived: where the time before the marker went (bench.model.phases).
        self.lines: list[tuple[float, str]] = []
        self.first_byte_at: float | None = None
        self._partial_at: float | None = None
        # Instants a backend notes on this console's clock (bench.model.phases names them).
        self.instants: dict[str, float] = {}
        # After the marker, only while a command's answer is awaited (expect_result):
        # the lines from the RESULT_BEGIN line to the RESULT_END line.
        self._result: list[str] | None = None
        self._result_chars = 0
        self._result_done = threading.Event()
        self._after = b""

    @property
    def done(self) -> bool:
        """Ready, or known never to be: closed (once its exit status is known, when that
        decides), or failed by a probe."""
        if self.ready_at is not None or self.failed_reason is not None:
            return True
        if self.closed_reason is None:
            return False
        return not self.exit_decides or self._exit_settled

    @property
    def awaits_exit(self) -> bool:
        """Closed, and its exit status (which decides) not yet known."""
        return self.exit_decides and self.closed_reason is not None and not self._exit_settled

    def mark_ready(
        self, fields: dict[str, str] | None = None, window_s: float | None = None
    ) -> bool:
        """Ready now, as a probe found; False when already decided."""
        now = self._clock()
        with self._lock:
            if self.done:
                return False
            self.ready_at, self.fields = now, dict(fields or {})
            self.probe_window_s = window_s
        self.on_change()
        return True

    def settle_exit(self, code: int | None, ready: bool, why: str | None = None) -> None:
        """The exit status of a closed console's process (None: unknown, `why`); ready
        (`ready`) at the instant its stream ended."""
        with self._lock:
            if self._exit_settled:
                return
            self._exit_settled = True
            self.exit_code = code
            if ready and code is not None:
                self.ready_at = self.closed_at
            elif code is None:
                self.failed_reason = why or "exit status unknown"
        self.on_change()

    def fail(self, reason: str) -> None:
        """A probe cannot tell (no address): not ready, for `reason`."""
        with self._lock:
            if self.done:
                return
            self.failed_reason = reason
        self.on_change()

    @property
    def awaited(self) -> str:
        """What readiness waits for, as a failure names it ("no ... within 120s")."""
        if self.channel == DEBUGCON:
            return f"byte on the debug port {DEBUGCON_PORT:#x}"
        return self.waits_for

    def port(self, data: bytes) -> None:
        """Bytes from the guest's debug port: with channel debugcon, the first one is
        the instant the instance is ready (on this console's clock, like its lines)."""
        if not data or self.channel != DEBUGCON:
            return
        now = self._clock()
        with self._lock:
            if self.ready_at is not None:
                return
            self.ready_at = now
        self.on_change()

    def note(self, name: str) -> None:
        """Record now, on the console's clock, as instant `name` (the first time only):
        what a backend saw happen (its VMM connected), comparable with the lines."""
        now = self._clock()
        with self._lock:
            self.instants.setdefault(name, now)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        now = self._clock()
        with self._lock:
            self._remember(data)
            if self.first_byte_at is None:
                self.first_byte_at = now
            # Lines are read until the marker's (its fields), then only a result block a
            # command asked for; on the console channel readiness also ends them (a
            # probe or the marker decided), on the debug port only the marker does.
            if self._marker_seen or (self.ready_at is not None and self.channel != DEBUGCON):
                if self._result is not None:
                    self._collect(data)
                return
            buf = self._partial + data
            # A line started in an earlier read began when that read arrived.
            line_at = now if self._partial_at is None or not self._partial else self._partial_at
            *lines, self._partial = buf.split(b"\n")
            self._partial = self._partial[-MAX_LINE:]
            self._partial_at = (now if lines else line_at) if self._partial else None
            timed = self.lines
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if len(timed) < MAX_TIMED_LINES:
                    timed.append((line_at, text))
                line_at = now
                fields = self._match(text) if self._match is not None else None
                if fields is not None:
                    self._marker_seen, self.fields = True, fields
                    break
            else:
                return
            # On the debug-port channel the marker's line only brings its fields.
            if self.channel == DEBUGCON:
                return
            self.ready_at = now
        self.on_change()

    def expect_result(self) -> None:
        """Collect the next result block printed after the marker (a guest's answer to a
        command written to its console; bench.backends.guest.run_in_guest)."""
        with self._lock:
            self._result, self._result_chars, self._after = [], 0, b""
            self._result_done.clear()

    def wait_result(self, timeout: float) -> list[str] | None:
        """The lines of the block expect_result asked for, from its RESULT_BEGIN line to
        its RESULT_END line; None if it did not end within `timeout` or the console closed."""
        deadline = self._clock() + timeout
        while not self._result_done.wait(0.2):
            if self.closed_reason is not None or self._clock() > deadline:
                return None
        with self._lock:
            lines, self._result = self._result, None
        return lines

    def _collect(self, data: bytes) -> None:
        assert self._result is not None
        *lines, self._after = (self._after + data).split(b"\n")
        self._after = self._after[-MAX_LINE:]
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if not self._result and RESULT_BEGIN not in text:
                continue  # the echoed command, kernel messages before the answer
            if self._result_chars < MAX_RESULT_CHARS:
                self._result.append(text)
                self._result_chars += len(text)
            if RESULT_END in text:
                self._result_done.set()
                return

    def close(self, reason: str) -> None:
        """End of stream: the instance exited, crashed or its console went away."""
        with self._lock:
            if self.closed_reason is not None:
                return
            self.closed_reason = reason
            self.closed_at = self._clock()
        self.on_change()

    def tail(self, max_lines: int = 20) -> str:
        """The last lines the instance printed, with control characters shown as escapes:
        an instance's output reaches error lines and the terminal, where an escape
        sequence could retitle the window, move the cursor or hide what follows."""
        with self._lock:
            text = b"".join(self._tail).decode("utf-8", "replace")
        lines = [visible(ln.rstrip("\r")) for ln in text.splitlines() if ln.strip()]
        return "\n".join(lines[-max_lines:])

    def _remember(self, data: bytes) -> None:
        self._tail.append(data)
        self._tail_len += len(data)
        while self._tail_len - len(self._tail[0]) >= TAIL_BYTES and len(self._tail) > 1:
            self._tail_len -= len(self._tail.popleft())
