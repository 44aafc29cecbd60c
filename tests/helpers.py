"""Small test doubles shared by unit and integration tests."""

import os
import subprocess
import sys

from bench.machines.host import ProcessTable


def run_fake(text, run_id="run-test", ab=None, **host_args):
    """Run a scenario of fake platforms on a FakeClock and a FakeHost.

    Returns (results, sink, backends). The host's MemAvailable falls with the fake
    instances alive; times are virtual and exact.
    """
    runner, sink, backends = fake_runner(text, run_id, ab, **host_args)
    return runner.run(), sink, backends


def fake_runner(text, run_id="run-test", ab=None, **host_args):
    """The Runner run_fake runs, with its sink and backends: for a test whose run raises
    and that still looks at what was recorded and left."""
    from bench.backends.fake import FakeBackend
    from bench.machines.clock import FakeClock
    from bench.plan.scenario import LoadedScenario, parse_scenario
    from bench.runner import Runner

    sc = parse_scenario(text)
    clock = FakeClock()
    backends = {}
    host = FakeHost(lambda: [i for b in backends.values() for i in b.live], **host_args)
    for p in sc.platforms:
        backends[p.name] = FakeBackend(p, host=host, clock=clock)
    sink = MemorySink(sc)
    loaded = LoadedScenario(sc, None, text)
    return Runner(loaded, run_id, backends, sink, clock=clock, ab=ab), sink, backends


class MemorySink:
    """Collects what the runner would write to results/<run-id>/ (a
    bench.runner.recorder.Sink): the rows and metadata as RunWriter stores them."""

    def __init__(self, scenario=None):
        self.samples, self.steps = [], []
        # The scenario as results/<run-id>/metadata.json stores it.
        self.scenario = scenario.model_dump(mode="json") if scenario is not None else {}
        # What results/<run-id>/metadata.json stores as "searches".
        self.searches = scenario.searches() if scenario is not None else {}
        # What the run adds to metadata.json as it goes (warmup, ab).
        self.metadata = {}

    def update(self, **fields):
        from bench.model.results import as_stored

        self.metadata.update({k: as_stored(v) for k, v in fields.items()})

    def add_samples(self, samples):
        self.samples += [s.row() for s in samples]

    def add_step(self, step):
        self.steps.append(step.row())


class FakeHost:
    """A bench.machines.host.Host whose MemAvailable falls by `per_instance` for each live fake
    instance; everything else reads as an empty, quiet machine."""

    def __init__(self, live, total=2 * 2**30, per_instance=100 * 2**20, key="fakehost"):
        self._live, self.total, self.per_instance = live, total, per_instance
        self.key = key
        self.commands = []  # argv of every run() call

    def describe(self):
        return {"hostname": self.key, "mem_total_bytes": self.total}

    def mem_total_bytes(self):
        return self.total

    def mem_available_bytes(self):
        return self.total - self.per_instance * len(self._live())

    def load_avg_1m(self):
        return 0.0

    def rtt_s(self):
        return 0.0

    def ensure_copy(self, local, path):
        return False

    def memory_facts(self):
        return {}

    def drop_caches(self):
        return False

    def processes(self):
        return ProcessTable({})

    def process_memory(self, pids):
        return None

    def read_pidfile(self, path):
        return None

    def read_files(self, paths):
        return dict.fromkeys(paths)

    def read_links(self, paths):
        return dict.fromkeys(paths)

    def seccomp_programs(self, pid):
        from bench.machines.seccomp import FilterError

        raise FilterError("a fake host's processes have no filters to read")

    def allocated_bytes(self, path):
        return 0

    def snapshot_entries(self, dirs):
        return {}

    def new_entries_bytes(self, before):
        return 0

    def is_file(self, path):
        return False

    def is_dir(self, path):
        return False

    def list_dir(self, path):
        return []

    def make_dirs(self, path):
        pass

    def remove_file(self, path):
        pass

    def remove_empty_dir(self, path):
        pass

    def run(self, argv, timeout):
        self.commands.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")


def dead_pid():
    """The pid of a process that has exited (until the kernel hands it out again)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# Holds the file named in $LOCK with a flock until killed, as a running bench holds its run
# lock; its command line does not name bench (the path comes from the environment).
_HOLDER = (
    "import fcntl, os, time\n"
    "f = open(os.environ['LOCK'], 'a')\n"
    "fcntl.flock(f, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)


def hold_lock(path):
    """Another process holding a flock on path, once this returns; kill and wait it after."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        env={**os.environ, "LOCK": str(path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline() == "held\n"
    return p
