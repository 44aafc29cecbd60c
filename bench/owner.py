"""Who owns what bench creates: a bench process (pid) on a controller host (hostname).

Engines may one day sit on other machines than the bench that drives them, so an
owner is judged alive only by the machine it runs on: a pid means nothing in another
host's /proc. A leaf module (imports nothing from bench).
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any


@functools.cache
def hostname() -> str:
    """This controller's name, as stored in owner labels."""
    return socket.gethostname()


def owner_labels(prefix: str = "") -> dict[str, str]:
    """The owner of what this process creates: {prefix}owner_pid and {prefix}owner_host."""
    return {f"{prefix}owner_pid": str(os.getpid()), f"{prefix}owner_host": hostname()}


def is_local(owner_host: str | None) -> bool:
    """Whether an owner runs on this machine. No host recorded: labels written before
    bench recorded hosts, when the controller was always this machine."""
    return owner_host is None or owner_host == hostname()


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine (any program)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def bench_process_alive(pid: Any) -> bool:
    """Whether pid is another bench process running on this machine. A reused pid
    belongs to some other program: only a process whose command line names bench counts."""
    if not pid_alive(pid) or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"bench" in f.read()
    except OSError:
        return False
