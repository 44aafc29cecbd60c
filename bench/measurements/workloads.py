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

import contextlib
import ipaddress
import json
import random
import shlex
import shutil
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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

    # A network tool talks to a server bench runs on this host (HostServer); its args
    # hold {host} and {port}, filled in per run.
    needs_server: ClassVar[bool] = False

    @abstractmethod
    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        """The tool's command line: the workload's args plus its time and output flags."""

    @abstractmethod
    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        """Figures (unit and direction each) and diagnostics from its result file."""

    def prelude(self, port: int, duration_s: float) -> str:
        """Shell run inside the instance before the tool (a server of its own)."""
        return ""


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


class Iperf3(Tool):
    """iperf3's client inside the instance, its JSON (-J) result written with --logfile;
    the server is bench's, on this host (HostServer), at the address the instance reaches:
    the bridge's gateway for a container, the host's loopback for native."""

    name = "iperf3"
    needs_server = True

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return ["iperf3", *args, "-t", f"{duration_s:g}", "-J", "--logfile", RESULT]

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        doc = json.loads(raw.decode("utf-8", "replace"))
        if not isinstance(doc, dict):
            raise ValueError("iperf3 wrote no JSON object")
        if doc.get("error"):
            raise ValueError(f"iperf3: {doc['error']}")
        end = doc.get("end") or {}
        sent, received = end.get("sum_sent") or {}, end.get("sum_received") or {}
        figures: list[WorkloadFigure] = []
        # What the server received is the throughput (the sender's count includes what
        # sat in its socket buffer when the time ran out).
        bps = _num(received.get("bits_per_second"))
        if bps is not None:
            figures.append(
                WorkloadFigure(figure="received_bits_per_s", value=bps, unit="bit/s", worse="lower")
            )
        if not figures:
            raise ValueError("iperf3's result holds no received rate")
        diagnostics: dict[str, float | str] = {}
        for key, value in (
            ("sent_bits_per_s", _num(sent.get("bits_per_second"))),
            ("retransmits", _num(sent.get("retransmits"))),
        ):
            if value is not None:
                diagnostics[key] = value
        version = (doc.get("start") or {}).get("version")
        if isinstance(version, str):
            diagnostics["iperf3_version"] = version
        return figures, diagnostics


class Iperf3Loopback(Iperf3):
    """iperf3 with its server in the same instance, on its own loopback: the instance's
    own network stack (the host's kernel for runc, gVisor's netstack under runsc), no
    network needed. The server is one-off (-1) and bounded by `timeout`, so nothing of
    it outlives the run; a fixed pause lets it listen before the client starts."""

    name = "iperf3-loopback"
    needs_server = False
    LISTEN_PAUSE_S = 1

    def prelude(self, port: int, duration_s: float) -> str:
        server = ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)]
        return (
            f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(server)} "
            f">/dev/null 2>&1 & sleep {self.LISTEN_PAUSE_S}; "
        )


TOOLS: dict[str, Tool] = {t.name: t for t in (StressNg(), Fio(), Iperf3(), Iperf3Loopback())}
# A port for an in-instance server: above the usual ephemeral range's start on no
# particular service; random so that two instances sharing a host's loopback (native)
# do not meet.
LOOPBACK_PORTS = (20000, 29999)


class HostServer:
    """An iperf3 server on this host, bound to the one address the instance reaches (never
    0.0.0.0: a lab host's other interfaces stay closed), on a free port bench picks,
    stopped when the run ends (a context manager). The host's iperf3 serves; the client
    is the packed one (the protocol is the same across 3.x)."""

    LISTEN_WAIT_S = 5.0

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HostServer:
        exe = shutil.which("iperf3")
        if exe is None:
            raise OSError("network workloads need iperf3 on this host (apt-get install iperf3)")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((self.address, 0))
            self.port = s.getsockname()[1]
        self._proc = subprocess.Popen(
            [exe, "-s", "-B", self.address, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Listening is read from /proc/net/tcp: a probe connection would be a client.
        deadline = time.monotonic() + self.LISTEN_WAIT_S
        while not listening(self.address, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise OSError(f"iperf3 -s did not listen on {self.address}:{self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def listening(address: str, port: int) -> bool:
    """Whether a TCP socket listens on address:port (IPv4), from /proc/net/tcp."""
    want = f"{socket.htonl(int(ipaddress.IPv4Address(address))):08X}:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(parts[1] == want and parts[3] == "0A" for parts in (line.split() for line in lines))


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
    "tcp": Builtin(
        "iperf3",
        ("-c", "{host}", "-p", "{port}"),
        "TCP throughput instance -> host (one stream; native: the host's loopback)",
    ),
    "tcp-loopback": Builtin(
        "iperf3-loopback",
        ("-c", "127.0.0.1", "-p", "{port}"),
        "TCP throughput over the instance's own loopback (its network stack)",
    ),
}


def needs_network(tool: str | None) -> bool:
    return tool in TOOLS and TOOLS[tool].needs_server


def command(tool_argv: list[str], duration_s: float, prelude: str = "") -> list[str]:
    """What runs inside the instance: the tool bounded by busybox `timeout`, its
    human-readable output to a file (its last lines on stderr when it fails), then its
    result file on stdout, whatever the engine's exec does with the two streams."""
    body = (
        f"cd /tmp; rm -f {RESULT}; {prelude}"
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
    emulated = inst.info.get("accel") == "tcg"
    base = {
        "workload": name,
        "tool": tool_name,
        "argv": tool.argv(name, args, duration_s),
        "duration_s": duration_s,
    }
    server: contextlib.AbstractContextManager[HostServer | None] = contextlib.nullcontext()
    try:
        if tool.needs_server:
            address = backend.host_address(inst)
            # None: the backend's tools are fakes and need no server (the fake backend).
            if address is not None:
                server = HostServer(address)
        with server as s:
            port = s.port if s is not None else random.randint(*LOOPBACK_PORTS)
            host = backend.host_address_seen(inst, s.address) if s is not None else "127.0.0.1"
            args = [a.replace("{host}", host).replace("{port}", str(port)) for a in args]
            argv = tool.argv(name, args, duration_s)
            base["argv"] = argv
            job = command(argv, duration_s, tool.prelude(port, duration_s))
            start = clock()
            # The answer's wait: the tool's own bound, and slack for a slow console.
            done = backend.run_in(inst, job, duration_s + GRACE_S + 30)
            wall = clock() - start
    except Exception as e:
        return WorkloadRun(**base, emulated=emulated, error=first_line(e))
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
