"""Which `bench clean` a run's error line suggests, which engines --scenario searches, and
which run ids it accepts."""

import subprocess
import sys

import pytest

from bench.backends.base import Leftover
from bench.backends.fake import FakeBackend
from bench.commands.clean import clean
from bench.model.errors import UsageError
from bench.model.owner import hostname
from bench.model.paths import run_lock_path
from bench.plan.leftovers import clean_command, scenario_backends
from bench.plan.scenario import LoadedScenario, on_hosts, parse_scenario
from tests.helpers import dead_pid, hold_lock

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


# -- run ids: `--run ""` selected every bench container --------------------------------


# Bench makes NAME-YYYYMMDD-HHMMSS-HEX (bench.model.results.new_run_id); nothing else names a run.
NOT_RUN_IDS = [
    "",
    "../x",
    "a b",
    "*",
    "-rf",
    "x;id",
    "r\n1",
    "no-such-run",
    "s-20261130-064410-xyz",
]


@pytest.mark.parametrize("run_id", NOT_RUN_IDS)
def test_a_run_id_bench_cannot_have_made_is_refused_before_any_engine(run_id, monkeypatch):
    asked = []
    monkeypatch.setattr(FakeBackend, "leftovers", lambda self, rid=None: asked.append(rid) or [])
    with pytest.raises(UsageError, match="not a run id"):
        clean([FakeBackend.__new__(FakeBackend)], run_id)
    assert asked == []


@pytest.mark.parametrize("run_id", ["", "../x", "a b", "*", "no-such-run"])
def test_clean_run_not_a_run_id_exits_2_with_one_line(run_id):
    p = subprocess.run(
        [sys.executable, "-m", "bench", "clean", "--dry-run", "--run", run_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1 and "not a run id" in p.stderr
    assert p.stdout == ""


def test_a_real_run_id_is_searched(monkeypatch):
    left = Leftover("fake", "instance", "x", "quickstart-20261130-064410-9122")
    monkeypatch.setattr(FakeBackend, "leftovers", lambda self, rid=None: [left] if rid else [])
    monkeypatch.setattr(FakeBackend, "close", lambda self: None)
    report = clean([FakeBackend.__new__(FakeBackend)], "quickstart-20261130-064410-9122", True)
    assert report.removed == [left]


# -- a live run is the one whose lock is held, whatever its labels say ------------------

RUN = "quickstart-20261130-064410-9122"


@pytest.fixture
def lock_file(tmp_path, monkeypatch):
    """The lock file of RUN, as a run leaves it when killed: there, and held by no one."""
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    path = run_lock_path(RUN)
    path.parent.mkdir(mode=0o700)
    path.touch(mode=0o600)
    return path


def clean_fake(monkeypatch, left: Leftover, **options):
    removed = []
    monkeypatch.setattr(FakeBackend, "leftovers", lambda self, rid=None: [left])
    monkeypatch.setattr(FakeBackend, "remove_leftover", lambda self, x: removed.append(x))
    monkeypatch.setattr(FakeBackend, "close", lambda self: None)
    report = clean([FakeBackend.__new__(FakeBackend)], **options)
    return report, removed


def test_a_run_holding_its_lock_is_left_alone_though_its_pid_is_dead(monkeypatch, lock_file):
    holder = hold_lock(lock_file)
    try:
        left = Leftover("fake", "instance", "x", RUN, dead_pid(), hostname())
        report, removed = clean_fake(monkeypatch, left, run_id=RUN)
        assert report.live == [left] and removed == [] and report.removed == []
        assert lock_file.exists()  # still the live run's
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("run_id", [RUN, None])
def test_a_run_whose_lock_is_free_is_removed_with_its_lock_file(monkeypatch, lock_file, run_id):
    left = Leftover("fake", "instance", "x", RUN, dead_pid(), hostname())
    report, removed = clean_fake(monkeypatch, left, run_id=run_id)
    assert removed == [left] and report.live == []
    assert not lock_file.exists()


def test_a_dry_run_keeps_the_lock_file(monkeypatch, lock_file):
    left = Leftover("fake", "instance", "x", RUN, dead_pid(), hostname())
    report, removed = clean_fake(monkeypatch, left, run_id=RUN, dry_run=True)
    assert report.removed == [left] and removed == []
    assert lock_file.exists()
