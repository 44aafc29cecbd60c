"""`bench clean`: find and remove everything bench created and left behind."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.backends.base import Backend, Leftover
from bench.model.errors import BenchError, UsageError
from bench.model.owner import remove_stale_run_locks
from bench.model.paths import is_run_id


@dataclass
class CleanReport:
    removed: list[Leftover] = field(default_factory=list)
    failed: list[tuple[Leftover, str]] = field(default_factory=list)
    live: list[Leftover] = field(default_factory=list)  # of a run still going: untouched
    # Owned by a bench on another controller host, which this one cannot ask: untouched.
    remote: list[Leftover] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def check_run_id(run_id: str | None) -> None:
    """Refuse a run id bench cannot have made (bench.model.paths.is_run_id). An empty one is the
    dangerous case: the engines' label filter `bench.run_id=` with no value matches every
    bench container, so `--run ""` would have removed every run's instances, live ones
    included."""
    if run_id is not None and not is_run_id(run_id):
        raise UsageError(
            f"--run {run_id!r}: not a run id (the name of its results folder, such as "
            "quickstart-20261130-064410-9122)"
        )


def clean(
    backends: list[Backend], run_id: str | None = None, dry_run: bool = False, force: bool = False
) -> CleanReport:
    check_run_id(run_id)
    report = CleanReport()
    for b in backends:
        try:
            found = b.leftovers(run_id)
        except BenchError as e:
            report.unreachable.append(str(e))
            b.close()
            continue
        for left in found:
            if left.in_use and not force:
                (report.remote if left.owner_remote else report.live).append(left)
                continue
            if dry_run:
                report.removed.append(left)
                continue
            try:
                b.remove_leftover(left)
                report.removed.append(left)
            except Exception as e:
                report.failed.append((left, str(e)[:200]))
        b.close()
    if not dry_run:
        remove_stale_run_locks(run_id)  # of runs killed before they could remove their own
    return report
