"""The engines' own create and start events (bench.measurements.engine_events) placed on
bench's clock: a step of two containers on docker and on podman, each event between
the launch call and ready, create before start, and the start call split in two.
run_real removes whatever a run left, also when the test fails."""

from __future__ import annotations

import pytest

from bench.model.phases import phases
from tests.integration.bench_runs import run_real

SCENARIO = """\
name: events
timeout: 60s
counts: [2]
settle: 0s
warmup: 0
platforms:
  - {name: c, backend: %s, image: busybox, memory: 64MiB}
"""


def check_events(samples: list[dict]) -> None:
    assert len(samples) == 2
    for s in samples:
        assert s["ok"], s["error"]
        assert s["engine_events_error"] is None, s["engine_events_error"]
        # Read from the event stream, on the wall clock, less the launch's wall instant.
        create, start = s["engine_create_s"], s["engine_start_s"]
        assert create is not None and start is not None, s
        # Each event lies inside its call. Not before ready: docker logs its start event
        # after the runtime started the process, whose marker can reach bench first.
        order = [0.0, create, s["create_s"], start, s["start_s"]]
        assert order == sorted(order) and create > 0, order
        ps, rest = phases(s)
        names = [p.name for p in ps]
        assert names[:2] == ["create_engine", "create_return"], names
        assert sum(p.seconds for p in ps) + rest == pytest.approx(s["ready_s"])
        print(
            f"{s['backend']}: create_s {s['create_s']:.3f} (engine {create:.3f}), start "
            f"event {start:.3f}, start_s {s['start_s']:.3f}, ready_s {s['ready_s']:.3f}"
        )


@pytest.mark.docker
def test_docker_engine_events_split_the_start_call(docker_api):
    sink, _engines, left = run_real(SCENARIO % "docker")
    assert left == []
    check_events(sink.samples)


@pytest.mark.podman
def test_podman_engine_events_split_the_start_call(podman_client):
    sink, _engines, left = run_real(SCENARIO % "podman")
    assert left == []
    check_events(sink.samples)
