"""The network workload on a real engine (issue 23 §1): iperf3's client in a runc
container on a bridge network the test creates, its server run by bench on this host,
bound to that bridge's gateway only; native's client reaches the host's loopback. The
network, every container and the host-side server are gone afterwards, even on failure."""

from __future__ import annotations

import secrets
import shutil

import pytest

from bench.measurements import workloads as wl
from bench.model.records import WorkloadRun
from bench.report import workloads as report_wl
from tests.conftest import require_engine
from tests.integration.bench_runs import run_real


@pytest.fixture
def network(docker_api):
    import docker.errors

    token = secrets.token_hex(4)
    name = f"bench-it-net-{token}"
    docker_api.create_network(name, driver="bridge", labels={"bench.test": token})
    try:
        gateway = docker_api.inspect_network(name)["IPAM"]["Config"][0]["Gateway"]
        yield name, gateway
    finally:
        for c in docker_api.containers(all=True, filters={"network": name}):
            docker_api.remove_container(c["Id"], force=True)
        try:
            docker_api.remove_network(name)
        except docker.errors.NotFound:
            pass


@pytest.mark.docker
def test_iperf3_from_runc_to_a_server_on_the_bridge_gateway(network):
    require_engine("iperf3", shutil.which("iperf3") is not None, "apt-get install iperf3")
    name, gateway = network
    sink, _, left = run_real(
        "name: net-it\ntimeout: 60s\nsettle: 0s\nwarmup: 0\n"
        "workloads: {duration: 2s, run: [tcp]}\n"
        "platforms:\n"
        "  - {name: native, backend: native, image: workloads}\n"
        f"  - {{name: runc, backend: docker, image: workloads, runtime: runc, network: {name}}}\n"
    )
    assert left == []
    runs = {
        s["platform"]: WorkloadRun.model_validate(s["extras"]["workloads"][0]) for s in sink.samples
    }
    for platform, run in runs.items():
        assert run.error is None and run.rc == 0, (platform, run.error)
        (figure,) = run.figures
        assert figure.figure == "received_bits_per_s" and figure.value > 1e6
    # The server was on the gateway (runc) and on loopback (native), and is stopped.
    for platform, address in (("runc", gateway), ("native", "127.0.0.1")):
        argv = runs[platform].argv
        assert argv[argv.index("-c") + 1] == address
        assert not wl.listening(address, int(argv[argv.index("-p") + 1]))
    section = report_wl.build("net-it", sink.samples)
    assert section is not None
    (row,) = [r for r in section.rows if r.platform == "runc"]
    assert row.ratio is not None and row.ratio > 0


@pytest.mark.docker
def test_iperf3_over_the_instance_loopback_on_runc_and_runsc(docker_api):
    """No network: the server is in the instance. Under runsc the path is gVisor's
    netstack, which must still give a figure (the shape is the benchmark's business)."""
    from tests.integration.test_runtimes import require_runtime

    platforms = "  - {name: runc, backend: docker, image: workloads, runtime: runc}\n"
    if "runsc" in (docker_api.info().get("Runtimes") or {}):
        require_runtime(docker_api, "runsc")
        platforms += "  - {name: runsc, backend: docker, image: workloads, runtime: runsc}\n"
    sink, _, left = run_real(
        "name: netlo-it\ntimeout: 60s\nsettle: 0s\nwarmup: 0\n"
        "workloads: {duration: 2s, run: [tcp-loopback]}\nplatforms:\n" + platforms
    )
    assert left == []
    for s in sink.samples:
        run = WorkloadRun.model_validate(s["extras"]["workloads"][0])
        assert run.error is None and run.rc == 0, (s["platform"], run.error)
        assert run.figures[0].value > 1e6
