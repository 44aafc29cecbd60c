"""The machine an engine runs on, and what bench reads there.

Every backend is given a `Host` (see `host_for`): memory, processes, files and
commands of its engine's machine are read through it, never from this process's
own machine directly, so a remote engine (docker ssh://, qemu+ssh://) only needs
a remote Host. Only `LocalHost` exists for now.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import bench
from bench.errors import UsageError


@runtime_checkable
class Host(Protocol):
    """What bench asks of the machine an engine runs on. Paths are that machine's."""

    #: A short stable name of the machine, stored with every sample and step.
    key: str

    def describe(self) -> dict[str, Any]:
        """Facts for the run's metadata: CPU, memory, kernel, KVM, load."""
        ...

    def mem_total_bytes(self) -> int: ...
    def mem_available_bytes(self) -> int: ...
    def load_avg_1m(self) -> float: ...
    def memory_facts(self) -> dict[str, Any]:
        """Settings that change what memory numbers mean (KSM, THP), and the load."""
        ...

    def drop_caches(self) -> bool: ...
    def processes(self) -> ProcessTable:
        """Who is whose parent, one snapshot (taken once per step)."""
        ...

    def process_memory(self, pids: list[int]) -> dict[str, int] | None:
        """PSS, USS and RSS summed over these processes."""
        ...

    def read_pidfile(self, path: str) -> int | None: ...
    def allocated_bytes(self, path: str | Path) -> int:
        """Disk blocks used under path (`du -s -x`)."""
        ...

    def snapshot_entries(self, dirs: list[Path]) -> dict[Path, set[str]]: ...
    def new_entries_bytes(self, before: dict[Path, set[str]]) -> int: ...
    def is_file(self, path: str | Path) -> bool: ...
    def is_dir(self, path: str | Path) -> bool: ...
    def list_dir(self, path: str | Path) -> list[str]:
        """Names in a directory, sorted; [] when it does not exist."""
        ...

    def make_dirs(self, path: str | Path) -> None: ...
    def remove_file(self, path: str | Path) -> None:
        """Remove a file; already gone is fine."""
        ...

    def remove_empty_dir(self, path: str | Path) -> None:
        """Remove a directory if it is empty; otherwise leave it."""
        ...

    def run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command there; a missing program is returncode 127, as in a shell."""
        ...


def is_local_address(address: str | None) -> bool:
    """An engine address on this machine: a unix socket or a URI without a host part."""
    if not address:
        return True
    parsed = urllib.parse.urlparse(address)
    return parsed.scheme == "unix" or (bool(parsed.scheme) and not parsed.netloc)


def host_for(address: str | None) -> Host:
    """The Host of an engine address (unix://..., qemu:///system; None: the default)."""
    if is_local_address(address):
        return local_host()
    raise UsageError(
        f"{address}: only an engine on this machine (a unix socket, qemu:///...) can be "
        "measured for now"
    )


@functools.cache
def local_host() -> LocalHost:
    """One LocalHost per process: every local backend shares it."""
    return LocalHost()


class LocalHost:
    def __init__(self) -> None:
        self.key = socket.gethostname()

    def describe(self) -> dict[str, Any]:
        import psutil

        mem = psutil.virtual_memory()
        return {
            "hostname": self.key,
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "cpu_physical_cores": psutil.cpu_count(logical=False),
            "mem_total_bytes": mem.total,
            "mem_available_bytes": mem.available,
            "kernel": platform.release(),
            "os": _os_release(),
            "arch": platform.machine(),
            "kvm_device": os.path.exists("/dev/kvm"),
            "load_avg_1m": self.load_avg_1m(),
            "cgroup_version": 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1,
            "python": sys.version.split()[0],
            "bench_version": bench.__version__,
        }

    def mem_total_bytes(self) -> int:
        import psutil

        return psutil.virtual_memory().total

    def mem_available_bytes(self) -> int:
        import psutil

        return psutil.virtual_memory().available

    def process_memory(self, pids: list[int]) -> dict[str, int] | None:
        """PSS, USS and RSS summed over these host processes (None if none readable).

        PSS splits each shared page among the processes that map it, so summing PSS
        over all instances never counts the shared image or libraries twice.
        """
        import psutil

        totals = {"pss_bytes": 0, "uss_bytes": 0, "rss_bytes": 0}
        seen = 0
        for pid in pids:
            try:
                m = psutil.Process(pid).memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            totals["pss_bytes"] += getattr(m, "pss", 0)
            totals["uss_bytes"] += m.uss
            totals["rss_bytes"] += m.rss
            seen += 1
        return {**totals, "processes": seen} if seen else None

    def processes(self) -> ProcessTable:
        """A snapshot of who is whose parent, taken once per step.

        psutil's children() scans every process on the host per call; asking it once
        per instance would make sampling a step O(N x processes).
        """
        import psutil

        parents = {}
        for p in psutil.process_iter(["pid", "ppid"]):
            parents[p.info["pid"]] = p.info["ppid"]
        return ProcessTable(parents)

    def read_pidfile(self, path: str) -> int | None:
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError):
            return None

    def load_avg_1m(self) -> float:
        return os.getloadavg()[0]

    def allocated_bytes(self, path: str | Path) -> int:
        return allocated_bytes(Path(path))

    def is_file(self, path: str | Path) -> bool:
        return Path(path).is_file()

    def is_dir(self, path: str | Path) -> bool:
        return Path(path).is_dir()

    def list_dir(self, path: str | Path) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def make_dirs(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def remove_file(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)

    def remove_empty_dir(self, path: str | Path) -> None:
        try:
            Path(path).rmdir()
        except OSError:
            pass

    def run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")

    def memory_facts(self) -> dict[str, Any]:
        """Host settings that change what memory numbers mean: KSM and THP."""
        ksm = Path("/sys/kernel/mm/ksm")
        facts: dict[str, Any] = {}
        for name in ("run", "pages_shared", "pages_sharing"):
            facts[f"ksm_{name}"] = _read_int(ksm / name)
        thp = _read_text(Path("/sys/kernel/mm/transparent_hugepage/enabled"))
        facts["thp_mode"] = thp[thp.find("[") + 1 : thp.find("]")] if thp and "[" in thp else thp
        # A busy host slows every boot: kept so a surprising step can be explained.
        facts["load_avg_1m"] = self.load_avg_1m()
        return facts

    def drop_caches(self) -> bool:
        """Drop clean page cache so MemAvailable readings are comparable; False if not root."""
        try:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            return True
        except OSError:
            return False

    def snapshot_entries(self, dirs: list[Path]) -> dict[Path, set[str]]:
        """Names present in each directory now (to find what a step adds)."""
        out = {}
        for d in dirs:
            try:
                out[d] = set(os.listdir(d))
            except OSError:
                out[d] = set()
        return out

    def new_entries_bytes(self, before: dict[Path, set[str]]) -> int:
        """Allocated bytes of the entries that appeared since `before`.

        Only new entries are walked: an engine's storage may hold gigabytes of images
        that a step does not touch, and walking them every step would cost seconds.
        """
        total = 0
        for d, names in before.items():
            try:
                now = set(os.listdir(d))
            except OSError:
                continue
            seen: set[tuple[int, int]] = set()
            for name in now - names:
                total += allocated_bytes(d / name, seen)
        return total


class ProcessTable:
    def __init__(self, parents: dict[int, int]):
        self._parents = parents
        self._children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            self._children.setdefault(ppid, []).append(pid)

    def parent(self, pid: int) -> int | None:
        return self._parents.get(pid)

    def descendants(self, pid: int) -> list[int]:
        """pid and all its descendants (pid itself only if it exists)."""
        if pid not in self._parents:
            return []
        out, stack = [], [pid]
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(self._children.get(p, ()))
        return out


def allocated_bytes(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Disk blocks used under path, like `du -s -x`: each inode once, one filesystem."""
    seen = set() if seen is None else seen
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    dev = st.st_dev
    total = 0
    stack = [(path, st)]
    while stack:
        p, st = stack.pop()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(p) as it:
                    for entry in it:
                        try:
                            est = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if est.st_dev == dev:  # skip mount points (overlay "merged")
                            stack.append((Path(entry.path), est))
            except OSError:
                continue
    return total


def _read_int(p: Path) -> int | None:
    text = _read_text(p)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_text(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()
