"""One exception root and the documented exit codes.

Every expected failure is a `BenchError` subclass carrying its exit code; the CLI
prints its message as one line (no traceback unless --debug) and exits with it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REGRESSION = 1  # `bench compare` or `bench ab` found a significant regression
    USAGE = 2  # bad command line or scenario file; nothing was started
    ENGINE_UNAVAILABLE = 3  # docker / libvirt not reachable; nothing was started
    INSTANCE_FAILURES = 4  # the run finished but some instances never became ready
    ERROR = 5  # any other failure bench could explain
    # `bench compare` / `bench ab`: too little evidence either way (too few pairs, runs
    # or samples, or a minimum detectable effect above the threshold). Not 2: the
    # command line was fine; more repeats or baseline runs would answer.
    INCONCLUSIVE = 6
    INTERRUPTED = 130  # SIGINT/SIGTERM: instances destroyed, results flushed


class BenchError(Exception):
    """Root of every error bench expects; the message is one actionable line."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(BenchError):
    exit_code = ExitCode.USAGE


class ScenarioError(UsageError):
    """A scenario file that cannot be run, located as precisely as possible."""

    def __init__(self, path: str, message: str, key: str | None = None, line: int | None = None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}")
        self.path, self.key, self.line = path, key, line


class EngineUnavailable(BenchError):
    exit_code = ExitCode.ENGINE_UNAVAILABLE


class ImageError(BenchError):
    """An image or VM artifact is missing or cannot be built."""


class Interrupted(BenchError):
    exit_code = ExitCode.INTERRUPTED


class MissingImage(UsageError):
    """A scenario names an image this host does not have (bench never pulls)."""

    def __init__(self, message: str, key: str = "image"):
        super().__init__(message)
        self.key = key  # the platform key at fault: image, kernel, initrd or disk


class UnknownRuntime(UsageError):
    """A docker platform's `runtime:` that its daemon has not registered."""

    key = "runtime"


class RuntimeUnusable(EngineUnavailable):
    """A registered runtime that cannot start a container on this host (its probe failed):
    the host's set-up, not the scenario, is at fault."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line, for per-instance failure reasons."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]
