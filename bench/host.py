"""What bench knows about the host it measures on.

Host-side facts and probes sit behind `Host`, given to whoever needs them, instead
of psutil being called on the local machine from everywhere: platforms on remote
hosts (docker ssh://, qemu+ssh://) will bring their own Host.
"""

from __future__ import annotations

import os
import platform
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import bench


class LocalHost:
    name = "local"

    def describe(self) -> dict[str, Any]:
        import psutil

        mem = psutil.virtual_memory()
        return {
            "hostname": socket.gethostname(),
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "cpu_physical_cores": psutil.cpu_count(logical=False),
            "mem_total_bytes": mem.total,
            "mem_available_bytes": mem.available,
            "kernel": platform.release(),
            "os": _os_release(),
            "arch": platform.machine(),
            "kvm_device": os.path.exists("/dev/kvm"),
            "load_avg_1m": os.getloadavg()[0],
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

    def memory_facts(self) -> dict[str, Any]:
        """Host settings that change what memory numbers mean: KSM and THP."""
        ksm = Path("/sys/kernel/mm/ksm")
        facts: dict[str, Any] = {}
        for name in ("run", "pages_shared", "pages_sharing"):
            facts[f"ksm_{name}"] = _read_int(ksm / name)
        thp = _read_text(Path("/sys/kernel/mm/transparent_hugepage/enabled"))
        facts["thp_mode"] = thp[thp.find("[") + 1 : thp.find("]")] if thp and "[" in thp else thp
        # A busy host slows every boot: kept so a surprising step can be explained.
        facts["load_avg_1m"] = os.getloadavg()[0]
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
