"""results/<run-id>/: the run's metadata and its raw samples, written as measured.

Layout (schema version in bench.SCHEMA_VERSION; fields in bench.model.records):
- metadata.json (`RunMetadata`): scenario as run (+ sha256), hosts, engines, status
  ("running" while in progress; "complete", "interrupted" or "failed" at the end;
  a run still "running" with no live process was killed: treat it as incomplete).
- samples.jsonl (`Sample`): one JSON object per instance per step, appended and
  flushed as each step ends, so a crash keeps every finished step.
- steps.jsonl (`StepRecord`): one JSON object per step (wall time, failures, step-level
  facts).
Statistics are never stored: they are computed when reading.

Older schema versions are upgraded in memory when read (`UPGRADES`, like asv's
update_to_N), never refused; the files on disk are left as they were written.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeAlias, TypeVar, cast

from pydantic import BaseModel, JsonValue, ValidationError

import bench
from bench.model import owner
from bench.model.errors import UsageError
from bench.model.records import (
    AbPairs,
    Record,
    Row,
    RunMetadata,
    Sample,
    StepRecord,
    obj,
    split_extras,
    text,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike, NDArray

    # A run's samples by column (Run.columns): field name to array, one row per sample.
    Columns = dict[str, NDArray[np.generic]]

METADATA = "metadata.json"
SAMPLES = "samples.jsonl"
STEPS = "steps.jsonl"
# Reading bounds for folders that may come from elsewhere. A sample line is well under
# 4 KiB (the console tail is capped when written); metadata holds the scenario as run.
MAX_LINE_BYTES = 1 * 2**20
MAX_METADATA_BYTES = 16 * 2**20


def new_run_id(scenario_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    # 32 random bits: two runs of one scenario started in the same second (CI jobs side by
    # side) must not share an id, which names their instances and what `bench clean` removes.
    return f"{scenario_name}-{stamp}-{secrets.token_hex(4)}"


# What RunWriter.start and update take for a key of metadata.json: its JSON, or the
# typed part (bench.model.records: EngineFacts, Warmup, AbPairs, ...) stored as its dump.
MetadataValue: TypeAlias = (
    "str | int | float | bool | None | BaseModel | Sequence[MetadataValue] "
    "| Mapping[str, MetadataValue]"
)


class RunWriter:
    """Writes results/<run-id>/ as the run goes (a `bench.runner.recorder.Sink`)."""

    def __init__(self, directory: Path, run_id: str):
        self.dir = directory
        self.run_id = run_id
        # metadata.json as stored: its keys in the order they were first written.
        self.metadata: dict[str, JsonValue] = {}
        self._samples: IO[str] | None = None
        self._steps: IO[str] | None = None
        # Several hosts' runners write at once (bench.runner.lanes): one line at a time.
        self._lock = threading.RLock()

    def start(self, metadata: Mapping[str, MetadataValue]) -> None:
        self.dir.mkdir(parents=True, exist_ok=False)
        self.metadata = {
            "schema_version": bench.SCHEMA_VERSION,
            "bench_version": bench.__version__,
            "run_id": self.run_id,
            "status": "running",
            "pid": os.getpid(),
            # The machine bench ran on (engines may be elsewhere): where `pid` means something.
            "controller": owner.hostname(),
            "started_at": _now(),
            **{k: as_stored(v) for k, v in metadata.items()},
        }
        RunMetadata.model_validate(self.metadata)  # a typo in a key fails here, not on read
        self._write_metadata()
        self._samples = (self.dir / SAMPLES).open("a")
        self._steps = (self.dir / STEPS).open("a")

    def add_samples(self, samples: Sequence[Sample]) -> None:
        rows = [s.row() for s in samples]
        with self._lock:
            _append(self._samples, rows)

    def add_step(self, step: StepRecord) -> None:
        row = step.row()
        with self._lock:
            _append(self._steps, [row])

    def update(self, **fields: MetadataValue) -> None:
        with self._lock:
            self.metadata.update({k: as_stored(v) for k, v in fields.items()})
            self._write_metadata()

    def finish(self, status: str, **fields: MetadataValue) -> None:
        with self._lock:
            for f in (self._samples, self._steps):
                if f:
                    f.close()
            self._samples = self._steps = None
            self.update(status=status, finished_at=_now(), **fields)

    def _write_metadata(self) -> None:
        # Write, fsync, rename, fsync the folder: a reader (or a crash, or a power cut)
        # never sees half a file, and the status written at the end survives.
        tmp = self.dir / (METADATA + ".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps(self.metadata, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.dir / METADATA)
        folder = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def as_stored(v: MetadataValue) -> JsonValue:
    """A metadata value as metadata.json stores it: a typed part as its JSON dump."""
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, Mapping):
        return {k: as_stored(x) for k, x in v.items()}
    if isinstance(v, Sequence) and not isinstance(v, str):
        return [as_stored(x) for x in v]
    return v


def _append(f: IO[str] | None, rows: list[dict[str, JsonValue]]) -> None:
    if f is None:
        raise RuntimeError("run not started")
    for row in rows:
        f.write(json.dumps(row, default=str) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Run:
    """A stored run: its metadata, its step records, and its samples as row dicts
    (`samples`), as numpy columns (`columns`) or as a pandas DataFrame (`frame`).

    A run read by columns (`load_run(d, columns=True)`, what `bench report` does) keeps no
    row dict: a million samples as dicts take about 2 GB, as columns a quarter of that.
    Its `samples` are read again from the file, exactly as stored, only if asked for."""

    def __init__(
        self,
        dir: Path,
        metadata: Row,
        samples: list[Row] | None,
        steps: list[Row],
        notes: list[str] | None = None,
        columns: Columns | None = None,
    ):
        self.dir = dir
        self.metadata = metadata
        self.steps = steps
        # What reading left out and why (a torn last line), for the report to say.
        self.notes = notes if notes is not None else []
        self._samples = samples
        self._columns = columns
        self._frame: pd.DataFrame | None = None

    @property
    def samples(self) -> list[Row]:
        if self._samples is None:
            self._samples = _read_jsonl(self.dir / SAMPLES, [], Sample)
        return self._samples

    def iter_samples(self) -> Iterator[Row]:
        """The samples as stored row dicts, one at a time: for what needs the free text
        the columns leave out (extras) without holding every row of a large run."""
        if self._samples is not None:
            yield from self._samples
            return
        for record in _records(self.dir / SAMPLES, [], Sample.model_validate_json):
            yield record.row()

    @property
    def columns(self) -> Columns:
        """The samples as one numpy array per SAMPLE_COLUMNS field (bench.model.records' fields
        but the free text no table reads): numbers as int, float or bool arrays (NaN
        where missing), the rest as object arrays (None where missing)."""
        if self._frame is not None:  # views of the frame's arrays, not a second copy
            return sample_columns(self._frame)
        if self._columns is None:
            self._columns = sample_columns(self.samples)
        return self._columns

    @property
    def frame(self) -> pd.DataFrame:
        """The columns as a pandas DataFrame (for the report, which works in pandas)."""
        if self._frame is None:
            import pandas as pd

            self._frame = pd.DataFrame(self.columns, copy=False)
            self._columns = None  # the frame holds the arrays now: one copy in memory
        return self._frame

    def part(self, key: str) -> Row:
        """A part of metadata.json as a JSON object (scenario, host, hosts, engines,
        searches): empty when the run has none."""
        return obj(self.metadata.get(key))

    @property
    def ab(self) -> AbPairs | None:
        """metadata.json's `ab` part, typed; None for a run that is not an A/B run."""
        stored = self.metadata.get("ab")
        return AbPairs.model_validate(stored) if stored else None

    @property
    def run_id(self) -> str:
        run_id = self.metadata.get("run_id", self.dir.name)
        return run_id if isinstance(run_id, str) else self.dir.name

    @cached_property
    def platforms_recorded(self) -> dict[str, str | None]:
        """Platforms with a sample or step, in the order first recorded (samples, then
        steps), each with the first kind recorded for it. Computed once: a report asks
        for it often, and a run may hold a million samples."""
        kinds: dict[str, str | None] = {}
        columns = self.columns
        for platform, kind in zip(
            columns["platform"].tolist(), columns["kind"].tolist(), strict=True
        ):
            if kinds.get(platform) is None:
                kinds[platform] = kind if isinstance(kind, str) else None
        for row in self.steps:
            platform = row["platform"]
            if isinstance(platform, str) and kinds.get(platform) is None:
                kinds[platform] = text(row.get("kind"))
        return kinds

    @property
    def status(self) -> str:
        status = text(self.metadata.get("status", "unknown")) or "unknown"
        # The pid is judged only where it ran: a run written on another controller is
        # taken at its word.
        if status != "running":
            return status
        # A run on this controller goes on while its bench holds the run's lock (a pid may
        # have been reused by another program); a run written elsewhere is taken at its word.
        host = text(self.metadata.get("controller"))
        if owner.is_local(host) and not owner.run_alive(self.run_id, self.metadata.get("pid")):
            return "incomplete"  # its process is gone: killed or crashed mid-run
        return status


