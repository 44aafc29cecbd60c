"""Which `bench clean` a run's error line suggests, and which engines --scenario searches."""

from bench.clean import clean_command, scenario_backends
from bench.scenario import LoadedScenario, on_hosts, parse_scenario

LOCAL = "name: s\ncounts: [1]\nplatforms:\n  - {name: c, backend: docker, image: busybox}\n"
TWO_HOSTS = (
    "name: s\ncounts: [1]\nhosts:\n  lab2: ssh://root@lab2\nplatforms:\n"
    "  - {name: c, backend: docker, image: busybox}\n"
    "  - {name: c2, backend: docker, image: busybox, host: lab2}\n"
    "  - {name: c3, backend: docker, image: busybox, host: lab2, memory: 64MiB}\n"
    "  - {name: vm, backend: libvirt, image: busybox}\n"
)


def loaded(text: str) -> LoadedScenario:
    return LoadedScenario(parse_scenario(text), "scenarios/s.yaml", text)


def test_a_run_on_this_machines_engines_needs_no_scenario(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert clean_command("r1", loaded(LOCAL)) == "bench clean --run r1"
    assert clean_command("r1") == "bench clean --run r1"


def test_a_second_engine_on_this_machine_names_the_scenario(monkeypatch):
    # Plain `bench clean` searches the default socket only: a run on a second local
    # dockerd would be missed, though its address is local.
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    second = LOCAL.replace("image: busybox}", "image: busybox, host: unix:///run/docker2.sock}")
    assert clean_command("r1", loaded(second)) == (
        "bench clean --run r1 --scenario scenarios/s.yaml"
    )


def test_a_run_on_other_hosts_names_its_scenario_and_hosts():
    assert clean_command("r1", loaded(TWO_HOSTS)) == (
        "bench clean --run r1 --scenario scenarios/s.yaml"
    )
    placed = on_hosts(loaded(LOCAL), ["local", "ssh://root@lab3"])
    assert clean_command("r1", placed) == (
        "bench clean --run r1 --scenario scenarios/s.yaml --host local --host ssh://root@lab3"
    )


def test_scenario_backends_are_one_per_engine(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    backends = scenario_backends(loaded(TWO_HOSTS))
    addresses = sorted((b.settings.backend, str(b.engine_address())) for b in backends)
    assert addresses == [
        ("docker", "ssh://root@lab2"),
        ("docker", "unix:///var/run/docker.sock"),
        ("libvirt", "qemu:///system"),
    ]
