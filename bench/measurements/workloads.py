"""Workloads: what it costs to *run* inside an instance, against the same run natively.

After an instance is ready, each workload the scenario chooses (its `workloads:` block)
runs inside it to its end, one after another, through the backend's `run_in` (docker
and podman exec, native: nsenter into its chroot, qemu and libvirt: the workloads
image's init runs what bench writes on the serial console). The tools are Debian's stress-ng and
fio, packed with their libraries into the `workloads` bench image, so a container, a
native chroot and a VM run identical bytes; bench writes no benchmark kernel of its own.
One fresh instance per repeat (the scenario's `repeat`) keeps repeats independent.

Each tool is a plug-in here (`Tool`: the argv it adds, the parser of its
machine-readable result: stress-ng's YAML, fio's JSON); the built-in workloads pin
their options (the design, docs/design/workloads.md, says why: stress-ng 0.15 has no
--getpid, --syscall mostly sleeps, --stream must be given its L3 size). A figure keeps
its unit and direction (bench.model.records.WorkloadFigure); the tool's raw output is
stored with it, under `extras["workloads"]` of the sample (a list of WorkloadRun).
Medians, spreads and ratios to native are computed when read (bench.report.workloads).

Why exec and not a run-to-completion init (the design's proposal): the runner already
keeps an instance running from ready until its measurements end, so a workload is one
more measurement of a ready instance, and one instance runs several workloads (a VM
boots once per repeat, not once per workload). A VM has no exec without a guest agent:
its console serves as one (bench.backends.guest.run_in_guest). Under TCG its runs are
marked `emulated` and kept out of ratios. A backend that cannot run a command inside
its instances says so (Backend.run_in), and its runs are stored with that error.
"""

from __future__ import annotations

import json
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import yaml
from pydantic import JsonValue

from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.errors import first_line
from bench.model.records import Facts, WorkloadFigure, WorkloadRun, Worse

if TYPE_CHECKING:
    from bench.backends.base import Backend, Instance

RESULT = "/tmp/bench-result"  # where a tool writes its machine-readable result
OUTPUT = "/tmp/bench-output"  # its human-readable output, kept for an error line
FIO_FILE = "/tmp/bench-fio.dat"  # in the instance's writable layer (native: the host disk)
# Beyond its duration a tool may take this long (fio lays out its file first) before
# busybox `timeout` kills it; the engines' exec call (60 s) must outlast both.
GRACE_S = 20
MAX_DURATION_S = 30.0
RAW_LIMIT = 64 * 1024  # a tool's result larger than this is cut when stored


class Tool(ABC):
    """A benchmark tool in the workloads image: how to run it, how to read its result."""

    name: ClassVar[str]
    # Options a scenario's args may not give: they name files or programs, and bench runs
    # as root (on a native platform with no isolation): where a tool reads, writes and
    # what it runs are bench's, never the scenario's.
    refused: ClassVar[tuple[str, ...]] = ()

    def check_args(self, args: list[str]) -> None:
        """Raise ValueError naming the first refused option in `args` (`--opt`, `--opt=v`
        or `opt=v`, as the tool reads them)."""
        for a in args:
            option = a.lstrip("-").split("=", 1)[0]
            if option in self.refused:
                raise ValueError(
                    f"{self.name} option {option!r} is bench's to set, not the scenario's "
                    "(it names a file or a program, and bench runs as root)"
                )

    @abstractmethod
    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        """The tool's command line: the workload's args plus its time and output flags."""

    @abstractmethod
    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        """Figures (unit and direction each) and diagnostics from its result file."""


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class StressNg(Tool):
    """stress-ng with --metrics, result as YAML (`--yaml`): one entry per stressor."""

    name = "stress-ng"
    refused = ("yaml", "Y", "log-file", "job", "j", "temp-path")
    # YAML key -> (figure suffix, unit, worse). The real-time rate is the figure: a
    # CPU-time rate depends on how each kernel accounts time (gVisor's Sentry differs),
    # so it is a diagnostic only.
    FIGURES: ClassVar[dict[str, tuple[str, str, Worse]]] = {
        "bogo-ops-per-second-real-time": ("bogo_ops_per_s", "ops/s", "lower"),
        "nanosecs-per-context-switch-pipe-method": ("ns_per_switch", "ns", "higher"),
        "memory-read-rate-mb-per-sec": ("read_mb_per_s", "MB/s", "lower"),
        "memory-write-rate-mb-per-sec": ("write_mb_per_s", "MB/s", "lower"),
    }
    DIAGNOSTICS: ClassVar[dict[str, str]] = {
        "bogo-ops-per-second-usr-sys-time": "bogo_ops_per_cpu_s",
        "cpu-usage-per-instance": "cpu_usage_pct",
        "wall-clock-time": "wall_clock_s",
        "max-rss": "max_rss_kib",
    }

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return ["stress-ng", *args, "--metrics", "-t", f"{duration_s:g}s", "--yaml", RESULT]

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        doc = yaml.safe_load(raw.decode("utf-8", "replace"))
        metrics = doc.get("metrics") if isinstance(doc, dict) else None
        if not isinstance(metrics, list) or not metrics:
            raise ValueError("stress-ng wrote no metrics (run too short?)")
        figures: list[WorkloadFigure] = []
        diagnostics: dict[str, float | str] = {}
        for entry in metrics:
            if not isinstance(entry, dict):
                continue
            stressor = str(entry.get("stressor", "?"))
            for key, (suffix, unit, worse) in self.FIGURES.items():
                value = _num(entry.get(key))
                if value is not None:
                    figures.append(
                        WorkloadFigure(
                            figure=f"{stressor}.{suffix}", value=value, unit=unit, worse=worse
                        )
                    )
            for key, name in self.DIAGNOSTICS.items():
                value = _num(entry.get(key))
                if value is not None:
                    diagnostics[f"{stressor}.{name}"] = value
        if not figures:
            raise ValueError("stress-ng's metrics hold no rate")
        return figures, diagnostics