def load_run(directory: str | Path, columns: bool = False) -> Run:
    """A stored run, upgraded to the current schema and validated through bench.model.records.

    `columns`: its samples kept as columns only (Run.columns), for reading large runs."""
    d = Path(directory)
    meta_path = d / METADATA
    if not meta_path.is_file():
        raise UsageError(f"{d} is not a bench run directory (no {METADATA})")
    try:
        with _open_regular(meta_path) as f:
            text = f.read(MAX_METADATA_BYTES + 1)
        if len(text) > MAX_METADATA_BYTES:
            raise UsageError(f"{meta_path}: larger than {MAX_METADATA_BYTES // 2**20} MiB")
        metadata = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise UsageError(f"{meta_path}: not a bench metadata object")
    version = metadata.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"{meta_path}: no valid schema_version ({version!r})")
    if version > bench.SCHEMA_VERSION:
        raise UsageError(
            f"{d}: results schema version {version} was written by a newer bench (this one "
            f"reads up to {bench.SCHEMA_VERSION}): upgrade bench to read it"
        )
    notes: list[str] = []
    if version == bench.SCHEMA_VERSION:
        # Each line validated as it is read, straight from its JSON: no parsed dict or
        # record of every line is kept beside the rows, and repeated strings (platform,
        # host, kind) are one object each, not one per row.
        if columns:
            by_column = _read_columns(d / SAMPLES, notes)
            steps = _read_jsonl(d / STEPS, notes, StepRecord)
            meta = _validated(d, RunMetadata, metadata)
            return Run(d, meta, None, steps, notes, columns=by_column)
        samples = _read_jsonl(d / SAMPLES, notes, Sample)
        steps = _read_jsonl(d / STEPS, notes, StepRecord)
    else:
        samples, steps = _read_jsonl(d / SAMPLES, notes), _read_jsonl(d / STEPS, notes)
        for v in range(version, bench.SCHEMA_VERSION):
            metadata, samples, steps = UPGRADES[v](metadata, samples, steps)
        for model, rows in ((Sample, samples), (StepRecord, steps)):
            for i, row in enumerate(rows):
                rows[i] = _validated(d, model, row)  # in place: one copy in memory
    meta = _validated(d, RunMetadata, metadata)
    return Run(d, meta, samples, steps, notes)


