"""Noisy neighbours on a real engine (issue 23 §2): a runc victim and one runc aggressor,
each limited to one CPU, a short cpu stressor against the victim's cpu workload; the
victim's runs are stored with positive figures. Then the network kind (stress-ng's
socket stressor over the aggressor's own loopback, on network: none). run_real removes
every container it started, even on failure."""

from __future__ import annotations

import pytest

from bench.model.records import NeighbourRun
from bench.report import neighbours as report_nb
from tests.integration.bench_runs import run_real

SCENARIO = """name: nb-it
timeout: 120s
settle: 0s
warmup: 0
neighbours:
  aggressors: 1
  kinds: [cpu, net]
  victim: cpu
  duration: 2s
platforms:
  - {name: runc, backend: docker, image: workloads, runtime: runc, cpus: 1}
"""


@pytest.mark.docker
def test_a_runc_victim_runs_alone_and_beside_a_cpu_and_a_net_aggressor(docker_api):
    sink, _, left = run_real(SCENARIO)
    assert left == []
    (step,) = sink.steps
    assert step["n"] == 2
    runs = [NeighbourRun.model_validate(r) for r in step["extras"]["neighbours"]]
    assert [(r.aggressor, r.aggressors) for r in runs] == [("alone", 0), ("cpu", 1), ("net", 1)]
    for r in runs:
        assert r.victim.error is None and r.victim.rc == 0, r.victim.error
        assert r.victim.figures and all(f.value > 0 for f in r.victim.figures)
        assert r.aggressor_errors == []
    section = report_nb.build("nb-it", sink.steps)
    assert section is not None
    assert [(row.aggressor, row.n) for row in section.rows] == [("cpu", 1), ("net", 1)]
    assert all(row.median > 0 for row in section.rows)
