"""The machine an engine runs on, and what bench reads there.

Every backend is given a `Host` (see `host_for`): memory, processes, files and
commands of its engine's machine are read through it, never from this process's
own machine directly, so a remote engine (docker ssh://, qemu+ssh://) only needs
a remote Host: `LocalHost` here, `SshHost` (bench.machines.ssh_host) over SSH. The text of
/proc and /sys is parsed in bench.machines.procfs, once for both.
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
from typing import Protocol, runtime_checkable

import bench
from bench.machines import procfs, seccomp
from bench.machines.procfs import ProcessTable
from bench.model import addresses
from bench.model.errors import UsageError
from bench.model.records import Facts


@runtime_checkable
class Host(Protocol):
    """What bench asks of the machine an engine runs on. Paths are that machine's."""

    #: A short stable name of the machine, stored with every sample and step.
    key: str

    def describe(self) -> Facts:
        """Facts for the run's metadata: CPU, memory, kernel, KVM, load."""
        ...

    def mem_total_bytes(self) -> int: ...
    def mem_available_bytes(self) -> int: ...
    def load_avg_1m(self) -> float: ...
    def memory_facts(self) -> Facts:
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
    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Several small text files (/proc, /sys) in one go; None for one that cannot be
        read (a vanished process, a cgroup that is gone)."""
        ...

    def read_links(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Several symbolic links' targets (/proc/PID/ns/*) in one go; None for one that
        cannot be read (a vanished process, another user's)."""
        ...

    def seccomp_programs(self, pid: int) -> list[list[seccomp.Instruction]]:
        """The seccomp filter programs of process `pid`, oldest first; raises
        seccomp.FilterError saying why they cannot be read."""
        ...

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

    def ensure_copy(self, local: Path, path: str | Path) -> bool:
        """Make `path` there a copy of this machine's file `local` (a VM's kernel and
        initramfs for a remote hypervisor); True when it had to copy."""
        ...

    def rtt_s(self) -> float:
        """Round-trip time from bench to this machine (0 for this machine itself): bench
        times readiness on its own clock from a streamed console, so a remote engine's
        boot times include it."""
        ...


def is_local_address(address: str | None) -> bool:
    """An engine address on this machine: a unix socket or a URI without a host part."""
    if not address:
        return True
    parsed = urllib.parse.urlparse(address)
    return parsed.scheme == "unix" or (bool(parsed.scheme) and not parsed.netloc)


def ssh_address(address: str) -> str | None:
    """The SSH address (ssh://[user@]host[:port]) of a remote engine address: docker's
    ssh://user@host[:port], or libvirt's qemu+ssh://user@host[:port]/system. None for
    any other (tcp://, qemu+tls://...): bench cannot read such a machine's memory."""
    try:
        if address.startswith("qemu+ssh://"):
            return str(addresses.check_libvirt(address).ssh)
        return str(addresses.check_ssh(address)) if address.startswith("ssh://") else None
    except ValueError as e:
        raise UsageError(str(e)) from None


def host_for(address: str | None) -> Host:
    """The Host of an engine address: this machine for unix://..., qemu:///system and
    None (the default); an SshHost (one per SSH address and process, connected when
    first used) for ssh://user@host[:port] and qemu+ssh://user@host/system.

    An address bench cannot read the machine of (tcp://, qemu+tls://) is refused.
    """
    if is_local_address(address):
        return local_host()
    assert address is not None
    ssh = ssh_address(address)
    if ssh is None:
        raise UsageError(
            f"{address}: bench reads a remote engine's machine over SSH: give "
            "ssh://user@host[:port] (docker) or qemu+ssh://user@host/system (libvirt)"
        )
    from bench.machines.ssh_host import ssh_host

    return ssh_host(ssh)


@functools.cache
def local_host() -> LocalHost:
    """One LocalHost per process: every local backend shares it."""
    return LocalHost()


