"""One probe from this host into an instance's address: does a TCP port accept a
connection, does an HTTP GET on a path answer a status. One attempt each, bounded by a
short timeout, through the standard library's sockets and http.client (never a shell,
never a process); bench.runner.readiness retries them until the instance is ready.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

# A response body is never read: the status line decides.


@dataclass(frozen=True)
class Answer:
    ok: bool
    # What the attempt saw, as a phrase for a failure's reason: "port 8080 refused",
    # "HTTP 503 on /health".
    seen: str
    timed_out: bool = False  # no answer within the attempt's timeout


def _failed(port: int, e: OSError, timeout: float) -> Answer:
    if isinstance(e, ConnectionRefusedError):
        return Answer(False, f"port {port} refused")
    if isinstance(e, TimeoutError):
        return Answer(False, f"port {port} did not answer within {timeout:g}s", timed_out=True)
    return Answer(False, f"port {port}: {e.strerror or type(e).__name__}")


def tcp(host: str, port: int, timeout: float, shown: int | None = None) -> Answer:
    """Whether `port` at `host` accepts a connection (closed again at once). `shown`:
    the port as the user named it (inside the instance), when `port` is forwarded."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Answer(True, f"port {shown or port} accepted a connection")
    except OSError as e:
        return _failed(shown or port, e, timeout)


# How often a forwarded connection's guest side is asked about while it is held open.
CONFIRM_GAP_S = 0.02


def tcp_forwarded(
    host: str, port: int, timeout: float, accepted: Callable[[], bool], shown: int
) -> Answer:
    """Whether the guest behind a forwarded `port` accepts a connection: connected on
    this host's side, the connection is held open until `accepted()` says the guest
    established it (the forwarder's own view), or the forwarder closes it (the guest
    refused), or `timeout` passes (no answer yet from the guest)."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            while True:
                if accepted():
                    return Answer(True, f"port {shown} accepted a connection")
                left = deadline - time.monotonic()
                if left <= 0:
                    return Answer(
                        False, f"port {shown} did not answer within {timeout:g}s", timed_out=True
                    )
                readable, _, _ = select.select([conn], [], [], min(CONFIRM_GAP_S, left))
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    return Answer(False, f"port {shown} refused")
    except ConnectionResetError:
        return Answer(False, f"port {shown} refused")
    except OSError as e:
        return _failed(shown, e, timeout)


def http_status(
    host: str, port: int, path: str, status: int, timeout: float, shown: int | None = None
) -> Answer:
    """Whether GET `path` on `port` at `host` answers `status` (`shown`: as for tcp)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "bench"})
        got = conn.getresponse().status
    except OSError as e:
        return _failed(shown or port, e, timeout)
    except http.client.HTTPException as e:
        return Answer(False, f"port {shown or port} answered no HTTP ({type(e).__name__})")
    finally:
        conn.close()
    return Answer(got == status, f"HTTP {got} on {path}")


def free_local_port(address: str = "127.0.0.1") -> int:
    """A TCP port on `address` that no socket holds now (the kernel's pick for a bind to
    port 0), for a VMM to listen on next. Another program may take it in between: the
    VMM then fails to start, saying so, and the instance fails; never silently elsewhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port
