"""Readiness as a service defines it, on Docker Engine and podman: an HTTP status, a
TCP port, the process exiting 0, probed from this host into the container's address.
The docker image is scenarios/service/ (busybox httpd), built here from the bench
image as a user would build theirs, on a network of the test's own; both are removed
afterwards, as is every container, even when a test fails."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import REPO
from tests.integration.bench_runs import run_real

SERVICE_DIR = REPO / "scenarios" / "service"


@pytest.fixture(scope="module")
def service(docker_api):
    """(image tag, network name) for this module's tests."""
    import docker.errors

    from bench.backends.docker_backend import import_bench_image
    from bench.machines import images

    try:
        docker_api.inspect_image(images.docker_ref("busybox"))
    except docker.errors.ImageNotFound:
        import_bench_image(docker_api, "busybox")
    token = secrets.token_hex(4)
    tag, network = f"bench-it-service:{token}", f"bench-it-{token}"
    # The engine's default bridge is what a user sets (network: bridge); a network of
    # the test's own is the same driver, and leaves nothing behind.
    try:
        for _ in docker_api.build(path=str(SERVICE_DIR), tag=tag, rm=True, forcerm=True):
            pass
        docker_api.create_network(network, driver="bridge", labels={"bench.test": token})
        yield tag, network
    finally:
        for c in docker_api.containers(all=True, filters={"network": network}):
            docker_api.remove_container(c["Id"], force=True)
        try:
            docker_api.remove_network(network)
        except docker.errors.NotFound:
            pass
        try:
            docker_api.remove_image(tag)
        except docker.errors.ImageNotFound:
            pass


def run(service, ready: str, n: int = 1, extra: str = "", timeout: str = "30s"):
    tag, network = service
    sink, _, left = run_real(
        f"name: t\ntimeout: {timeout}\ncounts: [{n}]\nwarmup: 0\nsettle: 0s\n"
        "platforms:\n  - name: s\n    backend: docker\n"
        f"    image: '{tag}'\n    network: {network}\n    memory: 64MiB\n"
        f"    ready: {ready}\n{extra}"
    )
    assert left == []
    return sink.samples


def test_http_ready(service):
    samples = run(service, "{http: {port: 8080, path: /index.html, status: 200}}", n=2)
    for s in samples:
        assert s["ok"], s["error"]
        assert s["ready_kind"] == "http" and s["ready_probes"] >= 1
        # Probed only once the start call returned: ready after it, within a window.
        assert s["start_s"] <= s["ready_s"] < 30
        assert 0 < s["ready_window_s"] <= s["ready_s"] - s["create_s"]


def test_http_wrong_status_until_the_timeout(service):
    (s,) = run(service, "{http: {port: 8080, path: /missing}}", timeout="3s")
    assert not s["ok"] and s["failure"] == "timeout"
    assert s["error"] == "HTTP 404 on /missing until the 3s timeout"


def test_tcp_ready_and_a_closed_port_refused(service):
    (s,) = run(service, "{tcp: 8080}")
    assert s["ok"] and s["ready_kind"] == "tcp", s["error"]
    (s,) = run(service, "{tcp: 9}", timeout="3s")
    assert s["error"] == "port 9 refused until the 3s timeout"


def test_exit_ready_is_the_end_of_a_run_to_completion(service):
    once = "    command: [sh, -c, 'httpd -p 8080 -h /www && wget -q -O /dev/null http://127.0.0.1:8080/']\n"
    (s,) = run(service, "{exit: 0}", extra=once)
    assert s["ok"] and s["exit_code"] == 0, s["error"]
    assert s["start_s"] < s["ready_s"] < 30


def test_exit_with_another_status_fails_at_once(service):
    (s,) = run(service, "{exit: 0}", extra="    command: [sh, -c, 'exit 3']\n")
    assert not s["ok"] and s["failure"] == "exited" and s["exit_code"] == 3
    assert s["error"] == "exited 3 before ready (exit status 0)"


def test_podman_tcp_http_and_exit_ready(podman_client):
    # The bench image on podman's own bridge (podman's network, nothing to create).
    text = """name: t
timeout: 30s
counts: [1]
warmup: 0
settle: 0s
x-p: &p {backend: podman, image: busybox, network: bridge, memory: 64MiB}
platforms:
  - {<<: *p, name: tcp, command: SERVE, ready: {tcp: 8080}}
  - {<<: *p, name: http, command: SERVE, ready: {http: {port: 8080, path: /hostname}}}
  - {<<: *p, name: exit, command: [sh, -c, 'exit 3'], ready: {exit: 0}}
"""
    sink, _, left = run_real(text.replace("SERVE", "[sh, -c, 'httpd -p 8080 -h /etc && sleep 60']"))
    assert left == []
    by = {s["platform"]: s for s in sink.samples}
    assert by["tcp"]["ok"] and by["http"]["ok"], (by["tcp"]["error"], by["http"]["error"])
    assert by["exit"]["error"] == "exited 3 before ready (exit status 0)"
    assert by["exit"]["exit_code"] == 3
