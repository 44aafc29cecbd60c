"""Memory as the VMM anchors count it (issue 24, section 4), on the real engines: a
direct-QEMU microVM's VMM overhead less its guest's RAM, and a docker container's
containerd-shim measured apart from the container, each with the host's slab readings.
N=1 each; run_real removes what a step left, even when it fails."""

from __future__ import annotations

from tests.integration.bench_runs import run_real

MiB = 2**20


def _slab_read(step):
    for stem in ("slab", "sreclaimable", "sunreclaim"):
        assert step[f"{stem}_before_bytes"] > 0 and step[f"{stem}_after_bytes"] > 0
    assert step["slab_growth_bytes"] == step["slab_after_bytes"] - step["slab_before_bytes"]


def test_qemu_vmm_overhead_is_positive_and_below_its_rss(qemu_binary):
    sink, _, left = run_real(
        "name: t\ntimeout: 120s\nsettle: 0s\nwarmup: 0\ncounts: [1]\nplatforms:\n"
        "  - {name: vm, backend: qemu, image: busybox, accel: tcg, memory: 192MiB}\n"
    )
    assert left == []
    (s,) = sink.samples
    assert s["ok"], (s["error"], s["console_tail"])
    extras = s.get("extras") or {}
    assert "vmm_overhead_missing" not in extras, extras["vmm_overhead_missing"]
    # The guest touched part of its 192 MiB; QEMU's own is the rest of its RSS.
    assert 0 < s["guest_ram_rss_bytes"] <= 192 * MiB
    assert 0 < s["vmm_overhead_bytes"] < s["rss_bytes"]
    assert 0 < s["vmm_overhead_pss_bytes"] < s["pss_bytes"]
    # smaps (per mapping) and smaps_rollup were read a moment apart: nearly one RSS.
    total = s["vmm_overhead_bytes"] + s["guest_ram_rss_bytes"]
    assert abs(total - s["rss_bytes"]) < 8 * MiB
    print(
        f"qemu microvm tcg: rss {s['rss_bytes'] / MiB:.1f} MiB = guest RAM "
        f"{s['guest_ram_rss_bytes'] / MiB:.1f} + VMM {s['vmm_overhead_bytes'] / MiB:.1f} MiB"
    )
    (step,) = sink.steps
    _slab_read(step)


def test_docker_shim_is_measured_apart_from_the_container(docker_api):
    sink, _, left = run_real(
        "name: t\ntimeout: 60s\nsettle: 0s\nwarmup: 0\ncounts: [1]\nplatforms:\n"
        "  - {name: c, backend: docker, image: busybox, runtime: runc}\n"
    )
    assert left == []
    (s,) = sink.samples
    assert s["ok"], (s["error"], s["console_tail"])
    # One containerd-shim keeps it: its memory is part of the process view, and apart.
    assert s["runtime_processes"] == 1 and s["processes"] >= 2
    assert 1 * MiB < s["runtime_rss_bytes"] < s["rss_bytes"]
    assert 0 < s["runtime_pss_bytes"] < s["pss_bytes"]
    assert s.get("vmm_overhead_bytes") is None
    print(
        f"docker runc: shim rss {s['runtime_rss_bytes'] / MiB:.1f} MiB "
        f"pss {s['runtime_pss_bytes'] / MiB:.1f} MiB of the view's pss "
        f"{s['pss_bytes'] / MiB:.1f} MiB"
    )
    (step,) = sink.steps
    _slab_read(step)
