"""Memory as the VMM anchors count it (issue 24, section 4): the host kernel's slab with
each host memory reading, a VM's VMM overhead less its guest's RAM (Firecracker's
method) and a container runtime's own processes, apart from the container's.

The /proc files are synthetic and written under the test's own tmp dir; the host that
reads them is a fake whose read_files maps /proc paths into that dir (never the real
/proc), through LocalHost's own file reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.backends.base import Instance
from bench.backends.oci import container_processes
from bench.machines import procfs
from bench.machines.clock import FakeClock
from bench.machines.console import Console
from bench.machines.host import LocalHost
from bench.machines.procfs import ProcessTable
from bench.measurements.base import Found, StepContext
from bench.measurements.engine import EngineView
from bench.measurements.host_memory import HostMemory
from bench.measurements.process_memory import ProcessMemory
from bench.model import kinds
from bench.plan.scenario import parse_scenario
from tests.helpers import FakeHost

MIB = 2**20
GUEST = 256 * MIB


def area(start: int, size_kib: int, perms: str, rss_kib: int, pss_kib: int, path: str = "") -> str:
    """One smaps entry as the kernel writes it (more fields than bench reads)."""
    head = f"{start:x}-{start + size_kib * 1024:x} {perms} 00000000 00:00 0"
    return (
        f"{head}{' ' * 26 + path if path else ' '}\n"
        f"Size:           {size_kib} kB\n"
        "KernelPageSize:        4 kB\n"
        f"Rss:            {rss_kib} kB\n"
        f"Pss:            {pss_kib} kB\n"
        "Pss_Dirty:             0 kB\n"
        "Private_Dirty:         0 kB\n"
        "THPeligible:    0\n"
        "VmFlags: rd wr mr mw me ac sd\n"
    )


# A QEMU under TCG, as read on this machine (sizes rounded): its binary, heap, the
# guest's 256 MiB RAM (rw-p, 60 MiB resident), TCG's translation buffer of the same
# size (rwxp: never guest RAM), a library.
QEMU_SMAPS = "".join(
    [
        area(0x56522FC74000, 4124, "r--p", 4124, 4000, "/usr/bin/qemu-system-x86_64"),
        area(0x56524F294000, 11000, "rw-p", 7784, 7784, "[heap]"),
        area(0x7F8257E00000, 256 * 1024, "rw-p", 61440, 61440),
        area(0x7F8268000000, 256 * 1024, "rwxp", 2048, 2048),
        area(0x7F82B1078000, 1368, "r-xp", 1112, 300, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ]
)
OWN_RSS_KIB = 4124 + 7784 + 2048 + 1112
OWN_PSS_KIB = 4000 + 7784 + 2048 + 300

MEMINFO = (
    "MemTotal: {t} kB\nMemAvailable: {a} kB\nSlab: {s} kB\nSReclaimable: {r} kB\n"
    "SUnreclaim: {u} kB\n"
)


class ProcHost(FakeHost):
    """A fake host whose /proc files are the test's files under `root`."""

    def __init__(self, root: Path, live=lambda: []):
        super().__init__(live)
        self.root = root
        self.memory: dict[int, dict[str, int]] = {}

    def write(self, path: str, text: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def read_files(self, paths):
        local = LocalHost().read_files([str(self.root / p.lstrip("/")) for p in paths])
        return dict(zip(paths, local.values(), strict=True))

    def process_memory(self, pids):
        return procfs.sum_memory(self.memory, pids)


def ctx_for(host, n=1) -> StepContext:
    from bench.backends.fake import FakeBackend

    sc = parse_scenario("name: t\nplatforms:\n  - name: f\n    backend: fake\n")
    backend = FakeBackend(sc.platforms[0], host=host, clock=FakeClock())
    return StepContext(sc, FakeClock(), backend, n=n)


def inst() -> Instance:
    return Instance("bench-x-f-s0-0", "x", "f", Console("BENCH_READY"))


# -- parsing ----------------------------------------------------------------------------


def test_smaps_mappings_are_parsed_with_their_sizes():
    areas = procfs.parse_smaps(QEMU_SMAPS)
    assert [a.perms for a in areas] == ["r--p", "rw-p", "rw-p", "rwxp", "r-xp"]
    assert areas[1].path == "[heap]" and areas[2].path == ""
    assert (areas[2].size, areas[2].rss, areas[2].pss) == (GUEST, 60 * MIB, 60 * MIB)
    assert areas[2].end - areas[2].start == GUEST


def test_vmm_overhead_is_rss_less_the_guest_ram_sized_mapping_not_tcg_s_buffer():
    got = procfs.vmm_overhead(QEMU_SMAPS, GUEST)
    assert got == {
        "vmm_overhead_bytes": OWN_RSS_KIB * 1024,
        "vmm_overhead_pss_bytes": OWN_PSS_KIB * 1024,
        "guest_ram_rss_bytes": 60 * MIB,
    }
    # The rwxp buffer of the same size stays in the overhead: it is QEMU's own.
    assert got["vmm_overhead_bytes"] > 2048 * 1024


def test_guest_ram_split_into_adjacent_areas_is_summed():
    base = 0x7F0000000000
    text = (
        area(base - 0x1000, 4, "rw-p", 4, 4)  # adjacent but before: not part of it
        + area(base, 128 * 1024, "rw-p", 1000, 1000)
        + area(base + 128 * MIB, 128 * 1024, "rw-p", 3000, 3000)
        + area(0x7F1000000000, 512, "rw-p", 512, 512)
    )
    ram = procfs.guest_ram_mappings(procfs.parse_smaps(text), GUEST)
    assert [a.size for a in ram] == [128 * MIB, 128 * MIB]
    got = procfs.vmm_overhead(text, GUEST)
    assert got is not None and got["guest_ram_rss_bytes"] == 4000 * 1024
    assert got["vmm_overhead_bytes"] == (4 + 512) * 1024


def test_no_guest_sized_mapping_gives_nothing_rather_than_the_whole_vm():
    assert procfs.vmm_overhead(QEMU_SMAPS, 512 * MIB) is None
    assert procfs.vmm_overhead(QEMU_SMAPS, 0) is None
    # Two areas of the guest's size that are not adjacent are not one RAM block.
    text = area(0x10000000, 128 * 1024, "rw-p", 1, 1) + area(0x90000000, 128 * 1024, "rw-p", 1, 1)
    assert procfs.vmm_overhead(text, GUEST) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n\x00\xff\n",
        "zz-yy rw-p 0 0 0\nRss: 12 kB\n",  # not hex
        "10-20 rw-p\nRss: 12 kB\n",  # a header cut short
        "Rss: 12 kB\nSize: 4 kB\n",  # fields before any header
        area(0x1000, 4, "rw-p", 4, 4).replace("4 kB", "-4 kB").replace("Rss:", "Rss:\n"),
        "1000-2000 rw-p 0 0 0\nSize: 99999999999999999999999 kB\nRss: x kB\n",
    ],
)
def test_hostile_smaps_text_never_raises(tmp_path, text):
    areas = procfs.parse_smaps(text)
    assert all(a.rss >= 0 for a in areas)
    assert procfs.vmm_overhead(text, GUEST) is None
    # Through the measurement, read from a file: the fields stay unset and it says why.
    host = ProcHost(tmp_path)
    host.write("/proc/9/smaps", text)
    facts = ProcessMemory("process_memory").sample(
        ctx_for(host), inst(), {"vmm_pid": 9, "guest_memory_bytes": GUEST}
    )
    assert list(facts) == ["vmm_overhead_missing"]


