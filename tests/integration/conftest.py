"""Fixtures of the integration tests that start `bench run` subprocesses."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.bench_runs import BenchRun
from tests.integration.engine_watch import purge


@pytest.fixture
def prefix() -> str:
    return f"it{secrets.token_hex(4)}"


@pytest.fixture
def runs(tmp_path, prefix):
    """Starts `bench run`s; afterwards kills them and removes all they left, always."""
    started: list[BenchRun] = []

    def start(scenario: str, name: str = "") -> BenchRun:
        run = BenchRun(tmp_path / f"run{len(started)}", scenario, name or prefix)
        started.append(run)
        return run

    try:
        yield start
    finally:
        try:
            for run in started:
                run.kill()
                run.close()
        finally:
            purge(prefix, [d.name for run in started for d in run.run_dirs])
