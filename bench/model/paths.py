"""Where bench keeps built images and per-run state on the host."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeGuard


def cache_dir() -> Path:
    """Built VM artifacts and probe results.

    As root this is /var/cache/bench, not ~/.cache: qemu under qemu:///system runs as
    its own user and must be able to read the kernel and initramfs we hand it.
    """
    if env := os.environ.get("BENCH_CACHE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/bench")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench"


def state_dir() -> Path:
    """Per-run files that live only while instances run (VM overlays, run locks)."""
    if env := os.environ.get("BENCH_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/bench")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bench"


# The run ids bench.model.results.new_run_id makes: <scenario or --name>-<YYYYMMDD>-<HHMMSS>-<hex>.
# The random part has grown over versions (4, then 8 hex digits, more to come): any length
# from 4 to 32 is one. [0-9], not \d: \d also matches other scripts' digits.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}-[0-9]{8}-[0-9]{6}-[0-9a-f]{4,32}")


def is_run_id(text: object) -> TypeGuard[str]:
    """Whether text has the shape of a run id bench makes (what names a run's instances,
    its results folder and its lock file)."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def run_locks_dir() -> Path:
    """The folder of run locks (0700: only the user who runs bench may plant a file there)."""
    return state_dir() / "runs"


def run_lock_path(run_id: str) -> Path:
    """The file a running bench holds a lock on for its whole run (bench.model.owner.run_lock).
    A run id comes from engine labels too, which anyone may have written: one that bench
    cannot have made names no file (ValueError), so no path leaves the folder."""
    if not is_run_id(run_id):
        raise ValueError(f"{run_id!r} is not a run id")
    return run_locks_dir() / f"{run_id}.lock"


def fresh(path: Path) -> Path:
    """`path`, with a symbolic link of that name removed first: writing through a link a
    report folder holds would write wherever it points (`bench report`, `bench history
    --out`)."""
    if path.is_symlink():
        path.unlink()
    return path