class Fio(Tool):
    """fio, one job, result as JSON. The file is in the instance's writable layer (a
    container's overlay, native: the host's disk; gVisor's own rootfs may be memory)."""

    name = "fio"
    refused = (
        "filename",
        "directory",
        "filename_format",
        "opendir",
        "output",
        "exec_prerun",
        "exec_postrun",
        "trigger",
        "trigger-file",
        "trigger-remote",
        "program",
        "ioscheduler",
        "write_bw_log",
        "write_lat_log",
        "write_iops_log",
        "write_hist_log",
    )

    def check_args(self, args: list[str]) -> None:
        super().check_args(args)
        for a in args:
            option, _, value = a.lstrip("-").partition("=")
            # The exec and external engines run a program or load a library.
            if option == "ioengine" and value.split(":")[0] in ("exec", "external"):
                raise ValueError(f"fio ioengine {value!r} runs a program: not from a scenario")

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return [
            "fio",
            f"--name={workload}",
            f"--filename={FIO_FILE}",
            *args,
            f"--runtime={duration_s:g}",
            "--time_based",
            "--output-format=json",
            f"--output={RESULT}",
        ]

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        doc = json.loads(raw.decode("utf-8", "replace"))
        jobs = doc.get("jobs") if isinstance(doc, dict) else None
        if not isinstance(jobs, list) or not jobs or not isinstance(jobs[0], dict):
            raise ValueError("fio wrote no jobs")
        job = jobs[0]
        figures: list[WorkloadFigure] = []
        diagnostics: dict[str, float | str] = {}
        for direction in ("read", "write"):
            part = job.get(direction)
            if not isinstance(part, dict) or not part.get("io_bytes"):
                continue  # the job did not do this direction
            iops, bw = _num(part.get("iops")), _num(part.get("bw_bytes"))
            if iops is not None:
                figures.append(
                    WorkloadFigure(
                        figure=f"{direction}_iops", value=iops, unit="IO/s", worse="lower"
                    )
                )
            if bw is not None:
                figures.append(
                    WorkloadFigure(
                        figure=f"{direction}_bytes_per_s", value=bw, unit="bytes/s", worse="lower"
                    )
                )
            pct = (part.get("clat_ns") or {}).get("percentile") or {}
            p99 = _num(pct.get("99.000000"))
            if p99 is not None:
                figures.append(
                    WorkloadFigure(
                        figure=f"{direction}_clat_p99_s", value=p99 / 1e9, unit="s", worse="higher"
                    )
                )
        if not figures:
            raise ValueError("fio's job did no I/O")
        options = job.get("job options") or {}
        for key in ("rw", "bs", "direct", "ioengine", "size"):
            if key in options:
                diagnostics[key] = str(options[key])
        diagnostics["fio_version"] = str(doc.get("fio version", "?"))
        return figures, diagnostics


TOOLS: dict[str, Tool] = {t.name: t for t in (StressNg(), Fio())}


