from bench.judge.summary import density_of, density_results, memory_disagreements, summarize

MiB = 2**20


def row(platform, n, host, pss, kind="container"):
    return {
        "platform": platform,
        "n": n,
        "kind": kind,
        "mem_host_per_instance_bytes": host,
        "mem_pss_per_instance_bytes": pss,
    }


def test_disagreement_over_25_percent_is_explained_once_per_platform():
    lines = memory_disagreements(
        [
            row("c", 1, 40 * MiB, 10 * MiB),
            row("c", 16, 7 * MiB, 3 * MiB),
            row("c", 64, 3 * MiB, 2.9 * MiB),
        ]
    )
    assert len(lines) == 1
    assert lines[0].startswith("c: host view and PSS per instance differ by more than 25% at N=1")
    assert "N=16" in lines[0] and "N=64" not in lines[0]
    assert "kernel memory no process owns" in lines[0]


def test_host_memory_that_rose_is_called_noise_not_silently_dropped():
    (line,) = memory_disagreements([row("c", 4, -9.7 * MiB, 5 * MiB)])
    assert "host MemAvailable rose during the step at N=4" in line


def test_summary_counts_refused_steps_and_uses_ready_instances_for_memory():
    samples = [
        {
            "platform": "v",
            "n": 1,
            "backend": "libvirt",
            "kind": "vm",
            "ok": True,
            "ready_s": 4.0,
            "accel": "tcg",
            "pss_bytes": 200 * MiB,
            "error": None,
        },
        {
            "platform": "v",
            "n": 1,
            "backend": "libvirt",
            "kind": "vm",
            "ok": False,
            "ready_s": None,
            "accel": "tcg",
            "pss_bytes": 20 * MiB,
            "error": "timeout",
        },
    ]
    steps = [
        {
            "platform": "v",
            "n": 1,
            "status": "ran",
            "host_drop_per_instance_bytes": 190 * MiB,
            "disk_growth_bytes": 32768,
            "launch_rate_per_s": 0.2,
        },
        {
            "platform": "v",
            "n": 2,
            "backend": "libvirt",
            "kind": "vm",
            "status": "refused",
            "limit": "memory_reserve",
        },
    ]
    one, two = summarize(samples, steps)
    assert (one["samples"], one["failures"], one["ready_p50_s"]) == (2, 1, 4.0)
    assert one["mem_pss_per_instance_bytes"] == 200 * MiB  # the still-booting one is left out
    assert one["storage_per_instance_bytes"] == 32768 and one["accel"] == "tcg"
    assert (two["n"], two["samples"], two["ready_p50_s"]) == (2, 0, None)


def test_density_only_for_platforms_that_searched():
    steps = [
        {"platform": "c", "n": 1, "status": "ran", "failures": 0, "limit": None},
        {
            "platform": "c",
            "n": 2,
            "status": "ran",
            "failures": 0,
            "limit": "slo",
            "limit_detail": "p95",
        },
    ]
    assert density_of(steps) == {"max_density": 1, "limit": "slo", "limit_detail": "p95"}
    # Which platforms searched comes from the run's metadata["searches"].
    assert density_results(steps, {"c": {"max": 8}}) == {"c": density_of(steps)}
    assert density_results(steps, {"v": {"max": 4}}) == {}
    assert density_of(steps[:1])["limit"] == "max"
