"""The one cache of probe results (does KVM boot a guest, does an OCI runtime start the
bench image): a JSON object of string keys, one file per kind of probe, shared by every
backend and every bench process on the host.

A probe costs a container start or a test boot of up to 20 s, so its answer is kept; a
cache is only ever a saving. Reading never fails: a missing, unreadable, non-JSON or
wrong-shaped file is an empty cache, and a wrong-shaped entry a miss. Writing never
fails the caller either (an unwritable cache only costs a re-probe) and never loses
another writer's entry: `put` takes a lock on a file beside the cache, re-reads the
cache under it, and replaces it atomically (a temporary file in the same folder,
fsynced, then renamed), so a reader sees the old file or the new one, never half.

bench runs as root: nothing here follows a link planted at the cache's or the lock's
path. The cache is read with O_NOFOLLOW (a link reads as an empty cache), the lock
is opened with O_NOFOLLOW (a link there leaves the cache unwritten), and the rename
replaces a link at the cache's path instead of writing through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from bench.model.paths import cache_dir

ACCEL_CACHE = "accel-probe.json"  # libvirt's and direct QEMU's KVM probes (their own keys)
RUNTIME_CACHE = "runtime-probe.json"  # Docker's OCI runtime probe
MAX_BYTES = 4 * 2**20  # a cache larger than this was not written by bench: read as empty


@dataclass(frozen=True)
class ProbeResult:
    """What every probe answers: whether the thing works here, and in words why (or
    what it saw when it works: "guest booted under kvm")."""

    ok: bool
    detail: str


class ProbeCache:
    """One cache file: `get(key)` and `put(key, result)`."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def named(cls, name: str) -> ProbeCache:
        """The cache `name` (ACCEL_CACHE, RUNTIME_CACHE) in bench.model.paths.cache_dir()."""
        return cls(cache_dir() / name)

    def read(self) -> dict[str, JsonValue]:
        """Every entry: {} for a missing, unreadable, non-JSON or non-object file."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                return {}
            known = json.loads(data)
        except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError too
            return {}
        return known if isinstance(known, dict) else {}

    def get(self, key: str) -> ProbeResult | None:
        """The stored result for `key`; None if there is none or it has the wrong shape."""
        return _result(self.read().get(key))

    def put(self, key: str, result: ProbeResult, **labels: str) -> bool:
        """Store `result` under `key` with `labels` beside it for people reading the file
        ({"runtime": "runsc"}, {"accel": "kvm"}); the other entries, including those
        another process stored since this one read, are kept. False when the cache could
        not be written (the caller re-probes next time: never an error)."""
        entry: dict[str, JsonValue] = {**labels, "ok": result.ok, "detail": result.detail}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                known = self.read()
                known[key] = entry
                self._replace(json.dumps(known, indent=2) + "\n")
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A lock file of its own, not the cache: the cache is replaced by a rename, and a
        # lock on a file that is renamed away protects nothing.
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _replace(self, text: str) -> None:
        # mkstemp: a new file of a random name (O_EXCL), so no planted link is opened.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o644)  # what write_text gave it before
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # a link at self.path is replaced, not followed
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _result(entry: object) -> ProbeResult | None:
    if not isinstance(entry, dict):
        return None
    ok, detail = entry.get("ok"), entry.get("detail")
    if not isinstance(ok, bool) or not isinstance(detail, str):
        return None
    return ProbeResult(ok, detail)
