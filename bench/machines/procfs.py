"""What /proc, /sys and /etc say about a Linux machine, parsed from their text.

LocalHost reads the files itself and SshHost reads them over one SSH exec; both hand
the text to these functions, so each format is parsed (and tested) once, on plain text.
Every parser is pure: text in, values out, nothing read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

KIB = 1024

#: smaps_rollup fields bench needs. USS is what only this process maps: its private pages.
ROLLUP_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty")


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes by field ("MemTotal", "MemAvailable", ...)."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not words or not words[0].isdigit():
            continue
        scale = KIB if len(words) > 1 and words[1] == "kB" else 1
        out[name.strip()] = int(words[0]) * scale
    return out


#: The kernel's own allocations (/proc/meminfo), read with each host memory reading:
#: a container's dentries, inodes, cgroups and network namespace live here, in no
#: process's memory (Kata's density test records Slab for that reason). Field -> the
#: stored name's stem.
SLAB_FIELDS = {"Slab": "slab", "SReclaimable": "sreclaimable", "SUnreclaim": "sunreclaim"}


def parse_slab(text: str) -> dict[str, int]:
    """Slab, SReclaimable and SUnreclaim in bytes from /proc/meminfo text, by stem
    ("slab", ...); a field the kernel does not report is left out."""
    found = parse_meminfo(text)
    return {stem: found[name] for name, stem in SLAB_FIELDS.items() if name in found}


def parse_loadavg(text: str) -> float:
    """The 1-minute load average from /proc/loadavg ("0.52 0.58 0.59 1/189 4242")."""
    return float(text.split()[0])


def parse_rollup(text: str) -> dict[str, int] | None:
    """PSS, USS and RSS in bytes from /proc/<pid>/smaps_rollup (or the per-mapping
    /proc/<pid>/smaps of kernels before 4.14: its fields are summed the same way).
    None when the text has no Rss line (an unreadable or vanished process)."""
    fields = dict.fromkeys(ROLLUP_FIELDS, 0)
    seen = False
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in fields:
            words = rest.split()
            if words and words[0].isdigit():
                fields[name] += int(words[0]) * KIB
                seen = seen or name == "Rss"
    if not seen:
        return None
    return {
        "pss_bytes": fields["Pss"],
        "uss_bytes": fields["Private_Clean"] + fields["Private_Dirty"],
        "rss_bytes": fields["Rss"],
    }


def parse_rollups_by_path(text: str) -> dict[int, dict[str, int]]:
    """`grep -H FIELDS /proc/[0-9]*/smaps_rollup` output: each readable process's
    memory by pid. Lines look like `/proc/42/smaps_rollup:Pss:   942 kB`."""
    by_pid: dict[int, list[str]] = {}
    for line in text.splitlines():
        path, sep, field = line.partition(":")
        parts = path.split("/")
        if not sep or len(parts) < 3 or not parts[2].isdigit():
            continue
        by_pid.setdefault(int(parts[2]), []).append(field)
    out = {}
    for pid, lines in by_pid.items():
        mem = parse_rollup("\n".join(lines))
        if mem is not None:
            out[pid] = mem
    return out


@dataclass(frozen=True)
class SmapsArea:
    """One mapping of /proc/<pid>/smaps: its address range, permissions, path (""
    for an anonymous one) and its Size, Rss and Pss in bytes."""

    start: int
    end: int
    perms: str
    path: str
    size: int = 0
    rss: int = 0
    pss: int = 0


_SMAPS_SIZES = {"Size": "size", "Rss": "rss", "Pss": "pss"}


def parse_smaps(text: str) -> list[SmapsArea]:
    """The mappings of /proc/<pid>/smaps text, in address order. A header line reads
    `7f82...-7f83... rw-p 00000000 00:00 0   [path]`; the field lines after it (`Rss:
    61440 kB`) belong to it. Lines that are neither are skipped (hostile or truncated
    text yields fewer mappings, never an exception)."""
    out: list[SmapsArea] = []
    head: tuple[int, int, str, str] | None = None
    sizes: dict[str, int] = {}

    def close() -> None:
        if head is not None:
            start, end, perms, path = head
            out.append(SmapsArea(start, end, perms, path, **sizes))

    for line in text.splitlines():
        words = line.split(None, 5)
        lo, dash, hi = (words[0] if words else "").partition("-")
        if dash and len(words) >= 5 and _is_hex(lo) and _is_hex(hi):
            close()
            path = words[5].strip() if len(words) > 5 else ""
            head, sizes = (int(lo, 16), int(hi, 16), words[1], path), {}
            continue
        name, sep, rest = line.partition(":")
        key = _SMAPS_SIZES.get(name)
        value = rest.split()
        if head is not None and sep and key is not None and value and value[0].isdigit():
            sizes[key] = int(value[0]) * KIB
    close()
    return out


def _is_hex(word: str) -> bool:
    return bool(word) and all(c in "0123456789abcdefABCDEF" for c in word)


def guest_ram_mappings(mappings: Sequence[SmapsArea], guest_bytes: int) -> list[SmapsArea]:
    """The mappings that hold a VM's RAM in its VMM's address space, found by size as
    Firecracker's memory-overhead test does: a mapping exactly the size of the VM's
    configured memory (QEMU maps each RAM block in one mmap: `pc.ram` for the pc
    machine, `microvm.ram`; anonymous, or `/memfd:...` when memfd-backed). Executable
    mappings are not guest RAM: TCG's translation buffer is one (rwxp), and under TCG
    it may be the same size. When no single mapping has that size (the kernel split one
    into adjacent areas, a madvise on part of it), adjacent writable mappings whose sizes
    add up to it exactly are taken. [] when neither is found: the caller says so."""
    if guest_bytes <= 0:
        return []
    candidates = [m for m in mappings if "x" not in m.perms and "w" in m.perms]
    exact = [m for m in candidates if m.size == guest_bytes]
    if exact:
        # Two RAM-sized areas cannot both be this VM's one RAM block: the one most
        # resident is taken (the other is some other buffer of the same size).
        return [max(exact, key=lambda m: m.rss)]
    ordered = sorted(candidates, key=lambda m: m.start)
    for i in range(len(ordered)):
        total, run = 0, list[SmapsArea]()
        for m in ordered[i:]:
            if run and m.start != run[-1].end:
                break
            run.append(m)
            total += m.size
            if total >= guest_bytes:
                break
        if total == guest_bytes and len(run) > 1:
            return run
    return []


def vmm_overhead(text: str, guest_bytes: int) -> dict[str, int] | None:
    """A VMM's own memory, less the VM's RAM (Firecracker's method: the VMM process's
    RSS less the RSS of its guest-RAM-sized mappings), from its /proc/<pid>/smaps text.

    `vmm_overhead_bytes`: RSS of every mapping that is not guest RAM (the VMM's code,
    heap, device emulation, under TCG its translation cache); `guest_ram_rss_bytes`:
    how much of the guest's RAM is resident; `vmm_overhead_pss_bytes` the same split of
    PSS. None when no mapping holds the guest's RAM (the overhead would be the VM).
    """
    mappings = parse_smaps(text)
    ram = guest_ram_mappings(mappings, guest_bytes)
    if not ram:
        return None
    ram_rss = sum(m.rss for m in ram)
    ram_pss = sum(m.pss for m in ram)
    return {
        "vmm_overhead_bytes": sum(m.rss for m in mappings) - ram_rss,
        "vmm_overhead_pss_bytes": sum(m.pss for m in mappings) - ram_pss,
        "guest_ram_rss_bytes": ram_rss,
    }


def parse_stat_parents(text: str) -> dict[int, int]:
    """Each process's parent from /proc/<pid>/stat lines (any number, concatenated).

    The command name sits in parentheses and may itself hold spaces and parentheses:
    the fields after the last ")" are state, then ppid.
    """
    parents = {}
    for line in text.splitlines():
        head, _, tail = line.rpartition(")")
        pid = head.split(" (", 1)[0].strip()
        fields = tail.split()
        if pid.isdigit() and len(fields) >= 2 and fields[1].isdigit():
            parents[int(pid)] = int(fields[1])
    return parents


def sum_memory(
    by_pid: Mapping[int, Mapping[str, int]], pids: Iterable[int]
) -> dict[str, int] | None:
    """PSS, USS and RSS summed over these processes, and how many were readable (None
    if none was). PSS splits each shared page among the processes that map it, so
    summing PSS over all instances never counts the shared image or libraries twice."""
    totals = {"pss_bytes": 0, "uss_bytes": 0, "rss_bytes": 0}
    seen = 0
    for pid in pids:
        mem = by_pid.get(pid)
        if mem is None:
            continue
        for k in totals:
            totals[k] += mem[k]
        seen += 1
    return {**totals, "processes": seen} if seen else None


def parse_cpu_model(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def parse_cpu_counts(cpuinfo: str) -> tuple[int | None, int | None]:
    """Logical CPUs online, and physical cores (distinct physical id/core id pairs;
    None where /proc/cpuinfo does not say, as on some ARM kernels)."""
    logical, cores = 0, set()
    physical = core = None
    for line in [*cpuinfo.splitlines(), ""]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name == "processor":
            logical += 1
        elif name == "physical id":
            physical = value
        elif name == "core id":
            core = value
        elif not line.strip():  # end of one processor's block
            if physical is not None and core is not None:
                cores.add((physical, core))
            physical = core = None
    return (logical or None), (len(cores) or None)


def parse_os_release(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def parse_thp_mode(text: str | None) -> str | None:
    """The selected mode of /sys/kernel/mm/transparent_hugepage/enabled ("always
    [madvise] never" -> "madvise")."""
    if text and "[" in text:
        return text[text.find("[") + 1 : text.find("]")]
    return text


def parse_int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


class ProcessTable:
    """Who is whose parent, from one snapshot of the process table."""

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


# -- a container's cgroup memory --------------------------------------------------------

#: Where the memory controller is mounted: cgroup v1 (its own hierarchy, also the
#: hybrid layout) and v2 (the unified hierarchy).
CGROUP_V1_MEMORY_ROOT = "/sys/fs/cgroup/memory"
CGROUP_V2_ROOT = "/sys/fs/cgroup"


def cgroup_memory_dir(proc_cgroup: str, must_contain: str = "") -> tuple[str, int] | None:
    """The memory cgroup directory of a process and its cgroup version, from the text of
    its /proc/<pid>/cgroup: `4:memory:/docker/ID` (v1, also on a hybrid host) or
    `0::/system.slice/docker-ID.scope` (v2, only when no v1 hierarchy has memory).

    None when the path is not one bench can trust: the root ("/", what a cgroup
    namespace shows) or a path without `must_contain` (a container's id: docker names
    the cgroup after the container with either cgroup driver).
    """
    v1 = v2 = None
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if "memory" in controllers.split(","):
            v1 = path
        elif parts[0] == "0" and controllers == "":
            v2 = path
    found, version = (v1, 1) if v1 is not None else (v2, 2)
    if found is None or found in ("", "/") or must_contain not in found:
        return None
    root = CGROUP_V1_MEMORY_ROOT if version == 1 else CGROUP_V2_ROOT
    return root + found.rstrip("/"), version


def cgroup_memory_files(directory: str, version: int) -> tuple[str, str]:
    """(usage file, stat file) of a memory cgroup directory."""
    usage = "memory.usage_in_bytes" if version == 1 else "memory.current"
    return f"{directory}/{usage}", f"{directory}/memory.stat"


def parse_memory_stat(text: str) -> dict[str, int]:
    """A cgroup's memory.stat ("cache 8192\\nrss 49152\\n...") as numbers by key."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            out[words[0]] = int(words[1])
    return out


def docker_mem_usage(usage: int, stats: Mapping[str, int]) -> int:
    """The memory figure `docker stats` shows, from the same two inputs its API returns
    (memory_stats.usage and memory_stats.stats): usage less the inactive file cache.

    The docker CLI's calculateMemUsageUnixNoCache (cli/command/container/stats_helpers.go):
    cgroup v1's total_inactive_file if the stats have it and it is below usage, else
    v2's inactive_file if below usage, else usage itself.
    """
    v1 = stats.get("total_inactive_file")
    if v1 is not None and v1 < usage:
        return usage - v1
    v2 = stats.get("inactive_file", 0)
    if v2 < usage:
        return usage - v2
    return usage