def test_a_mapped_file_name_in_no_encoding_does_not_lose_the_smaps(tmp_path):
    host = ProcHost(tmp_path)
    host.write("/proc/4242/smaps", "")
    raw = QEMU_SMAPS.replace("/usr/lib/x86_64-linux-gnu/libc.so.6", "/tmp/\udcff.so")
    (tmp_path / "proc/4242/smaps").write_bytes(raw.encode("utf-8", "surrogateescape"))
    facts = ProcessMemory("process_memory").sample(
        ctx_for(host), inst(), {"vmm_pid": 4242, "guest_memory_bytes": GUEST}
    )
    assert facts["vmm_overhead_bytes"] == OWN_RSS_KIB * 1024


def test_slab_fields_from_meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO.format(t=1000, a=500, s=300, r=200, u=100) + "Shmem: 9 kB\n")
    text = LocalHost().read_files([str(path)])[str(path)]
    assert procfs.parse_slab(text or "") == {
        "slab": 300 * 1024,
        "sreclaimable": 200 * 1024,
        "sunreclaim": 100 * 1024,
    }
    assert procfs.parse_slab("Slab: 7 kB\nSUnreclaim: lots kB\n") == {"slab": 7 * 1024}
    assert procfs.parse_slab("") == {}


# -- the measurements -------------------------------------------------------------------