def _validated(d: Path, model: type[BaseModel], row: Row) -> Row:
    try:
        return model.model_validate(row).model_dump(mode="json")
    except ValueError as e:
        raise UsageError(f"{d}: {_mismatch(e)}") from None


def _mismatch(e: ValueError) -> str:
    return f"stored records do not match schema {bench.SCHEMA_VERSION}: {str(e).splitlines()[0]}"


_Parsed = TypeVar("_Parsed")  # what a JSON-lines reader's parser makes of one line


# -- upgrades of older schema versions, in memory --------------------------------------

Rows = list[Row]


def update_to_2(metadata: Row, samples: Rows, steps: Rows) -> tuple[Row, Rows, Rows]:
    """Schema 1 (bench 0.1, one local host) -> 2 (a host per backend, typed records).

    - every engine ran on the run's one host: its hostname becomes the host key of
      metadata.hosts, of each engines entry and of every sample and step;
    - sample and step keys that schema 2 does not declare (backend facts such as
      container_id or balloon_*_bytes) move into `extras`;
    - which platforms ran a density search is stored as metadata.searches, by the rule
      schema-1 scenarios followed.
    """
    host = obj(metadata.get("host"))
    key = text(host.get("hostname")) or "local"
    engines = obj(metadata.get("engines"))
    meta: Row = {
        **metadata,
        "schema_version": 2,
        "hosts": {key: host},
        "engines": {p: {**obj(e), "host": key} for p, e in engines.items()},
        "searches": _v1_searches(obj(metadata.get("scenario"))),
    }
    return (
        meta,
        [split_extras(Sample, {**s, "host": key}) for s in samples],
        [split_extras(StepRecord, {"status": "ran", **st, "host": key}) for st in steps],
    )


