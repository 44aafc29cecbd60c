"""results/<run-id>/: the run's metadata and its raw samples, written as measured.

Layout (schema version in bench.SCHEMA_VERSION):
- metadata.json: scenario as run (+ sha256), host, engines, status
  ("running" while in progress; "complete", "interrupted" or "failed" at the end;
  a run still "running" with no live process was killed: treat it as incomplete).
- samples.jsonl: one JSON object per instance per step, appended and flushed as
  each step ends, so a crash keeps every finished step.
- steps.jsonl: one JSON object per step (wall time, failures, step-level facts).
Statistics are never stored: they are computed when reading.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import bench
from bench.errors import UsageError

METADATA = "metadata.json"
SAMPLES = "samples.jsonl"
STEPS = "steps.jsonl"


def new_run_id(scenario_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{scenario_name}-{stamp}-{secrets.token_hex(2)}"


class RunWriter:
    def __init__(self, directory: Path, run_id: str):
        self.dir = directory
        self.run_id = run_id
        self.metadata: dict[str, Any] = {}
        self._samples: IO[str] | None = None
        self._steps: IO[str] | None = None

    def start(self, metadata: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=False)
        self.metadata = {
            "schema_version": bench.SCHEMA_VERSION,
            "bench_version": bench.__version__,
            "run_id": self.run_id,
            "status": "running",
            "pid": os.getpid(),
            "started_at": _now(),
            **metadata,
        }
        self._write_metadata()
        self._samples = (self.dir / SAMPLES).open("a")
        self._steps = (self.dir / STEPS).open("a")

    def add_samples(self, samples: list[dict[str, Any]]) -> None:
        _append(self._samples, samples)

    def add_step(self, step: dict[str, Any]) -> None:
        _append(self._steps, [step])

    def update(self, **fields: Any) -> None:
        self.metadata.update(fields)
        self._write_metadata()

    def finish(self, status: str, **fields: Any) -> None:
        for f in (self._samples, self._steps):
            if f:
                f.close()
        self._samples = self._steps = None
        self.update(status=status, finished_at=_now(), **fields)

    def _write_metadata(self) -> None:
        # Write-then-rename: a reader (or a crash) never sees half a file.
        tmp = self.dir / (METADATA + ".tmp")
        tmp.write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        tmp.replace(self.dir / METADATA)


def _append(f: IO[str] | None, rows: list[dict[str, Any]]) -> None:
    if f is None:
        raise RuntimeError("run not started")
    for row in rows:
        f.write(json.dumps(row, default=str) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Run:
    dir: Path
    metadata: dict[str, Any]
    samples: list[dict[str, Any]]
    steps: list[dict[str, Any]]

    @property
    def run_id(self) -> str:
        return self.metadata.get("run_id", self.dir.name)

    @property
    def status(self) -> str:
        status = self.metadata.get("status", "unknown")
        if status == "running" and not _alive(self.metadata.get("pid")):
            return "incomplete"  # its process is gone: killed or crashed mid-run
        return status


def load_run(directory: str | Path) -> Run:
    d = Path(directory)
    meta_path = d / METADATA
    if not meta_path.is_file():
        raise UsageError(f"{d} is not a bench run directory (no {METADATA})")
    try:
        metadata = json.loads(meta_path.read_text())
    except ValueError as e:
        raise UsageError(f"{meta_path}: not valid JSON ({e})") from None
    version = metadata.get("schema_version")
    if version != bench.SCHEMA_VERSION:
        raise UsageError(
            f"{d}: results schema version {version}, this bench reads "
            f"{bench.SCHEMA_VERSION}: use the bench version that wrote it"
        )
    return Run(d, metadata, _read_jsonl(d / SAMPLES), _read_jsonl(d / STEPS))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a crash: everything before it is intact
    return rows


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