def test_host_memory_keeps_both_slab_readings_raw_and_their_growth(tmp_path):
    host = ProcHost(tmp_path)
    ctx = ctx_for(host, n=4)
    host.write("/proc/meminfo", MEMINFO.format(t=1000, a=500, s=300, r=200, u=100))
    kept = HostMemory("host_memory").before(ctx)
    host.write("/proc/meminfo", MEMINFO.format(t=1000, a=400, s=340, r=220, u=120))
    facts = HostMemory("host_memory").after(ctx, kept)
    assert facts["slab_before_bytes"] == 300 * 1024
    assert facts["slab_after_bytes"] == 340 * 1024
    assert facts["sreclaimable_before_bytes"] == 200 * 1024
    assert facts["sreclaimable_after_bytes"] == 220 * 1024
    assert facts["sunreclaim_before_bytes"] == 100 * 1024
    assert facts["sunreclaim_after_bytes"] == 120 * 1024
    assert facts["slab_growth_bytes"] == 40 * 1024
    # MemAvailable still comes from the host's own reading (the fake's).
    assert facts["host_drop_bytes"] == 0


def test_host_memory_without_a_readable_meminfo_stores_no_slab(tmp_path):
    host = ProcHost(tmp_path)  # no meminfo written
    ctx = ctx_for(host)
    m = HostMemory("host_memory")
    facts = m.after(ctx, m.before(ctx))
    assert not [k for k in facts if "slab" in k or "sre" in k or "sun" in k]
    assert "host_drop_bytes" in facts


def test_process_view_adds_the_vmm_overhead_beside_pss(tmp_path):
    host = ProcHost(tmp_path)
    host.write("/proc/4242/smaps", QEMU_SMAPS)
    host.memory = {4242: {"pss_bytes": 80 * MIB, "uss_bytes": 70 * MIB, "rss_bytes": 90 * MIB}}
    found: Found = {"pids": [4242], "vmm_pid": 4242, "guest_memory_bytes": GUEST}
    facts = ProcessMemory("process_memory").sample(ctx_for(host), inst(), found)
    assert facts["pss_bytes"] == 80 * MIB
    assert facts["vmm_overhead_bytes"] == OWN_RSS_KIB * 1024
    assert facts["guest_ram_rss_bytes"] == 60 * MIB
    assert "runtime_rss_bytes" not in facts


def test_process_view_says_why_a_vmm_overhead_is_missing(tmp_path):
    host = ProcHost(tmp_path)
    host.write("/proc/4242/smaps", QEMU_SMAPS)
    m = ProcessMemory("process_memory")
    gone = m.sample(ctx_for(host), inst(), {"vmm_pid": 77, "guest_memory_bytes": GUEST})
    assert gone == {"vmm_overhead_missing": "/proc/77/smaps could not be read"}
    other = m.sample(ctx_for(host), inst(), {"vmm_pid": 4242, "guest_memory_bytes": 3 * GUEST})
    assert "no mapping of the guest's" in str(other["vmm_overhead_missing"])
    assert "vmm_overhead_bytes" not in other


def test_process_view_measures_the_runtime_apart_from_the_container(tmp_path):
    host = ProcHost(tmp_path)
    host.memory = {
        10: {"pss_bytes": 5 * MIB, "uss_bytes": 4 * MIB, "rss_bytes": 12 * MIB},  # shim
        11: {"pss_bytes": 1 * MIB, "uss_bytes": 1 * MIB, "rss_bytes": 2 * MIB},  # init
    }
    found: Found = {"pids": [11, 10], "runtime_pids": [10]}
    facts = ProcessMemory("process_memory").sample(ctx_for(host), inst(), found)
    assert facts["pss_bytes"] == 6 * MIB and facts["processes"] == 2
    assert facts["runtime_pss_bytes"] == 5 * MIB
    assert facts["runtime_rss_bytes"] == 12 * MIB
    assert facts["runtime_processes"] == 1


def test_engine_view_passes_the_runtime_and_vmm_on_without_storing_them(tmp_path):
    class Backend:
        host = ProcHost(tmp_path)

        def sample(self, inst, host):
            return {
                "pids": [5, 6, "x"],
                "runtime_pids": [6],
                "vmm_pid": 5,
                "guest_memory_bytes": GUEST,
                "engine_mem_bytes": 1,
            }

    ctx = ctx_for(ProcHost(tmp_path))
    ctx.backend = Backend()  # type: ignore[assignment]
    found: Found = {}
    raw = EngineView("engine").sample(ctx, inst(), found)
    assert raw == {"engine_mem_bytes": 1}
    assert found == {"pids": [5, 6], "runtime_pids": [6], "vmm_pid": 5, "guest_memory_bytes": GUEST}