class LocalHost:
    def __init__(self) -> None:
        self.key = socket.gethostname()

    def describe(self) -> Facts:
        meminfo = self._meminfo()
        cpuinfo = _read_text(Path("/proc/cpuinfo")) or ""
        physical = procfs.parse_cpu_counts(cpuinfo)[1]
        if physical is None:
            import psutil

            physical = psutil.cpu_count(logical=False)
        return {
            "hostname": self.key,
            "cpu_model": procfs.parse_cpu_model(cpuinfo) or platform.processor() or "unknown",
            "cpu_cores": os.cpu_count(),
            "cpu_physical_cores": physical,
            "mem_total_bytes": meminfo["MemTotal"],
            "mem_available_bytes": meminfo["MemAvailable"],
            "kernel": platform.release(),
            "os": _os_release(),
            "arch": platform.machine(),
            "kvm_device": os.path.exists("/dev/kvm"),
            "load_avg_1m": self.load_avg_1m(),
            "cgroup_version": 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1,
            "python": sys.version.split()[0],
            "bench_version": bench.__version__,
        }

    def _meminfo(self) -> dict[str, int]:
        return procfs.parse_meminfo(Path("/proc/meminfo").read_text())

    def mem_total_bytes(self) -> int:
        return self._meminfo()["MemTotal"]

    def mem_available_bytes(self) -> int:
        return self._meminfo()["MemAvailable"]

    def process_memory(self, pids: list[int]) -> dict[str, int] | None:
        """PSS, USS and RSS summed over these host processes (None if none readable),
        from /proc/<pid>/smaps_rollup (smaps before Linux 4.14)."""
        by_pid = {}
        for pid in pids:
            for name in ("smaps_rollup", "smaps"):
                text = _read_text(Path(f"/proc/{pid}/{name}"))
                if text is not None:
                    mem = procfs.parse_rollup(text)
                    if mem is not None:
                        by_pid[pid] = mem
                    break
        return procfs.sum_memory(by_pid, pids)

    def processes(self) -> ProcessTable:
        """A snapshot of who is whose parent, taken once per step (scanning /proc once
        per instance would make sampling a step O(N x processes))."""
        lines = []
        with os.scandir("/proc") as it:
            for entry in it:
                if entry.name.isdigit():
                    text = _read_text(Path(entry.path) / "stat")
                    if text:
                        lines.append(text)
        return ProcessTable(procfs.parse_stat_parents("\n".join(lines)))

    def read_pidfile(self, path: str) -> int | None:
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError):
            return None

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: _read_text(Path(p)) for p in paths}

    def seccomp_programs(self, pid: int) -> list[list[seccomp.Instruction]]:
        if os.geteuid() != 0:
            raise seccomp.FilterError("reading its filters (ptrace) needs root")
        return seccomp.read_filters(pid)

    def read_links(self, paths: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for p in paths:
            try:
                out[p] = os.readlink(p)
            except OSError:
                out[p] = None
        return out

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

    def ensure_copy(self, local: Path, path: str | Path) -> bool:
        if Path(local).resolve() == Path(path).resolve():
            return False
        import shutil

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, path)
        return True

    def rtt_s(self) -> float:
        return 0.0

    def memory_facts(self) -> Facts:
        """Host settings that change what memory numbers mean: KSM and THP."""
        ksm = Path("/sys/kernel/mm/ksm")
        facts: Facts = {}
        for name in ("run", "pages_shared", "pages_sharing"):
            facts[f"ksm_{name}"] = procfs.parse_int(_read_text(ksm / name))
        thp = _read_text(Path("/sys/kernel/mm/transparent_hugepage/enabled"))
        facts["thp_mode"] = procfs.parse_thp_mode(thp)
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


def _read_text(p: Path) -> str | None:
    # Undecodable bytes replaced, as SshHost does: /proc text may hold a mapped file's
    # or a command's name in any encoding, and one such name must not lose the file.
    try:
        return p.read_text(errors="replace").strip()
    except OSError:
        return None


def _os_release() -> str:
    return procfs.parse_os_release(_read_text(Path("/etc/os-release")) or "") or platform.system()
