"""The process view: PSS, USS and RSS summed over an instance's host processes (the
pids the engine view found), and what the engine itself costs apart from what runs in
the instance: a VM's VMM less its guest's RAM, a container's runtime processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.machines import procfs
from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.records import Facts

if TYPE_CHECKING:
    from bench.backends.base import Instance


class ProcessMemory(InstanceMeasurement):
    fields = (
        "pss_bytes",
        "uss_bytes",
        "rss_bytes",
        "processes",
        "vmm_overhead_bytes",
        "vmm_overhead_pss_bytes",
        "guest_ram_rss_bytes",
        "runtime_rss_bytes",
        "runtime_pss_bytes",
        "runtime_processes",
    )
    sampling = True

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        pids = found.get("pids")
        facts: Facts = dict(ctx.host.process_memory(pids) or {}) if pids else {}
        runtime = found.get("runtime_pids")
        if runtime:
            mem = ctx.host.process_memory(runtime)
            if mem is not None:
                facts["runtime_rss_bytes"] = mem["rss_bytes"]
                facts["runtime_pss_bytes"] = mem["pss_bytes"]
                facts["runtime_processes"] = mem["processes"]
        if "vmm_pid" in found and "guest_memory_bytes" in found:
            facts.update(vmm_overhead(ctx, found["vmm_pid"], found["guest_memory_bytes"]))
        return facts


def vmm_overhead(ctx: StepContext, pid: int, guest_bytes: int) -> Facts:
    """The VMM's own memory less its guest's RAM, Firecracker's way (its memory-overhead
    test: the VMM's RSS less the guest-RAM-sized mappings). The guest's RAM is found in
    the VMM's /proc/<pid>/smaps by size, equal to the VM's configured memory
    (procfs.guest_ram_mappings); the per-mapping list is needed, smaps_rollup has only
    totals. Read through the Host, so a remote hypervisor's VMM is read over SSH.

    The fields stay unset when the file cannot be read or no mapping has the guest's
    size (an overhead that still held the guest would be wrong, not rough); why is kept
    in the sample's extras (`vmm_overhead_missing`)."""
    path = f"/proc/{pid}/smaps"
    text = ctx.host.read_files([path]).get(path)
    if not text:
        return {"vmm_overhead_missing": f"{path} could not be read"}
    found = procfs.vmm_overhead(text, guest_bytes)
    if found is None:
        return {"vmm_overhead_missing": f"no mapping of the guest's {guest_bytes} bytes in {path}"}
    return dict(found)
