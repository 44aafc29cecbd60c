"""Who owns what bench creates: a run, driven by a bench process (pid) on a controller
host (hostname).

A run on this controller goes on while its bench holds the run's lock, a flock on
bench.model.paths.run_lock_path: the kernel drops it however that process ends (kill -9
included), so neither a reused pid nor a command line can make a dead run look alive,
or a live one dead. Engines may one day sit on other machines than the bench that
drives them, so an owner elsewhere is judged only by the machine it runs on: its pid
means nothing in another host's /proc, and its lock is on that host. Imports only
leaves (bench.model.paths, bench.model.errors).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from bench.model import paths
from bench.model.errors import BenchError, UsageError


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


def pid_alive(pid: object) -> bool:
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


def bench_process_alive(pid: object) -> bool:
    """Whether pid is another bench process running on this machine. A reused pid
    belongs to some other program: only a process whose command line names bench counts."""
    if not pid_alive(pid) or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"bench" in f.read()
    except OSError:
        return False


def run_alive(run_id: str | None, pid: object) -> bool:
    """Whether a run on this controller still goes: its lock answers. No lock file: the
    labels were written by a bench from before the lock, which only had its pid and host
    to go by, so those versions' rule decides (a live process whose command line names
    bench)."""
    held = run_lock_held(run_id)
    return bench_process_alive(pid) if held is None else held


@contextlib.contextmanager
def run_lock(run_id: str) -> Iterator[None]:
    """Hold run_id's lock while the block runs (a run, from before its first instance to
    after its last is gone); the lock file goes with it."""
    try:
        path = paths.run_lock_path(run_id)
    except ValueError:
        raise UsageError(
            f"run id {run_id!r} is not NAME-YYYYMMDD-HHMMSS-HEX: --name takes 1-48 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        ) from None
    with contextlib.ExitStack() as undo:  # in reverse, each step even if one before failed
        folder = _open_folder(path.parent, create=True)
        if folder is None:  # made, then removed by someone else before it could be opened
            raise BenchError(f"{path.parent}: removed while bench made it; run again")
        undo.callback(os.close, folder)
        undo.callback(os.close, _hold(folder, path))
        # Removed while still held: a `bench clean` that opened it before sees it held,
        # or (once closed) free; one that comes later finds no file and a dead pid.
        undo.callback(_remove, folder, path.name)
        yield


def run_lock_held(run_id: str | None, remove_stale: bool = False) -> bool | None:
    """Whether a bench on this machine holds run_id's lock: True (the run goes on), False
    (the file is there and no one holds it: the run is over, however it ended), None (no
    lock file to ask: not a run id bench makes, or a run of a bench from before the lock).
    With remove_stale, a lock file no one holds is removed."""
    if not paths.is_run_id(run_id):
        return None
    path = paths.run_lock_path(run_id)
    folder = _open_folder(path.parent, create=False)
    if folder is None:
        return None
    try:
        try:
            # Read-only and never created: asking must not leave a file behind. O_NONBLOCK:
            # opening a FIFO planted under the name must not hang `bench clean`.
            fd = os.open(
                path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
            )
        except OSError:
            return None  # no file (or a link, refused): nothing to ask
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            if remove_stale and _is_named(fd, folder, path.name):
                os.unlink(path.name, dir_fd=folder)  # under the lock: no one holds it
            return False
        finally:
            os.close(fd)
    finally:
        os.close(folder)


def remove_stale_run_locks(run_id: str | None = None) -> None:
    """Remove the lock files no bench holds (run_id's, or every run's): runs killed
    before they could remove their own."""
    if run_id is None:
        try:
            names = os.listdir(paths.run_locks_dir())
        except FileNotFoundError:
            return
        run_ids = [n.removesuffix(".lock") for n in names if n.endswith(".lock")]
    else:
        run_ids = [run_id]
    for rid in run_ids:
        run_lock_held(rid, remove_stale=True)


def _open_folder(folder: Path, create: bool) -> int | None:
    """The folder of run locks, opened after checking it is a directory of this user's
    that no one else may write to (or plant a link in); made 0700 if looser. None: it does
    not exist and create is false."""
    try:
        if create:
            with contextlib.suppress(FileExistsError):  # whatever it is, opening checks it
                folder.mkdir(mode=0o700, parents=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BenchError(
            f"{folder}: {e.strerror} (bench keeps its run locks there: a directory of its "
            "own, not a link)"
        ) from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise BenchError(
            f"{folder}: owned by uid {st.st_uid}, not {os.geteuid()} who runs bench; remove it"
        )
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def _hold(folder: int, path: Path) -> int:
    """Open (create 0600) and lock the file path, in the open folder; its descriptor."""
    name = path.name
    while True:
        # O_CLOEXEC: a QEMU or ssh this bench starts, which may outlive it, must not hold
        # the lock on and keep a dead run alive.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=folder)
        except OSError as e:  # a link planted under the name (O_NOFOLLOW), or worse
            raise BenchError(
                f"{path}: {e.strerror} (a run lock must be a file); remove it"
            ) from None
        try:
            # Blocks only while a `bench clean` asks it (a few system calls): the run id is
            # new, no other run has it.
            fcntl.flock(fd, fcntl.LOCK_EX)
            # That `bench clean` found it free and removed it: lock the file there now.
            if _is_named(fd, folder, name):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _is_named(fd: int, folder: int, name: str) -> bool:
    """Whether fd is the regular file name in folder (not one removed or replaced since)."""
    try:
        there = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    same = (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)
    return same and stat.S_ISREG(there.st_mode)


def _remove(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)