@dataclass(frozen=True)
class Builtin:
    tool: str
    args: tuple[str, ...]
    doc: str


# The workloads a scenario names without tool: and args:. Options pinned so that every
# platform, a 512 MiB VM included, runs the same job (docs/design/workloads.md, R8).
BUILTIN: dict[str, Builtin] = {
    "cpu": Builtin(
        "stress-ng", ("--cpu", "1", "--cpu-method", "matrixprod"), "CPU (matrix product)"
    ),
    "stream": Builtin(
        "stress-ng",
        ("--stream", "1", "--stream-l3-size", "8M"),
        "memory bandwidth (STREAM, fixed 8 MiB L3 size: about 100 MB of arrays)",
    ),
    "syscall": Builtin("stress-ng", ("--get", "1"), "system calls (the get* family)"),
    "switch": Builtin("stress-ng", ("--switch", "1"), "context switches (pipe ping-pong)"),
    "randread": Builtin(
        "fio",
        ("--rw=randread", "--bs=4k", "--size=64m", "--direct=1", "--ioengine=psync"),
        "4 KiB random reads, O_DIRECT, on the writable layer",
    ),
    "randwrite": Builtin(
        "fio",
        ("--rw=randwrite", "--bs=4k", "--size=64m", "--direct=1", "--ioengine=psync"),
        "4 KiB random writes, O_DIRECT, on the writable layer",
    ),
}


def command(tool_argv: list[str], duration_s: float) -> list[str]:
    """What runs inside the instance: the tool bounded by busybox `timeout`, its
    human-readable output to a file (its last lines on stderr when it fails), then its
    result file on stdout, whatever the engine's exec does with the two streams."""
    body = (
        f"cd /tmp; rm -f {RESULT}; "
        f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(tool_argv)} >{OUTPUT} 2>&1; "
        f"rc=$?; [ $rc -eq 0 ] || tail -n 5 {OUTPUT} >&2; cat {RESULT} 2>/dev/null; "
        f"rm -f {RESULT} {OUTPUT} {FIO_FILE}; exit $rc"
    )
    return ["/bin/sh", "-c", body]


def run_workload(
    backend: Backend,
    inst: Instance,
    name: str,
    tool_name: str,
    args: list[str],
    duration_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> WorkloadRun:
    """One workload inside one running instance, to its end: never raises (a failure is
    the run's `error`). `clock` times it (bench's own: the runner's)."""
    tool = TOOLS[tool_name]
    argv = tool.argv(name, args, duration_s)
    emulated = inst.info.get("accel") == "tcg"
    base = {"workload": name, "tool": tool_name, "argv": argv, "duration_s": duration_s}
    start = clock()
    try:
        # The answer's wait: the tool's own bound, and slack for a slow console.
        done = backend.run_in(inst, command(argv, duration_s), duration_s + GRACE_S + 30)
    except Exception as e:
        return WorkloadRun(**base, emulated=emulated, error=first_line(e))
    wall = clock() - start
    raw = done.stdout[:RAW_LIMIT].decode("utf-8", "replace")
    if done.rc != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return WorkloadRun(
            **base,
            emulated=emulated,
            wall_s=wall,
            rc=done.rc,
            raw=raw,
            error=f"{tool_name} exited with {done.rc}: {why[-1][:200] if why else 'no output'}",
        )
    try:
        figures, diagnostics = tool.parse(done.stdout)
    except Exception as e:
        return WorkloadRun(
            **base,
            emulated=emulated,
            wall_s=wall,
            rc=done.rc,
            raw=raw,
            error=f"cannot read {tool_name}'s result: {first_line(e)}",
        )
    return WorkloadRun(
        **base,
        emulated=emulated,
        wall_s=wall,
        rc=done.rc,
        figures=figures,
        diagnostics=diagnostics,
        raw=raw,
    )


class Workloads(InstanceMeasurement):
    fields = ("workloads",)
    # Not a Sample field: one list under extras (WorkloadRun each, see the module's doc).
    nested = frozenset({"workloads"})
    # Last of the instance's readings: its memory and boundary are read before a
    # workload runs in it.
    when = "after_settle"

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        chosen = ctx.scenario.workloads
        if chosen is None:
            return {}
        runs: list[JsonValue] = [
            run_workload(
                ctx.backend,
                inst,
                w.name,
                w.tool or "",
                list(w.args or ()),
                chosen.duration_of(w),
                ctx.clock.now,
            ).model_dump(mode="json")
            for w in chosen.run
        ]
        return {"workloads": runs}
