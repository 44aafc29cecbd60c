"""Measurer: what a step costs, read through the step's backend's host.

Before the step: the round trip to the host, MemAvailable and the engine's storage
entries. After every
instance is ready: settle, then the host view (MemAvailable drop, storage growth),
the process view (PSS/USS/RSS) and the engine view (backend.sample) per instance.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.backends.base import Backend
from bench.clock import Clock
from bench.errors import first_line
from bench.runner.executor import Launch
from bench.scenario import Scenario

# Sampling waits on engine calls (docker's stats takes ~1 s per container on some
# engines), not on CPU: many in flight keep a 256-instance step's sampling short.
SAMPLING_WORKERS = 32


@dataclass
class Measurer:
    scenario: Scenario
    clock: Clock

    def before(self, backend: Backend) -> dict[str, Any]:
        host = backend.host
        dropped = host.drop_caches() if self.scenario.drop_caches else False
        return {
            # Before launch: the link as the step's consoles will see it.
            "rtt_s": host.rtt_s(),
            "mem_available": host.mem_available_bytes(),
            "storage": host.snapshot_entries(backend.storage_dirs()),
            "dropped_caches": dropped,
        }

    def after(
        self, backend: Backend, launches: list[Launch], before: dict[str, Any], n: int
    ) -> dict[str, Any]:
        """After the step is ready: settle, then the host, process and engine views."""
        sc, host = self.scenario, backend.host
        if sc.settle > 0:
            self.clock.sleep(sc.settle)
        if sc.drop_caches:
            host.drop_caches()
        after = host.mem_available_bytes()
        sampling_start = self.clock.now()
        live = [x for x in launches if x.error is None and x.inst.handle is not None]
        try:
            backend.prefetch([x.inst for x in live], host)
        except Exception as e:  # sampling is best effort; each sample says what it lacks
            for x in live:
                x.inst.info["sample_error"] = first_line(e)

        def sample(launch: Launch) -> None:
            inst = launch.inst
            try:
                raw = backend.sample(inst, host)
                pids = raw.pop("pids", [])
                inst.info.update(raw)
                if pids:
                    inst.info.update(host.process_memory(pids) or {})
            except Exception as e:  # a dead instance has no memory to report
                inst.info["sample_error"] = first_line(e)

        with ThreadPoolExecutor(
            max_workers=max(1, min(SAMPLING_WORKERS, len(live))),
            thread_name_prefix="bench-sample",
        ) as pool:
            list(pool.map(sample, live))
        drop = before["mem_available"] - after
        return {
            "rtt_s": before["rtt_s"],
            "settle_s": sc.settle,
            "dropped_caches": before["dropped_caches"],
            "mem_available_before_bytes": before["mem_available"],
            "mem_available_after_bytes": after,
            "host_drop_bytes": drop,
            "host_drop_per_instance_bytes": drop / n,
            "disk_growth_bytes": host.new_entries_bytes(before["storage"]),
            # Time bench spent asking engines and /proc about the running instances.
            "sampling_s": self.clock.now() - sampling_start,
            **host.memory_facts(),
        }
