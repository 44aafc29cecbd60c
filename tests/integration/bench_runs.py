"""What the integration tests share to run bench on the real engines: `bench run` as a
subprocess a test can signal (BenchRun) and what an interrupted run must look like, and
a scenario run in-process through the runner with the real backends (run_real)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

from bench.backends import make_backend
from bench.model.results import load_run
from bench.plan.scenario import LoadedScenario, parse_scenario
from bench.runner import Runner
from tests.conftest import REPO
from tests.helpers import MemorySink
from tests.integration.engine_watch import bench_clean, bench_cmd

EXIT_INTERRUPTED = 130
# The bound: every instance destroyed and bench gone within 30 s of the signal.
EXIT_WITHIN_S = 30
ENV = {**os.environ, "COLUMNS": "200"}


def start_run(
    scenario: Path, out: Path, name: str, *, new_session: bool = False
) -> subprocess.Popen:
    """`bench run SCENARIO --out OUT --name NAME` in the background, its output piped as
    text for `communicate`; with `new_session`, in a session of its own (a signal the test
    sends reaches only it)."""
    return subprocess.Popen(
        bench_cmd("run", str(scenario), "--out", str(out), "--name", name),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


class BenchRun:
    """One `bench run` subprocess in its own session: signals reach only it."""

    def __init__(self, directory: Path, scenario: str, name: str):
        directory.mkdir(parents=True)
        self.out = directory / "results"
        path = directory / "scenario.yaml"
        path.write_text(scenario)
        self._stdout = (directory / "stdout").open("w+")
        self._stderr = (directory / "stderr").open("w+")
        self.proc = subprocess.Popen(
            bench_cmd("run", str(path), "--out", str(self.out), "--name", name),
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
            cwd=REPO,
            env=ENV,
        )
        self.signalled_at: float | None = None
        self.exit_s: float | None = None  # from the (last) signal to exit

    def signal(self, sig: int) -> None:
        self.signalled_at = time.monotonic()
        self.proc.send_signal(sig)

    def wait(self, timeout: float = EXIT_WITHIN_S) -> int | None:
        """Exit code, or None if bench is still running after `timeout` s."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.signalled_at is not None:
            self.exit_s = time.monotonic() - self.signalled_at
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def _read(self, f) -> str:
        f.flush()
        f.seek(0)
        return f.read()

    @property
    def stdout(self) -> str:
        return self._read(self._stdout)

    @property
    def stderr(self) -> str:
        return self._read(self._stderr)

    @property
    def run_dirs(self) -> list[Path]:
        return sorted(d for d in self.out.iterdir() if d.is_dir()) if self.out.is_dir() else []

    @property
    def run_dir(self) -> Path:
        dirs = self.run_dirs
        assert len(dirs) == 1, f"expected one run directory in {self.out}: {dirs}\n{self.stderr}"
        return dirs[0]

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def report(self) -> str:
        rc = self.proc.returncode
        return f"exit {rc}\n--- stderr:\n{self.stderr}\n--- stdout:\n{self.stdout}"

    def close(self) -> None:
        self._stdout.close()
        self._stderr.close()


def assert_interrupted(run: BenchRun, rc: int | None) -> None:
    """Exit 130 within the bound, says so last, results readable and marked."""
    assert rc is not None, f"bench still running {EXIT_WITHIN_S}s after the signal\n{run.stderr}"
    assert rc == EXIT_INTERRUPTED, run.report()
    assert run.exit_s is not None and run.exit_s < EXIT_WITHIN_S
    lines = run.stderr.strip().splitlines()
    assert lines and "interrupted" in lines[-1], run.report()
    assert "Traceback" not in run.stderr, run.report()
    meta = json.loads((run.run_dir / "metadata.json").read_text())
    assert meta["status"] == "interrupted", meta
    stored = load_run(run.run_dir)  # readable; the samples of finished steps (maybe none)
    assert stored.status == "interrupted"
    assert all(s["run_id"] == run.run_id for s in stored.samples)


def assert_bench_clean(run_id: str) -> subprocess.CompletedProcess[str]:
    p = bench_clean(run_id)
    assert p.returncode == 0, (
        f"bench clean --run {run_id}: exit {p.returncode}\n{p.stdout}{p.stderr[-3000:]}"
    )
    return p


def run_real(text: str):
    sc = parse_scenario(text)
    loaded = LoadedScenario(sc, path=None, text=text)
    run_id = f"test-{secrets.token_hex(3)}"
    backends = {p.name: make_backend(p) for p in sc.platforms}
    sink = MemorySink(sc)
    try:
        for b in backends.values():
            b.preflight()  # prepare() relies on it, as bench.runner.run.prepare_backends does
        engines = {name: b.prepare() for name, b in backends.items()}
        Runner(loaded, run_id, backends, sink).run()
        left = [x for b in backends.values() for x in b.leftovers(run_id)]
        return sink, engines, left
    finally:
        for b in backends.values():
            for x in b.leftovers(run_id):
                b.remove_leftover(x)
            b.close()
