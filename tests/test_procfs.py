"""bench.machines.procfs parses what LocalHost and SshHost read, on text captured from a real
machine (tests/data/procfs/), and SshHost's framing of several files in one read."""

import json
from pathlib import Path

import pytest

from bench.machines import procfs
from bench.machines.ssh_host import _MARK, _split_files

DATA = Path(__file__).resolve().parent / "data" / "procfs"


def _text(name: str) -> str:
    return (DATA / name).read_text()


def test_meminfo_in_bytes():
    m = procfs.parse_meminfo(_text("meminfo"))
    assert m["MemTotal"] == 24684100 * 1024
    assert m["MemAvailable"] == 23566464 * 1024
    assert m["HugePages_Total"] == 0  # a count, not kB: not scaled
    assert procfs.parse_meminfo("HugePages_Total:       7\nMemFree: 2 kB\n") == {
        "HugePages_Total": 7,
        "MemFree": 2048,
    }


def test_smaps_rollup_gives_pss_uss_rss_and_not_the_pss_breakdown():
    assert procfs.parse_rollup(_text("smaps_rollup")) == {
        "pss_bytes": 220 * 1024,  # Pss only, not Pss_Dirty/Pss_Anon/Pss_File
        "uss_bytes": (40 + 116) * 1024,  # Private_Clean + Private_Dirty
        "rss_bytes": 1712 * 1024,
    }
    assert procfs.parse_rollup("") is None  # an unreadable process


def test_per_mapping_smaps_is_summed_like_a_rollup():
    smaps = (
        "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
        "Rss:                 8 kB\nPss:                 4 kB\nPrivate_Clean:  0 kB\n"
        "Private_Dirty:       4 kB\nVmFlags: rd ex mr mw me dw\n"
        "7f00-7f01 rw-p 00000000 00:00 0\n"
        "Rss:                12 kB\nPss:                12 kB\nPrivate_Clean:  4 kB\n"
        "Private_Dirty:       8 kB\n"
    )
    assert procfs.parse_rollup(smaps) == {
        "pss_bytes": 16 * 1024,
        "uss_bytes": 16 * 1024,
        "rss_bytes": 20 * 1024,
    }


def test_grep_of_every_rollup_is_split_by_pid_and_summed():
    by_pid = procfs.parse_rollups_by_path(_text("grep-smaps_rollup"))
    assert sorted(by_pid) == [10011, 10022, 10028]
    assert by_pid[10011] == {
        "pss_bytes": 53893 * 1024,
        "uss_bytes": (5028 + 27420) * 1024,
        "rss_bytes": 78020 * 1024,
    }
    both = procfs.sum_memory(by_pid, [10011, 10022, 999999])  # 999999: gone, not counted
    assert both == {
        "pss_bytes": (53893 + 3060) * 1024,
        "uss_bytes": (5028 + 27420 + 52 + 2100) * 1024,
        "rss_bytes": (78020 + 8716) * 1024,
        "processes": 2,
    }
    assert procfs.sum_memory(by_pid, [999999]) is None


def test_stat_lines_give_parents_even_with_odd_command_names():
    parents = procfs.parse_stat_parents(_text("stat"))
    assert parents == {1: 0, 10: 2, 10011: 1, 10022: 1, 10028: 1}
    odd = "42 (a) b (c)) S 7 42 42 0 -1 4194560 0\n43 (tmux: server) S 42 43 43 0 -1\n"
    assert procfs.parse_stat_parents(odd) == {42: 7, 43: 42}
    assert procfs.parse_stat_parents("garbage\n\n") == {}


def test_cpuinfo_os_release_thp_and_loadavg():
    cpuinfo = _text("cpuinfo")
    assert procfs.parse_cpu_model(cpuinfo) == "AMD EPYC"
    assert procfs.parse_cpu_counts(cpuinfo) == (2, 2)
    # Two hyper-threads of one core: two logical CPUs, one physical core.
    ht = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n"
    assert procfs.parse_cpu_counts(ht) == (2, 1)
    assert procfs.parse_cpu_counts("processor: 0\nBogoMIPS: 50\n") == (1, None)  # arm64
    assert procfs.parse_os_release(_text("os-release")) == "Debian GNU/Linux 12 (bookworm)"
    assert procfs.parse_thp_mode("always [madvise] never") == "madvise"
    assert procfs.parse_thp_mode(None) is None
    assert procfs.parse_loadavg("0.52 0.58 0.59 1/189 4242\n") == pytest.approx(0.52)
    assert (procfs.parse_int("3\n"), procfs.parse_int("x"), procfs.parse_int(None)) == (
        3,
        None,
        None,
    )


