"""The measurer's figures and the order of its readings, pinned on a recording host.

Written against the measurer before the measurement seam (bench.measurements) and kept
unchanged through it: every host call in the same order, every figure the same, with
the same virtual times (sampling_s covers the engine's prefetch, the instance samples
and the storage walk; not the MemAvailable reading nor the host's settings).
"""

from pathlib import Path

import pytest

from bench.backends.base import Instance
from bench.backends.fake import FakeBackend
from bench.machines.clock import FakeClock
from bench.machines.console import Console
from bench.model.records import Sample, backend_facts
from bench.plan.scenario import parse_scenario
from bench.runner.executor import Launch
from bench.runner.measurer import Measurer
from tests.helpers import FakeHost

MiB = 2**20
STORAGE = Path("/var/lib/fake")


class RecordingHost(FakeHost):
    """A fake host that logs each reading and takes virtual time for some of them."""

    def __init__(self, clock, live):
        super().__init__(live, total=8 * 2**30, per_instance=100 * MiB)
        self.clock, self.calls = clock, []

    def drop_caches(self):
        self.calls.append("drop_caches")
        return True

    def rtt_s(self):
        self.calls.append("rtt_s")
        return 0.003

    def mem_available_bytes(self):
        self.calls.append("mem_available")
        self.clock.sleep(0.125)  # not part of sampling_s
        return super().mem_available_bytes()

    def snapshot_entries(self, dirs):
        self.calls.append(("snapshot", tuple(dirs)))
        return {d: {"old"} for d in dirs}

    def new_entries_bytes(self, before):
        self.calls.append(("new_entries", tuple(before)))
        self.clock.sleep(0.5)  # walking the new entries: part of sampling_s
        return 3 * 4096

    def process_memory(self, pids):
        # Called from the sampling threads: no virtual time here (they are not clock
        # participants), and no order between instances.
        return {"pss_bytes": 1000 * len(pids), "uss_bytes": 10, "rss_bytes": 99, "processes": 2}

    def memory_facts(self):
        self.calls.append("memory_facts")
        self.clock.sleep(1.0)  # not part of sampling_s
        return {"ksm_run": 0, "thp_mode": "madvise", "load_avg_1m": 0.5, "new_fact": 7}


class SampledBackend(FakeBackend):
    """A fake whose instances have processes and an engine figure; index 1's sample
    fails, index 2 has no processes."""

    def storage_dirs(self):
        return [STORAGE]

    def prefetch(self, insts, host):
        host.calls.append(("prefetch", len(insts)))
        self.clock.sleep(0.25)  # one call for all: part of sampling_s

    def sample(self, inst, host):
        if inst.handle == 1:
            raise RuntimeError("container gone\nsecond line")
        pids = [] if inst.handle == 2 else [100 + inst.handle, 200 + inst.handle]
        return {
            "pids": pids,
            "engine_mem_bytes": 5 * MiB,
            "engine_mem_source": "fake",
            "vendor_x": 1,
        }


def measure(drop_caches=True, settle="2s", n=4, failed=(3,), prefetch_error=None):
    sc = parse_scenario(
        f"name: t\nsettle: {settle}\ndrop_caches: {str(drop_caches).lower()}\ncounts: [{n}]\n"
        "platforms:\n  - name: f\n    backend: fake\n"
    )
    clock = FakeClock(start=100.0)
    live = {}
    host = RecordingHost(clock, lambda: list(live))
    backend = SampledBackend(sc.platforms[0], host=host, clock=clock)
    if prefetch_error:

        def broken(insts, host):
            raise prefetch_error

        backend.prefetch = broken
    m = Measurer(sc, clock)
    before = m.before(backend)
    launches = []
    for i in range(n):
        inst = Instance(f"bench-x-f-s0-{i}", "x", "f", Console("BENCH_READY"))
        launch = Launch(inst)
        if i in failed:
            launch.error = "fake launch failure"
        else:
            inst.handle = i
            live[inst.name] = inst
        launches.append(launch)
    t0 = clock.now()
    measured = m.after(backend, launches, before, n)
    return measured, launches, host, clock.now() - t0


def test_readings_in_order_and_figures():
    measured, launches, host, took = measure()
    # Before launch: caches dropped first, then the link, MemAvailable, the storage;
    # after: settle, caches, MemAvailable, the engine's prefetch, the storage walk, and
    # the host's settings last.
    assert host.calls == [
        "drop_caches",
        "rtt_s",
        "mem_available",
        ("snapshot", (STORAGE,)),
        "drop_caches",
        "mem_available",
        ("prefetch", 3),
        ("new_entries", (STORAGE,)),
        "memory_facts",
    ]
    assert measured == {
        "rtt_s": 0.003,
        "settle_s": 2.0,
        "dropped_caches": True,
        "mem_available_before_bytes": 8 * 2**30,
        "mem_available_after_bytes": 8 * 2**30 - 3 * 100 * MiB,
        "host_drop_bytes": 3 * 100 * MiB,
        "host_drop_per_instance_bytes": 3 * 100 * MiB / 4,
        "disk_growth_bytes": 3 * 4096,
        "sampling_s": pytest.approx(0.75, abs=1e-9),  # prefetch 0.25 + storage walk 0.5
        "ksm_run": 0,
        "thp_mode": "madvise",
        "load_avg_1m": 0.5,
        "new_fact": 7,
    }
    # settle 2 + MemAvailable 0.125 + prefetch 0.25 + walk 0.5 + settings 1
    assert took == pytest.approx(3.875, abs=1e-9)
    # Every launched instance's boundary is read after ready (bench.measurements.boundary);
    # a fake backend names no host process, which the mapping says.
    bounds = [x.inst.info.pop("boundary", None) for x in launches]
    assert [b is not None for b in bounds] == [True, True, True, False]
    assert "pids" in bounds[0]["not_read"]
    info = [x.inst.info for x in launches]
    assert info[0] == {
        "engine_mem_bytes": 5 * MiB,
        "engine_mem_source": "fake",
        "vendor_x": 1,
        "pss_bytes": 2000,
        "uss_bytes": 10,
        "rss_bytes": 99,
        "processes": 2,
    }
    assert info[1] == {"sample_error": "container gone"}  # its first line only
    # No processes: the engine view only (no process view).
    assert info[2] == {"engine_mem_bytes": 5 * MiB, "engine_mem_source": "fake", "vendor_x": 1}
    assert info[3] == {}  # never launched: never sampled
    # What reaches the stored sample: declared fields, the vendor's key under extras.
    s = Sample(platform="f", n=4, **backend_facts(info[0]))
    assert (s.pss_bytes, s.engine_mem_bytes, s.extras) == (2000, 5 * MiB, {"vendor_x": 1})


def test_without_drop_caches_or_settle():
    measured, _, host, took = measure(drop_caches=False, settle="0s")
    assert "drop_caches" not in host.calls
    assert measured["dropped_caches"] is False and measured["settle_s"] == 0
    assert took == pytest.approx(1.875, abs=1e-9)


def test_a_failed_prefetch_marks_every_live_instance_and_sampling_goes_on():
    _, launches, host, _ = measure(prefetch_error=OSError("engine busy"))
    info = [x.inst.info for x in launches]
    for i in info:
        i.pop("boundary", None)
    assert info[0]["sample_error"] == "engine busy" and info[0]["pss_bytes"] == 2000
    assert info[1] == {"sample_error": "container gone"}  # its own error replaces it
    assert info[2]["sample_error"] == "engine busy" and info[3] == {}
