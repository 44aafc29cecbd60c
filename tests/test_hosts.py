"""Several hosts in one run: the scenario's `hosts:` and `host:` keys, `--host`, and the
per-host scheduling (hosts in parallel, steps within a host sequential), on fake
backends."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from bench.backends.fake import FakeBackend
from bench.model.errors import EngineUnavailable, ScenarioError, UsageError
from bench.plan.scenario import LoadedScenario, on_hosts, parse_scenario
from bench.runner import NoEvents
from bench.runner.lanes import HostLanes
from bench.runner.run import _runner, slot_names
from tests.helpers import FakeHost, MemorySink

HOSTS = "hosts:\n  lab1: ssh://root@10.0.0.1\n  lab2: ssh://bench@10.0.0.2:2222\n"


def test_a_platform_host_name_points_its_engine_at_that_machine():
    sc = parse_scenario(
        "name: h\n" + HOSTS + "platforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: c2, backend: docker, image: busybox, host: lab2}\n"
        "  - {name: vm, backend: libvirt, image: busybox, host: lab1}\n"
        "  - {name: vm2, backend: libvirt, image: busybox, host: 'ssh://root@10.0.0.3'}\n"
        "  - {name: here, backend: libvirt, image: busybox, host: local}\n"
    )
    c, c2, vm, vm2, here = sc.platforms
    assert c.host is None
    assert c2.host == "ssh://bench@10.0.0.2:2222"
    assert vm.uri == "qemu+ssh://root@10.0.0.1/system"
    assert vm2.uri == "qemu+ssh://root@10.0.0.3/system"
    assert here.uri == "qemu:///system"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "  - {name: c, backend: docker, image: busybox, host: lab3}\n",
            r"h.yaml:6: platforms\[0\].host: no host 'lab3' in hosts: \(known: lab1, lab2\)",
        ),
        (
            "  - {name: q, backend: qemu, image: busybox, host: lab1}\n",
            r"platforms\[0\].host: backend qemu runs only on this machine",
        ),
        (
            "  - {name: p, backend: podman, image: busybox, host: lab2}\n",
            r"platforms\[0\].host: podman runs only on this machine for now",
        ),
        (
            "  - {name: c, backend: docker, image: busybox, host: 'tcp://10.0.0.1:2375'}\n",
            r"platforms\[0\].host: .*never tcp://",
        ),
        (
            "  - {name: v, backend: libvirt, image: busybox, uri: 'qemu+tcp://h/system'}\n",
            r"platforms\[0\].uri: .*qemu\+ssh://\[user@\]host\[:port\]/system",
        ),
        (
            "  - {name: v, backend: libvirt, image: busybox, uri: 'qemu:///session', host: lab1}\n",
            r"platforms\[0\].host: qemu:///session runs only on this machine",
        ),
    ],
)
def test_a_host_bench_cannot_use_is_refused_at_its_key(text, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario("name: h\n" + HOSTS + "platforms:\n" + text, "h.yaml")


def test_hosts_must_be_ssh_addresses_or_local():
    with pytest.raises(ScenarioError, match=r"hosts: .*write `local` or ssh://"):
        parse_scenario(
            "name: h\nhosts: {lab: 'tcp://h:2375'}\nplatforms:\n  - {name: c, backend: fake}\n"
        )


def loaded(text: str) -> LoadedScenario:
    return LoadedScenario(parse_scenario(text), Path("h.yaml"), text)


def test_dash_dash_host_runs_every_platform_on_each_host_under_its_own_name():
    ld = loaded(
        "name: h\n" + HOSTS + "platforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: vm, backend: libvirt, image: busybox}\n"
    )
    placed = on_hosts(ld, ["local", "lab2"])
    names = [(p.name, getattr(p, "uri", None) or p.host) for p in placed.scenario.platforms]
    assert names == [
        ("c", None),
        ("vm", "qemu:///system"),
        ("c", "ssh://bench@10.0.0.2:2222"),
        ("vm", "qemu+ssh://bench@10.0.0.2:2222/system"),
    ]
    # The run keys each copy by name and host: engines and warm-ups never collide.
    assert list(slot_names(placed).values()) == [
        "c@local",
        "vm@local",
        "c@10.0.0.2:2222",
        "vm@10.0.0.2:2222",
    ]
    with pytest.raises(UsageError, match="--host lab9: not a host of h.yaml"):
        on_hosts(ld, ["lab9"])


# -- scheduling ----------------------------------------------------------------------


class Tracking(FakeBackend):
    """A fake backend that logs (host, step) of every create and destroy, in order."""

    log: list[tuple[str, int]] = []
    lock = threading.Lock()

    def create(self, inst):
        with self.lock:
            self.log.append((self.host.key, step_of(inst.name)))
        super().create(inst)

    def destroy(self, inst):
        super().destroy(inst)
        with self.lock:
            self.log.append((self.host.key, step_of(inst.name)))


def step_of(name: str) -> int:
    return int(re.search(r"-s(\d+)-", name).group(1))


SCHEDULE = (
    "name: h\nwarmup: 0\nsettle: 0s\nrepeat: 3\ncounts: [2]\nplatforms:\n"
    "  - {name: a, backend: fake, create_delay: 0.1s}\n"
    "  - {name: b, backend: fake, create_delay: 0.1s}\n"
    "  - {name: c, backend: fake, create_delay: 0.1s}\n"
)


def lanes_for(text: str, host_of: dict[str, FakeHost]):
    ld = loaded(text)
    backends = {p.name: Tracking(p, host=host_of[p.name]) for p in ld.scenario.platforms}
    sink = MemorySink(ld.scenario)
    runner = _runner(ld, "run-h", backends, sink, NoEvents(), None)
    return runner, sink, backends


def test_hosts_run_in_parallel_and_steps_within_a_host_one_after_another():
    Tracking.log = []
    h1, h2 = (FakeHost(lambda: [], key=k) for k in ("h1", "h2"))
    runner, sink, backends = lanes_for(SCHEDULE, {"a": h1, "b": h1, "c": h2})
    assert isinstance(runner, HostLanes) and list(runner.runners) == ["h1", "h2"]
    t0 = time.monotonic()
    results = runner.run()
    took = time.monotonic() - t0
    assert not runner.errors
    # 9 steps of 2 instances, each create 0.1 s with up to 4 in flight: 0.9 s one host
    # after another (6 + 3 steps); side by side the longer host's 0.6 s.
    assert took < 0.85, took
    assert len(results) == 9
    by_platform = {s["platform"]: s["host"] for s in sink.steps}
    assert by_platform == {"a": "h1", "b": "h1", "c": "h2"}
    # Step numbers are unique across hosts (instance names carry them).
    assert sorted(s["step"] for s in sink.steps) == list(range(9))
    for key in ("h1", "h2"):
        order = [step for host, step in Tracking.log if host == key]
        # Each step's creates and destroys come together: no two steps of one host overlap.
        blocks = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
        assert len(blocks) == len(set(blocks)), (key, order)
    assert all(not b.live for b in backends.values())


class DroppingHost(FakeHost):
    """A host whose link drops after `ok_reads` MemAvailable readings."""

    def __init__(self, *args, ok_reads: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.ok_reads = ok_reads
        self.closed = 0

    def mem_available_bytes(self):
        if self.ok_reads <= 0:
            raise EngineUnavailable(f"ssh://{self.key}: SSH connection lost")
        self.ok_reads -= 1
        return super().mem_available_bytes()

    def close(self):
        self.closed += 1


def test_a_failed_host_stops_alone_and_the_other_finishes():
    h1 = FakeHost(lambda: [], key="h1")
    h2 = DroppingHost(lambda: [], key="h2", ok_reads=3)  # guard + before of step 1, guard
    text = SCHEDULE.replace("create_delay: 0.1s", "create_delay: 0.01s")
    runner, sink, backends = lanes_for(text, {"a": h1, "b": h1, "c": h2})
    runner.run()
    assert list(runner.errors) == ["h2"]
    assert "SSH connection lost" in str(runner.errors["h2"])
    assert h2.closed == 1  # its connections were dropped before its teardown
    steps = {p: [s for s in sink.steps if s["platform"] == p] for p in "abc"}
    assert len(steps["a"]) == len(steps["b"]) == 3
    assert all(s["status"] == "ran" for s in steps["a"] + steps["b"])
    assert len(steps["c"]) == 1
    assert all(not b.live for b in backends.values())
