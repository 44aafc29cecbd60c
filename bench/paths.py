"""Where bench keeps built images and per-run state on the host."""

from __future__ import annotations

import os
from pathlib import Path


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
    """Per-run files that live only while instances run (VM overlays)."""
    if env := os.environ.get("BENCH_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/bench")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bench"