def _v1_searches(scenario: Row) -> Row:
    """A platform's own `density` wins; one with its own `counts` does not search;
    otherwise the scenario's `density` applies (Scenario.search_for today)."""
    out: Row = {}
    platforms = scenario.get("platforms", [])
    for p in map(obj, platforms if isinstance(platforms, list) else []):
        name = str(p["name"])
        if p.get("density"):
            out[name] = p["density"]
        elif not p.get("counts") and scenario.get("density"):
            out[name] = scenario["density"]
    return out


UPGRADES: dict[int, Callable[[Row, Rows, Rows], tuple[Row, Rows, Rows]]] = {
    1: update_to_2,
}


def _open_regular(path: Path) -> IO[bytes]:
    """A run file opened for reading only if it is a regular file of the folder itself: a
    symbolic link (to a root-only file, to /dev/zero) or a FIFO (which would block the
    read) is refused, one line, before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(
                f"{path}: a symbolic link; bench reads only a run's own files"
            ) from None
        raise UsageError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: not a regular file; bench reads only a run's own files")
    return os.fdopen(fd, "rb")


def _read_jsonl(path: Path, notes: list[str], model: type[Record] | None = None) -> list[Row]:
    """Every record of a JSON-lines file: parsed, or validated as `model`'s stored rows."""
    if model is None:
        return list(_records(path, notes, json.loads))
    return [r.row() for r in _records(path, notes, model.model_validate_json)]


def _records(path: Path, notes: list[str], parse: Callable[[bytes], _Parsed]) -> Iterator[_Parsed]:
    """Each line of a JSON-lines file, parsed, as it is read.

    Only a torn last line (no newline: the writer died in the middle of it) is left out,
    with a note; any other line that is not a record stops the read with its line
    number, since dropping it could hide a regression's samples."""
    if not path.exists() and not path.is_symlink():
        return
    with _open_regular(path) as f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(line) > MAX_LINE_BYTES:
                raise UsageError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES} bytes")
            try:
                record = parse(line)
            except ValueError as e:
                if isinstance(e, ValidationError) and e.errors()[0]["type"] != "json_invalid":
                    raise UsageError(f"{path}:{number}: {_mismatch(e)}") from None
                if not line.endswith(b"\n") and not f.read(1):
                    notes.append(
                        f"{path}:{number}: a torn last line (the writer stopped in it) left out"
                    )
                    return  # everything before it is intact
                raise UsageError(f"{path}:{number}: not a JSON record ({_first_line(e)})") from None
            yield record


# -- samples by column ------------------------------------------------------------------

# The sample fields a run read by columns keeps: all but the per-instance free text no
# table or plot reads (it stays in samples.jsonl, and in `Run.samples` when asked for).
SAMPLE_COLUMNS = tuple(
    f for f in Sample.model_fields if f not in ("name", "marker_fields", "console_tail", "extras")
)
CHUNK = 50_000  # rows turned into arrays at a time while reading


