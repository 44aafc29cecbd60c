"""The comparability policy on metadata dicts: what must match, what is only shown."""

from __future__ import annotations

import copy

from bench.judge.comparability import (
    ABSENT,
    INFO,
    WARNING,
    differences,
    host_facts,
    mismatches,
    run_mismatches,
    warnings,
)

META = {
    "host": {
        "hostname": "lab1",
        "cpu_model": "EPYC",
        "cpu_cores": 2,
        "kernel": "6.1",
        "mem_total_bytes": 24 * 2**30,
        "load_avg_1m": 0.2,
    },
    "scenario": {
        "name": "ci",
        "description": "one",
        "repeat": 20,
        "platforms": [
            {"name": "c", "backend": "docker", "memory": 64 * 2**20},
            {"name": "v", "backend": "libvirt", "memory": 256 * 2**20},
        ],
    },
    "engines": {
        "c": {"engine": "docker", "docker_version": "20.10", "runtime": "runc", "image_id": "a"},
        "v": {"engine": "libvirt", "qemu_version": "7.2", "accel": "kvm"},
    },
}


def changed(**edits):
    """A copy of META with dotted paths set: changed(**{"host.kernel": "6.8"})."""
    m = copy.deepcopy(META)
    for path, value in edits.items():
        *parents, last = path.split(".")
        d = m
        for p in parents:
            d = d[p] if not p.isdigit() else d[int(p)]
        d[last] = value
    return m


def test_identical_runs_have_no_mismatch():
    assert mismatches([META, copy.deepcopy(META)]) == []
    assert run_mismatches(META, META, ["c", "v"]) == []


def test_host_facts_reads_the_host_record():
    assert host_facts(META)["hostname"] == "lab1"
    assert host_facts({}) == {}


def test_differences():
    assert differences([{"a": 1, "b": 2}, {"a": 1, "b": 3}], ["a", "b", "c"]) == {"b": [2, 3]}


def test_must_match_and_shown_host_facts():
    other = changed(**{"host.kernel": "6.8", "host.mem_total_bytes": 32 * 2**30})
    other["host"]["load_avg_1m"] = 5.0  # not a fact of the setup: never a mismatch
    found = {m.label: m for m in mismatches([META, other])}
    assert set(found) == {"host.kernel", "host.mem_total_bytes"}
    assert found["host.kernel"].severity == WARNING
    assert found["host.kernel"].values == ("6.1", "6.8")
    assert found["host.mem_total_bytes"].severity == INFO
    [line] = warnings(found.values())
    assert line.startswith("the runs come from different hosts (kernel 6.1 → 6.8): ")
    assert line.endswith("compare runs from one host")


def test_engine_versions_setup_accel_and_image():
    other = changed(
        **{
            "engines.c.docker_version": "24.0",
            "engines.c.runtime": "crun",
            "engines.c.image_id": "b",
            "engines.v.accel": "tcg",
        }
    )
    found = mismatches([META, other])
    assert [(m.label, m.severity) for m in found] == [
        ("c.docker_version", WARNING),
        ("c.runtime", WARNING),
        ("c.image_id", INFO),
        ("v.accel", WARNING),
    ]
    lines = warnings(found)
    assert lines == [
        "platform 'c': engine versions differ (docker_version 20.10 → 24.0): expected if the "
        "upgrade is what you test, otherwise pin the versions",
        "platform 'c': the engine setup differs (runtime runc → crun): the engine is part of "
        "what is measured; compare runs with the same engine setup",
        "platform 'v': accel differs (kvm → tcg): TCG and KVM boot times are not comparable; "
        "run both on hosts with the same accel",
    ]


def test_a_fact_only_one_run_records_is_not_a_change_but_a_version_is():
    newer = changed(**{"engines.c.storage_driver": "overlay2", "host.cgroup_version": 2})
    assert mismatches([META, newer]) == []
    podman = changed(**{"engines.c": {"engine": "docker", "podman_version": "5.0"}})
    found = mismatches([META, podman])
    # runtime and image_id are missing in the second: skipped, not "runc → None"
    assert [(m.key, m.values, m.severity) for m in found] == [
        ("docker_version", ("20.10", None), WARNING),
        ("podman_version", (None, "5.0"), WARNING),
    ]


def test_accels_seen_in_samples_count():
    # The engine says kvm, but some instances of the current run fell back to TCG.
    found = run_mismatches(META, META, ["v"], ({"v": ["kvm"]}, {"v": ["kvm", "tcg"]}))
    [m] = found
    assert (m.label, m.values) == ("v.accel", ("kvm", "kvm/tcg"))


def test_scenario_keys_and_platform_settings():
    other = changed(
        **{
            "scenario.name": "renamed",  # free: does not change what is measured
            "scenario.description": "two",
            "scenario.repeat": 5,
            "scenario.platforms.0.memory": 128 * 2**20,
        }
    )
    other["scenario"]["settle"] = 3.0  # a default a newer bench fills in: not a change
    found = mismatches([META, other])
    assert [(m.label, m.values) for m in found] == [
        ("scenario.repeat", (20, 5)),
        ("scenario.platforms.c.memory", (64 * 2**20, 128 * 2**20)),
    ]
    assert all(m.severity == WARNING for m in found)
    assert warnings(found) == [
        "the scenarios differ (repeat 20 → 5): timings depend on these; compare runs of one "
        "scenario file",
        "platform 'c': scenario settings differ (memory 67108864 → 134217728): timings depend "
        "on these; compare runs of one scenario file",
    ]


def test_only_the_given_platforms_are_compared():
    other = changed(**{"engines.v.qemu_version": "8.0"})
    assert run_mismatches(META, other, ["c"]) == []
    assert [m.label for m in run_mismatches(META, other, ["v"])] == ["v.qemu_version"]


def test_a_platform_is_compared_among_the_runs_that_have_it():
    only_c = changed(**{"engines": {"c": META["engines"]["c"]}})
    only_c["scenario"]["platforms"] = only_c["scenario"]["platforms"][:1]
    third = changed(**{"engines.v.qemu_version": "8.0"})
    found = mismatches([META, only_c, third])
    [m] = found
    assert m.label == "v.qemu_version"
    assert m.values == ("7.2", ABSENT, "8.0") and repr(ABSENT) == "-"
    assert mismatches([META, only_c]) == []  # one run has v: nothing to compare it with


def test_a_mismatch_explains_itself():
    other = changed(**{"host.kernel": "6.8", "host.mem_total_bytes": 1})
    by_key = {m.key: m for m in mismatches([META, other])}
    assert by_key["kernel"].message.startswith("the runs come from different hosts (kernel")
    assert by_key["mem_total_bytes"].message == "host.mem_total_bytes differs (25769803776 → 1)"
