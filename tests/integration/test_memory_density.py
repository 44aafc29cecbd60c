"""Memory, disk and density on the real engines (issue: memory, disk and density)."""

from __future__ import annotations

from bench.judge.summary import density_results, summarize
from tests.integration.bench_runs import run_real

MiB = 2**20


def test_memory_views_and_disk_for_the_busybox_pair(docker_api, libvirt_conn):
    sink, engines, left = run_real(
        "name: t\ntimeout: 120s\nsettle: 2s\ncounts: [2]\n"
        "platforms:\n"
        "  - {name: c, backend: docker, image: busybox, memory: 64MiB}\n"
        "  - {name: v, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}\n"
    )
    assert left == []
    assert all(s["ok"] for s in sink.samples), [s["error"] for s in sink.samples]
    by = {s["platform"]: s for s in sink.samples}
    c, v = by["c"], by["v"]
    # Process view: every view present and plausible; PSS <= RSS, USS <= PSS.
    for s in (c, v):
        assert s["processes"] >= 1
        assert 0 < s["uss_bytes"] <= s["pss_bytes"] <= s["rss_bytes"]
        assert s["engine_mem_bytes"] > 0 and s["engine_mem_source"]
        assert s["disk_writable_bytes"] is not None and s["disk_writable_bytes"] >= 0
    # A container is its shim plus a shell: a few MiB. A VM is a whole qemu: 50+ MiB.
    assert c["pss_bytes"] < 64 * MiB and c["engine_mem_bytes"] < 64 * MiB
    assert 50 * MiB < v["pss_bytes"] < 1024 * MiB and v["engine_mem_bytes"] > 50 * MiB
    assert c["pss_bytes"] * 5 < v["pss_bytes"]
    # Host view and the step's storage growth, per step.
    steps = {st["platform"]: st for st in sink.steps}
    for st in steps.values():
        assert st["mem_available_before_bytes"] > 0 and st["mem_available_after_bytes"] > 0
        assert st["host_drop_bytes"] == (
            st["mem_available_before_bytes"] - st["mem_available_after_bytes"]
        )
        assert st["disk_growth_bytes"] > 0  # container dirs / per-domain files appeared
        assert st["thp_mode"] is not None and "ksm_pages_sharing" in st
    # The VM's host view is clearly positive (qemu touches tens of MiB per guest).
    assert steps["v"]["host_drop_per_instance_bytes"] > 20 * MiB
    rows = {r["platform"]: r for r in summarize(sink.samples, sink.steps)}
    assert rows["c"]["mem_pss_per_instance_bytes"] < rows["v"]["mem_pss_per_instance_bytes"]
    # The image all instances share is measured once, in the run's engine facts.
    assert 0 < engines["c"]["image_bytes"] < 50 * MiB
    assert engines["v"]["image_bytes"] > 1 * MiB


def test_density_search_stops_on_a_deliberately_low_slo(docker_api):
    sink, _, left = run_real(
        "name: t\ntimeout: 60s\nsettle: 0s\n"
        "density: {factor: 2, max: 64, slo: {ready_p95: 1ms}, memory_reserve: 512MiB}\n"
        "platforms:\n  - {name: c, backend: docker, image: busybox}\n"
    )
    assert left == []
    # No container is ready within 1 ms of its launch call: the first step ends it.
    assert [st["n"] for st in sink.steps] == [1]
    assert sink.steps[0]["limit"] == "slo"
    assert density_results(sink.steps, sink.searches)["c"]["max_density"] == 0
    assert len(sink.samples) == 1 and sink.samples[0]["ok"]


def test_memory_guard_refuses_a_vm_step_before_starting_it(libvirt_conn):
    from bench.machines.host import LocalHost

    available = LocalHost().mem_available_bytes()
    # VMs that fit the host one by one, but never two above the reserve.
    vm_mib = int(available * 0.6) // MiB
    reserve_mib = int(available * 0.5) // MiB
    domains_before = {d.name() for d in libvirt_conn.listAllDomains()}
    sink, _, left = run_real(
        f"name: t\ntimeout: 60s\nsettle: 0s\nmemory_reserve: {reserve_mib}MiB\ncounts: [2]\n"
        "platforms:\n"
        f"  - {{name: v, backend: libvirt, image: busybox, accel: tcg, memory: {vm_mib}MiB}}\n"
    )
    assert left == []
    (step,) = sink.steps
    assert step["status"] == "refused" and step["limit"] == "memory_reserve"
    assert "configured memory" in step["limit_detail"]
    assert sink.samples == []  # not one instance of it was started
    assert {d.name() for d in libvirt_conn.listAllDomains()} == domains_before


def test_docker_memory_from_cgroup_files_matches_docker_stats(docker_api):
    """A local engine's engine view comes from the container's cgroup files, not the
    stats endpoint; for a running container it is the figure the endpoint gives."""
    import secrets

    from bench.backends.base import Instance
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.backends.oci import instance_labels
    from bench.machines.console import Console
    from bench.machines.procfs import docker_mem_usage

    run_id = f"test-{secrets.token_hex(3)}"
    backend = DockerBackend(DockerSettings(name="c", backend="docker", image="busybox"))
    backend.preflight()
    backend.prepare()
    api = backend.connect()
    # 8 MiB written and never read back: inactive page cache the figure must leave out.
    # `exec`: no process starts after the line the test waits for.
    script = (
        "dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; sync; echo WRITTEN; exec sleep 60"
    )
    c = api.create_container(
        backend._image_ref,
        command=["sh", "-c", script],
        name=f"bench-{run_id}-c",
        labels=instance_labels(run_id, "c"),
        host_config=api.create_host_config(network_mode="none"),
    )
    try:
        api.start(c["Id"])
        # Sampled once the file is written (its output says so), not after a guessed sleep.
        for line in api.logs(c["Id"], stream=True, follow=True):
            if b"WRITTEN" in line:
                break
        inst = Instance(name=f"bench-{run_id}-c", run_id=run_id, platform="c", console=Console("X"))
        inst.handle = c["Id"]

        def stats_figure() -> int:
            raw = api.stats(c["Id"], stream=False, one_shot=True)["memory_stats"]
            return docker_mem_usage(raw["usage"], raw["stats"])

        # The container may still be settling (the exec): docker's own figure read just
        # before and just after bench's brackets it.
        before = stats_figure()
        sampled = backend.sample(inst, backend.host)
        after = stats_figure()
        got = sampled["engine_mem_bytes"]
        assert sampled["engine_mem_source"].startswith("cgroup v"), sampled
        assert 0.95 * min(before, after) <= got <= 1.05 * max(before, after), (before, got, after)
        assert sampled["engine_mem_bytes"] < 4 * MiB  # the 8 MiB file is not counted
    finally:
        api.remove_container(c["Id"], force=True)
        assert backend.leftovers(run_id) == []
        backend.close()