def sample_columns(samples: Columns | pd.DataFrame | Iterable[Mapping[str, object]]) -> Columns:
    """Samples as Run.columns has them: columns as they are, a pandas DataFrame's columns
    as arrays, row dicts turned into columns. No pandas is imported here: a `bench run`
    summarises its few samples without it (its import alone costs half a second)."""
    if isinstance(samples, dict):
        return samples
    if hasattr(samples, "iloc"):  # a pandas DataFrame (bench report's frames, tests)
        frame = cast("pd.DataFrame", samples)  # told by its attribute: pandas not imported
        return {name: frame[name].to_numpy() for name in frame.columns}
    return _join_columns([_columns_of(list(samples))])


def sample_frame(
    samples: Columns | pd.DataFrame | Iterable[Mapping[str, object]],
) -> pd.DataFrame:
    """Samples as Run.frame has them: a pandas DataFrame of SAMPLE_COLUMNS."""
    import pandas as pd

    if isinstance(samples, pd.DataFrame):
        return samples
    return pd.DataFrame(sample_columns(samples), copy=False)


def float_column(values: ArrayLike) -> NDArray[np.float64]:
    """A column as float64, NaN where a value is missing or not a number (a bool is a
    number, as numpy has it)."""
    import numpy as np

    column = np.asarray(values)
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    return np.array(
        [v if isinstance(v, int | float) else np.nan for v in column.tolist()], dtype=np.float64
    )


def _read_columns(path: Path, notes: list[str]) -> Columns:
    """The samples of a current-schema file, each line validated as a `Sample`, kept as
    columns: numbers in float/int/bool arrays, strings shared (a platform or host name
    is one object, not one per row). No row dict of the whole file is ever held."""
    chunks, rows = [], []
    for record in _records(path, notes, Sample.model_validate_json):
        rows.append(record.__dict__)
        if len(rows) == CHUNK:
            chunks.append(_columns_of(rows))
            rows = []
    chunks.append(_columns_of(rows))
    return _join_columns(chunks)


def _columns_of(rows: Sequence[Mapping[str, object]]) -> Columns:
    """Rows as one numpy array per SAMPLE_COLUMNS field."""
    import numpy as np

    if not rows:
        return {name: np.array([], dtype=np.float64) for name in SAMPLE_COLUMNS}
    # Transposed in C: a million rows of 30 fields are 30 million values.
    try:
        table = list(zip(*map(itemgetter(*SAMPLE_COLUMNS), rows), strict=True))
    except KeyError:  # hand-written or partial rows: missing fields are None
        table = list(zip(*([r.get(name) for name in SAMPLE_COLUMNS] for r in rows), strict=True))
    out = {}
    for name, values in zip(SAMPLE_COLUMNS, table, strict=True):
        kinds = set(map(type, values)) - {type(None)}
        if kinds <= {bool} and None not in values:
            out[name] = np.array(values, dtype=bool)
        elif kinds <= {int} and None not in values:
            out[name] = np.array(values, dtype=np.int64)
        elif kinds <= {int, float}:
            out[name] = np.array(values, dtype=np.float64)  # None becomes NaN
        else:
            column = np.empty(len(values), dtype=object)
            try:  # equal strings made one object (a platform name once, not once a row);
                # keyed by type too, or True would stand for a 1
                shared: dict[tuple[type, object], object] = {}
                column[:] = [shared.setdefault((type(v), v), v) for v in values]
            except TypeError:  # a value that cannot be hashed (not a stored sample's)
                column[:] = values
            out[name] = column
    return out


def _join_columns(chunks: list[Columns]) -> Columns:
    """One array per column from the chunks', joined one column at a time (the peak is
    the columns and one column's chunks, not two copies of everything). A string is
    shared within its chunk: one object per chunk of 50,000 rows is sharing enough."""
    import numpy as np

    columns = {}
    for name in SAMPLE_COLUMNS:
        parts = [c.pop(name) for c in chunks]
        if len(parts) > 1 and len({p.dtype for p in parts if len(p)}) > 1:
            # Chunks of different types (ints in one, NaN in another): floats if all are
            # numbers, else the values themselves.
            numeric = all(p.dtype != object for p in parts)
            parts = [p.astype(np.float64 if numeric else object) for p in parts]
        columns[name] = np.concatenate(parts) if parts else np.array([])
    return columns


def _first_line(e: ValueError) -> str:
    return e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