def test_runtime_processes_under_runc_and_under_gvisor():
    # runc: shim 10 keeps init 11 (child 12); 20 is another container's shim.
    procs = ProcessTable({10: 1, 11: 10, 12: 11, 20: 1, 21: 20})
    pids, runtime = container_processes(procs, 11, 10, kinds.CONTAINER)
    assert sorted(pids) == [10, 11, 12] and runtime == [10]
    pids, runtime = container_processes(procs, 11, 1, kinds.CONTAINER)  # init keeps nothing
    assert sorted(pids) == [11, 12] and runtime == []
    assert container_processes(procs, 0, None, kinds.CONTAINER) == ([], [])
    # runsc, as docker runs it here: shim 30 runs the gofer 31 and the sandbox 32 (the
    # pid docker reports), whose child 33 holds the application's address space.
    procs = ProcessTable({30: 1, 31: 30, 32: 30, 33: 32, 40: 1})
    pids, runtime = container_processes(procs, 32, 30, kinds.SANDBOX)
    assert sorted(pids) == [30, 31, 32, 33]
    assert sorted(runtime) == [30, 31, 32]


# -- the report -------------------------------------------------------------------------


def engine_memory_run(root):
    """A spectrum run whose samples and steps carry the engine-memory fields."""
    from tests.test_report import SPECTRUM, SPECTRUM_ENGINES, sample, step, write_run

    own = {"runc": 12, "runsc": 60, "microvm": 45, "vm": 70}  # MiB
    samples, steps = [], []
    for name, backend, kind, runtime, kernel, accel in SPECTRUM:
        vm = kinds.is_vm(kind)
        mem = {"vmm_overhead_bytes" if vm else "runtime_rss_bytes": own[name] * MIB}
        for n in (1, 2):
            samples += [
                sample(
                    name,
                    n,
                    0.2,
                    backend=backend,
                    kind=kind,
                    runtime=runtime,
                    guest_kernel=kernel,
                    accel=accel,
                    pss_bytes=100 * MIB,
                    **mem,
                )
                for _ in range(n)
            ]
            steps.append(
                step(
                    name, n, kind=kind, backend=backend, status="ran", slab_growth_bytes=n * 3 * MIB
                )
            )
    scenario = {
        "name": "spectrum",
        "platforms": [{"name": p[0], "backend": p[1]} for p in SPECTRUM],
    }
    return write_run(
        root,
        "spectrum-20261206-000000-dddd",
        samples,
        steps,
        scenario=scenario,
        engines=SPECTRUM_ENGINES,
    )


def test_the_table_shows_the_engine_s_own_memory_and_the_slab_beside_pss(tmp_path):
    from bench.report import tables
    from bench.report.frame import load_frames

    frames = load_frames([engine_memory_run(tmp_path)])
    table = tables.classic_table(frames)
    rows = list(table.index)
    pss = rows.index("memory per instance, PSS")
    assert rows[pss + 1 : pss + 3] == [tables.OVERHEAD, tables.SLAB]
    cells = table.loc[tables.OVERHEAD].tolist()
    assert cells == [
        "runtime processes: 12.0 MiB (N=2, n=2)",
        "runtime processes: 60.0 MiB (N=2, n=2)",
        "VMM less guest RAM: 45.0 MiB (N=2, n=2)",
        "VMM less guest RAM: 70.0 MiB (N=2, n=2)",
        "Firecracker: < 5 MiB VMM overhead",
    ]
    # Slab growth: 6 MiB over a step of 2, per instance, one step.
    assert table.loc[tables.SLAB].tolist()[:4] == ["3.0 MiB (N=2, n=1)"] * 4
    assert "guest-RAM-sized mapping" in tables.rows_note([table])


def test_runs_without_the_fields_keep_their_table(tmp_path):
    from bench.report import tables
    from bench.report.frame import load_frames
    from tests.test_report import spectrum_run

    table = tables.classic_table(load_frames([spectrum_run(tmp_path)]))
    assert tables.OVERHEAD not in table.index and tables.SLAB not in table.index
    assert tables.rows_note([table]) == tables.ROWS_NOTE


def test_the_memory_plot_gets_both_panels_with_units(tmp_path):
    from bench.report import plots
    from bench.report.frame import load_frames

    fig = plots.memory_per_instance(load_frames([engine_memory_run(tmp_path)]))
    titles = [ax.get_title() for ax in fig.axes]
    assert "engine's own: VMM less guest RAM / runtime, RSS" in titles
    assert "host kernel: Slab growth" in titles
    slab = fig.axes[titles.index("host kernel: Slab growth")]
    assert slab.get_ylabel() == "MiB per instance"
    # The slab panel's line is 3 MiB per instance at both N, for each platform.
    assert {tuple(line.get_ydata()) for line in slab.get_lines()} == {(3.0, 3.0)}
    import matplotlib.pyplot as plt

    plt.close(fig)
