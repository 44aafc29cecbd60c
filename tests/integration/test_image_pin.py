"""A run's instances are created from the image it prepared, by id: another bench build
on the same engine may import its own image under the tag in the middle of a run (seen
here: a run's third podman repeat got an image without wrk), and one run must run one
userland. On docker and podman, under a tag of the test's own (the shared bench tags
are never moved): prepare, move the tag to another image, create an instance."""

from __future__ import annotations

import secrets

import pytest

from bench.backends.base import Instance
from bench.machines.console import Console


def _instance(run_id: str) -> Instance:
    return Instance(f"bench-{run_id}-p-s0-0", run_id, "p", Console("BENCH_READY"))


@pytest.mark.docker
def test_docker_creates_from_the_prepared_image_after_its_tag_moved(docker_api):
    from bench.backends.docker_backend import DockerBackend, DockerSettings

    run_id = f"test-{secrets.token_hex(3)}"
    repo = f"bench-pin-test-{secrets.token_hex(3)}"
    first = docker_api.inspect_image("bench/busybox:latest")["Id"]
    other = docker_api.inspect_image("bench/workloads:latest")["Id"]
    assert first != other
    docker_api.tag(first, repo, "latest")
    backend = DockerBackend(DockerSettings(name="p", backend="docker", image=f"{repo}:latest"))
    inst = _instance(run_id)
    try:
        backend.preflight()
        facts = backend.prepare()
        assert facts["image_id"] == first
        docker_api.tag(other, repo, "latest", force=True)  # another build's import
        backend.create(inst)
        assert docker_api.inspect_container(inst.handle)["Image"] == first
    finally:
        for x in backend.leftovers(run_id):
            backend.remove_leftover(x)
        backend.close()
        docker_api.remove_image(f"{repo}:latest")  # the tag only: the images keep theirs


@pytest.mark.podman
def test_podman_creates_from_the_prepared_image_after_its_tag_moved(podman_client):
    from bench.backends.podman_backend import PodmanBackend, PodmanSettings

    run_id = f"test-{secrets.token_hex(3)}"
    repo = f"localhost/bench-pin-test-{secrets.token_hex(3)}"
    first = podman_client.images.get("bench/busybox:latest")
    other = podman_client.images.get("bench/workloads:latest")
    assert first.id != other.id
    assert first.tag(repo, "latest")
    backend = PodmanBackend(PodmanSettings(name="p", backend="podman", image=f"{repo}:latest"))
    inst = _instance(run_id)
    try:
        backend.preflight()
        facts = backend.prepare()
        assert str(facts["image_id"]).removeprefix("sha256:") == first.id.removeprefix("sha256:")
        podman_client.images.remove(f"{repo}:latest")  # the tag only: busybox keeps its own
        assert other.tag(repo, "latest")  # another build's import
        backend.create(inst)
        created = podman_client.containers.get(inst.name).attrs["Image"]
        assert created.removeprefix("sha256:") == first.id.removeprefix("sha256:")
    finally:
        for x in backend.leftovers(run_id):
            backend.remove_leftover(x)
        backend.close()
        podman_client.images.remove(f"{repo}:latest")  # the tag only
