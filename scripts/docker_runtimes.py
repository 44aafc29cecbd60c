#!/usr/bin/env python3
"""Register OCI runtimes with dockerd: merge them into /etc/docker/daemon.json.

Usage: docker_runtimes.py DAEMON_JSON NAME=PATH [NAME=PATH ...]

Merges, never clobbers: every other key of daemon.json, and every other runtime, stays
as it was; a runtime already registered keeps its own arguments. runsc gets
`--network=none` (without it every container fails where gVisor cannot take over the
root network namespace, as on bench's CI hosts). Writes only when something changed
(a new file in the same folder, fsynced, renamed over the old one, the folder fsynced;
the old file's owner, group and mode kept) and prints `changed` or `unchanged`, so the
caller reloads dockerd only when needed. An unreadable or invalid daemon.json is an
error (exit 1): the file is left alone. So is a daemon.json that is a link out of its
own folder (see `write_target`).

Standard library only: scripts/setup-host.sh runs it with the system python3, before
bench's venv exists.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# Arguments a runtime needs to start bench's containers at all.
REQUIRED_ARGS: dict[str, list[str]] = {"runsc": ["--network=none"]}


def merge_runtimes(config: dict[str, Any], runtimes: dict[str, str]) -> dict[str, Any]:
    """`config` (daemon.json's content) with `runtimes` (name -> binary path) registered.

    Returns a new dict; `config` is not modified.
    """
    out = json.loads(json.dumps(config))  # a deep copy of plain JSON
    registered = out.get("runtimes")
    if registered is None:
        registered = out["runtimes"] = {}
    if not isinstance(registered, dict):
        raise ValueError('"runtimes" in daemon.json is not a mapping')
    for name, path in runtimes.items():
        entry = registered.get(name)
        if not isinstance(entry, dict):
            entry = registered[name] = {}
        if not entry.get("path") and not entry.get("runtimeType"):
            entry["path"] = path
        required = REQUIRED_ARGS.get(name, [])
        args = entry.get("runtimeArgs") or []
        missing = [a for a in required if a not in args]
        if missing:
            entry["runtimeArgs"] = [*args, *missing]
    return out


def write_target(path: Path) -> Path:
    """The file to rewrite for the daemon.json at `path`.

    A link stays a link: the file it names is rewritten, if that file is in the link's own
    folder (/etc/docker), so a link to a variant kept beside it works. A link out of it is
    refused: that file belongs to something else (config management, a read-only store, a
    repository) that would overwrite or refuse the merge, and root must not write wherever
    a link points.
    """
    if not path.is_symlink():
        return path
    target, folder = path.resolve(), path.parent.resolve()
    if folder not in target.parents:
        raise ValueError(
            f"is a link to {target}, outside {folder}: register the runtimes in that file "
            "(its source) or put a plain file in the link's place"
        )
    return target


def update_file(path: Path, runtimes: dict[str, str]) -> bool:
    """Merge `runtimes` into the daemon.json at `path` (created if absent); True if it
    changed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    config = json.loads(text) if text.strip() else {}
    if not isinstance(config, dict):
        raise ValueError("daemon.json is not a JSON object")
    merged = merge_runtimes(config, runtimes)
    if merged == config:
        return False
    target = write_target(path)
    if target.exists() and not target.is_file():
        raise ValueError(f"{target} is not a regular file")
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.stat() if target.exists() else None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(merged, f, indent=4)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, old.st_mode & 0o7777 if old else 0o644)
        if old is not None:
            os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    runtimes = dict(a.split("=", 1) for a in argv[1:])
    try:
        changed = update_file(Path(argv[0]), runtimes)
    except (OSError, ValueError) as e:
        print(f"docker_runtimes: {argv[0]}: {e} (left unchanged)", file=sys.stderr)
        return 1
    print("changed" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
