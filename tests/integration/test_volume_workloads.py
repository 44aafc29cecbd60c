"""fio on an attached volume on the real engines (issue 23 §1): a named, labelled docker
volume under runc and runsc, a directory beside a native instance's tree; each written
by fio-volume, and gone with its instance (the test removes whatever is left, even on
failure)."""

from __future__ import annotations

import pytest

from bench.backends.oci import LABEL_RUN
from bench.model.records import WorkloadRun
from bench.report import workloads as report_wl
from tests.integration.bench_runs import run_real


@pytest.mark.docker
def test_fio_on_a_volume_on_native_runc_and_runsc(docker_api):
    from tests.integration.test_runtimes import require_runtime

    platforms = (
        "  - {name: native, backend: native, image: workloads, volume: true}\n"
        "  - {name: runc, backend: docker, image: workloads, runtime: runc, volume: true}\n"
    )
    if "runsc" in (docker_api.info().get("Runtimes") or {}):
        require_runtime(docker_api, "runsc")
        platforms += (
            "  - {name: runsc, backend: docker, image: workloads, runtime: runsc, volume: true}\n"
        )
    before = {v["Name"] for v in docker_api.volumes().get("Volumes") or []}
    try:
        sink, _, left = run_real(
            "name: vol-it\ntimeout: 60s\nsettle: 0s\nwarmup: 0\n"
            "workloads: {duration: 2s, run: [randwrite-volume]}\nplatforms:\n" + platforms
        )
        # Leftovers include volumes and native's trees (its volume directory inside).
        assert left == []
        runs = {
            s["platform"]: WorkloadRun.model_validate(s["extras"]["workloads"][0])
            for s in sink.samples
        }
        assert len(runs) == platforms.count("name:")
        for platform, run in runs.items():
            assert run.error is None and run.rc == 0, (platform, run.error)
            assert "--filename=/bench-volume/bench-fio.dat" in run.argv
            (iops,) = [f for f in run.figures if f.figure == "write_iops"]
            assert iops.value > 0
        section = report_wl.build("vol-it", sink.samples)
        assert section is not None
        rows = {(r.platform, r.figure): r for r in section.rows}
        assert rows[("runc", "write_iops")].ratio is not None
        after = docker_api.volumes(filters={"label": LABEL_RUN}).get("Volumes") or []
        assert [v["Name"] for v in after if v["Name"] not in before] == []
    finally:
        # Only bench makes labelled volumes, and only this test makes them now.
        for v in docker_api.volumes(filters={"label": LABEL_RUN}).get("Volumes") or []:
            if v["Name"] not in before:
                docker_api.remove_volume(v["Name"], force=True)