def test_several_files_read_at_once_are_split_back():
    # What `echo MARKpath; cat path && echo || echo MARK` prints for: a file ending in a
    # newline, a pid file without one, an unreadable file, an empty file.
    out = (
        f"{_MARK}/proc/loadavg\n0.1 0.2 0.3 1/2 3\n\n"
        f"{_MARK}/run/x.pid\n1234\n"
        f"{_MARK}/nope\n{_MARK}\n"
        f"{_MARK}/empty\n\n"
    )
    files = _split_files(out, ["/proc/loadavg", "/run/x.pid", "/nope", "/empty", "/absent"])
    assert files["/proc/loadavg"].strip() == "0.1 0.2 0.3 1/2 3"
    assert files["/run/x.pid"] == "1234"
    assert files["/nope"] is None and files["/absent"] is None
    assert files["/empty"] == ""


# -- a container's cgroup memory (docker stats' figure without the stats call) ----------

V1_ID = "1262745b8baa4e6fba5fe68ca39cf27aea8027c938850777df5910b05a73398d"


def test_cgroup_v1_memory_gives_the_figure_docker_stats_gives():
    # Captured together from one container that had written 16 MiB it never read back
    # (inactive page cache): its /proc/<pid>/cgroup, its memory cgroup's two files, and
    # the stats endpoint's answer; `docker stats` showed "772KiB" for it.
    directory, version = procfs.cgroup_memory_dir(_text("docker-v1-cgroup"), V1_ID)
    assert (directory, version) == (f"/sys/fs/cgroup/memory/docker/{V1_ID}", 1)
    usage_file, stat_file = procfs.cgroup_memory_files(directory, version)
    assert usage_file.endswith("/memory.usage_in_bytes") and stat_file.endswith("/memory.stat")
    usage = procfs.parse_int(_text("docker-v1-memory.usage_in_bytes"))
    stats = procfs.parse_memory_stat(_text("docker-v1-memory.stat"))
    figure = procfs.docker_mem_usage(usage, stats)
    api = json.loads(_text("docker-v1-stats.json"))["memory_stats"]
    assert figure == procfs.docker_mem_usage(api["usage"], api["stats"]) == 772 * 1024
    assert stats["total_inactive_file"] == 16 * 2**20  # the subtraction really happened


def test_docker_mem_usage_follows_the_docker_cli():
    # cli/command/container/stats_helpers.go, calculateMemUsageUnixNoCache
    assert procfs.docker_mem_usage(100, {"total_inactive_file": 30, "inactive_file": 10}) == 70
    # v1's total is not below usage: the CLI falls through to inactive_file
    assert procfs.docker_mem_usage(100, {"total_inactive_file": 100, "inactive_file": 10}) == 90
    assert procfs.docker_mem_usage(100, {"inactive_file": 40}) == 60  # cgroup v2
    assert procfs.docker_mem_usage(100, {"inactive_file": 200}) == 100
    assert procfs.docker_mem_usage(100, {}) == 100


def test_cgroup_v2_and_the_systemd_driver():
    # A v2 host with docker's systemd cgroup driver (the kernel's format; this host is v1).
    cid = "ab" * 32
    text = f"0::/system.slice/docker-{cid}.scope\n"
    directory, version = procfs.cgroup_memory_dir(text, cid)
    assert (directory, version) == (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope", 2)
    assert procfs.cgroup_memory_files(directory, version)[0].endswith("/memory.current")
    stat = "anon 1048576\nfile 2097152\nactive_file 1048576\ninactive_file 524288\n"
    assert procfs.docker_mem_usage(3145728, procfs.parse_memory_stat(stat)) == 3145728 - 524288
    # v1 with the systemd driver: the memory line wins over the unified one (hybrid).
    hybrid = f"4:memory:/system.slice/docker-{cid}.scope\n0::/system.slice/docker-{cid}.scope\n"
    assert procfs.cgroup_memory_dir(hybrid, cid) == (
        f"/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope",
        1,
    )


def test_a_cgroup_path_bench_cannot_trust_is_refused():
    # Inside a cgroup namespace the container's own path reads "/": that is not its
    # cgroup as seen from the host, so the stats endpoint must answer instead.
    assert procfs.cgroup_memory_dir("4:memory:/\n0::/\n", "") is None
    assert procfs.cgroup_memory_dir(_text("docker-v1-cgroup"), "f" * 64) is None  # not it
    assert procfs.cgroup_memory_dir("", V1_ID) is None  # the process is gone
