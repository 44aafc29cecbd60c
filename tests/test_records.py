"""The typed result model (bench.model.records) and the upgrade of older results
(bench.model.results)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import bench
from bench.judge.summary import summary_columns
from bench.model.errors import UsageError
from bench.model.records import (
    Sample,
    StepRecord,
    backend_facts,
    fields_of,
    metrics,
    split_extras,
    unit_of,
)
from bench.model.results import load_run

DATA = Path(__file__).parent / "data"
# A real run written by bench 0.1 (schema 1): quickstart, docker and libvirt under TCG.
V1_RUN = DATA / "schema1-quickstart"


def test_every_metric_has_a_unit_in_its_name():
    for model in (Sample, StepRecord):
        for name, info in metrics(model).items():
            assert info.unit, name
            suffix = {"s": "_s", "bytes": "_bytes", "1/s": "_per_s"}[info.unit]
            assert name.endswith(suffix), name
            for column in info.summary:
                assert column.endswith(suffix), column
            assert info.worse in ("higher", "lower")


def test_a_backend_key_cannot_shadow_a_core_field():
    facts = backend_facts(
        {"ok": False, "ready_s": 99.0, "container_id": "abc", "engine_mem_bytes": 5, "_sock": 1}
    )
    s = Sample(platform="c", n=1, ok=True, ready_s=0.2, **facts)
    assert s.ok is True and s.ready_s == 0.2
    assert s.engine_mem_bytes == 5
    assert s.extras == {"ok": False, "ready_s": 99.0, "container_id": "abc"}


def test_records_refuse_undeclared_fields_and_are_immutable():
    with pytest.raises(ValueError):
        Sample(platform="c", n=1, no_such_field=1)
    s = Sample(platform="c", n=1)
    with pytest.raises(ValueError):
        s.ok = True


def test_split_extras_keeps_declared_fields_and_nests_the_rest():
    row = split_extras(Sample, {"platform": "c", "n": 2, "balloon_actual_bytes": 7})
    assert row == {"platform": "c", "n": 2, "extras": {"balloon_actual_bytes": 7}}


def test_units_and_summary_columns_come_from_the_declarations():
    assert unit_of("ready_s") == "s" and unit_of("pss_bytes") == "bytes"
    assert unit_of("launch_rate_per_s") == "1/s" and unit_of("no_such") is None
    cols = summary_columns()
    assert cols[:3] == ["queued_s", "create_s", "start_s"]
    assert {"ready_p50_s", "ready_p95_s", "mem_host_per_instance_bytes"} <= set(cols)
    assert fields_of(StepRecord)["disk_growth_bytes"].per_instance


def test_schema1_run_is_upgraded_in_memory_not_refused():
    raw = json.loads((V1_RUN / "metadata.json").read_text())
    assert raw["schema_version"] == 1 and "hosts" not in raw
    run = load_run(V1_RUN)
    m = run.metadata
    assert m["schema_version"] == bench.SCHEMA_VERSION == 2
    hostname = raw["host"]["hostname"]
    assert list(m["hosts"]) == [hostname]
    assert m["hosts"][hostname]["cpu_model"] == raw["host"]["cpu_model"]
    assert {e["host"] for e in m["engines"].values()} == {hostname}
    assert m["searches"] == {}  # quickstart has fixed counts
    assert {s["host"] for s in run.samples} == {hostname}
    assert {st["host"] for st in run.steps} == {hostname}
    docker = [s for s in run.samples if s["backend"] == "docker"]
    # Backend facts of schema 1 move into extras; core fields stay where they were.
    assert all(s["extras"]["container_id"] for s in docker)
    assert all("container_id" not in s for s in docker)
    assert all(s["ready_s"] > 0 for s in run.samples if s["ok"])
    # The files on disk are left as they were written.
    assert json.loads((V1_RUN / "metadata.json").read_text()) == raw


def test_schema1_density_searches_follow_the_schema1_rule(tmp_path):
    d = tmp_path / "r"
    shutil.copytree(V1_RUN, d)
    meta = json.loads((d / "metadata.json").read_text())
    meta["scenario"]["density"] = {"max": 8}
    meta["scenario"]["platforms"][0]["counts"] = None  # searches (scenario density)
    meta["scenario"]["platforms"][1]["counts"] = [1]  # its own counts: no search
    (d / "metadata.json").write_text(json.dumps(meta))
    run = load_run(d)
    assert run.metadata["searches"] == {"container": {"max": 8}}


def test_a_run_from_a_newer_bench_is_refused_with_what_to_do(tmp_path):
    d = tmp_path / "r"
    shutil.copytree(V1_RUN, d)
    meta = json.loads((d / "metadata.json").read_text())
    meta["schema_version"] = bench.SCHEMA_VERSION + 1
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="newer bench.*upgrade bench"):
        load_run(d)


def test_a_running_run_is_judged_by_its_pid_only_on_its_own_controller(tmp_path):
    d = tmp_path / "r"
    shutil.copytree(V1_RUN, d)
    meta = json.loads((d / "metadata.json").read_text())
    dead_pid = 2**22 + 1  # above pid_max's default: no such process
    meta.update(status="running", pid=dead_pid)
    (d / "metadata.json").write_text(json.dumps(meta))
    assert load_run(d).status == "incomplete"  # schema 1: the controller was this machine
    meta.update(controller="some-other-controller")
    (d / "metadata.json").write_text(json.dumps(meta))
    assert load_run(d).status == "running"  # its pid means nothing here


def test_a_running_run_is_alive_while_its_lock_is_held_not_by_a_reused_pid(tmp_path):
    from bench.model import owner

    d = tmp_path / "r"
    shutil.copytree(V1_RUN, d)
    meta = json.loads((d / "metadata.json").read_text())
    # A live process that is not bench took the pid: the run is still over.
    other = subprocess.Popen(["sleep", "30"])
    try:
        meta.update(status="running", pid=other.pid)
        (d / "metadata.json").write_text(json.dumps(meta))
        assert load_run(d).status == "incomplete"
        with owner.run_lock(meta["run_id"]):  # what a live bench run holds
            assert load_run(d).status == "running"
    finally:
        other.kill()
        other.wait()


def test_run_ids_carry_32_random_bits():
    import re

    from bench.model.results import new_run_id

    ids = {new_run_id("s") for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"s-\d{8}-\d{6}-[0-9a-f]{8}", i) for i in ids)


def test_typed_metadata_parts_are_stored_as_the_json_they_replace(tmp_path):
    """engines, ab and warmup given as models (bench.model.records) are written key for key, in
    the order the dicts had, and read back by load_run as the same dicts."""
    from bench.model.records import AbPairs, EngineFacts, Warmup
    from bench.model.results import RunWriter

    # As a backend's prepare() gives them: the engine first, its own keys, then the host.
    engines = {
        "c": {"engine": "docker", "docker_version": "24.0", "image_id": "sha256:1"},
        "v": {"engine": "libvirt", "accel": "tcg", "boot": "kernel"},
    }
    warmup = {"instances": 2, "platforms": {"c": {"ready": 1, "ready_s": [0.5, None]}}}
    ab = {"baseline": "c", "candidate": "v", "pairs": [[0, 1], [3, 2]]}
    as_dicts = {
        "engines": {k: {**e, "host": "h"} for k, e in engines.items()},
        "ab": ab,
    }
    as_models = {
        "engines": {k: EngineFacts.model_validate(e).on_host("h") for k, e in engines.items()},
        "ab": AbPairs.model_validate(ab),
    }
    written = []
    for name, start in (("dicts", as_dicts), ("models", as_models)):
        w = RunWriter(tmp_path / name, "r")
        w.start({"scenario": {"name": "s", "platforms": []}, **start})
        w.update(warmup=warmup if name == "dicts" else Warmup.model_validate(warmup))
        w.finish("complete")
        text = (tmp_path / name / "metadata.json").read_text()
        written.append(
            {
                k: v
                for k, v in json.loads(text).items()
                if k not in ("pid", "started_at", "finished_at")
            }
        )
    assert json.dumps(written[0]) == json.dumps(written[1])  # same keys, same order
    assert list(written[1]["engines"]["c"]) == ["engine", "docker_version", "image_id", "host"]
    meta = load_run(tmp_path / "models").metadata
    assert meta["engines"] == as_dicts["engines"] and meta["ab"] == ab and meta["warmup"] == warmup
    # A part stored without a key reads back without it (no null added).
    assert EngineFacts.model_validate({"docker_version": "1"}).model_dump() == {
        "docker_version": "1"
    }
    assert AbPairs(baseline="a", candidate="b").model_dump() == {"baseline": "a", "candidate": "b"}
