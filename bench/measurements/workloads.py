"""Workloads: what it costs to *run* inside an instance, against the same run natively.

After an instance is ready, each workload the scenario chooses (its `workloads:` block)
runs inside it to its end, one after another, through the backend's `run_in` (docker
and podman exec, native: nsenter into its chroot, qemu and libvirt: the workloads
image's init runs what bench writes on the serial console). The tools are Debian's
stress-ng, fio, iperf3 and sockperf, packed with their libraries into the `workloads`
bench image, so a container, a native chroot and a VM run identical bytes; bench writes
no benchmark kernel of its own.
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
import math
import random
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import yaml
from pydantic import JsonValue

from bench.machines.rootfs import WRK_RESULT_ENV, WRK_SCRIPT
from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.errors import first_line
from bench.model.records import Facts, WorkloadFigure, WorkloadRun, Worse

if TYPE_CHECKING:
    from bench.backends.base import Backend, Instance

RESULT = "/tmp/bench-result"  # where a tool writes its machine-readable result
OUTPUT = "/tmp/bench-output"  # its human-readable output, kept for an error line
FIO_FILE = "/tmp/bench-fio.dat"  # in the instance's writable layer (native: the host disk)
# On the volume bench attaches (`volume: true`; bench.backends.oci.VOLUME_DIR).
# A VM's is a disk its init formats and mounts there (bench.machines.rootfs.VOLUME_BLOCK).
VOLUME_DIR = "/bench-volume"
VOLUME_FIO_FILE = f"{VOLUME_DIR}/bench-fio.dat"
# Beyond its duration a tool may take this long (fio lays out its file first) before
# busybox `timeout` kills it; the engines' exec call (60 s) must outlast both.
GRACE_S = 20
# How long a server inside an instance may take to bind its port (an exec into a loaded
# container can take seconds to start it).
LISTEN_WAIT_S = 10


def wait_listening(port: int, udp: bool = False, wait_s: int = LISTEN_WAIT_S) -> str:
    """Shell that returns once a socket is bound to `port` inside the instance (TCP in
    LISTEN, or UDP bound), reading /proc/net (busybox has no netstat; gVisor's Sentry
    serves these files too), and fails after `wait_s`: the wait happens where the
    server runs, without a round trip per look nor a fixed pause that is too short on a
    loaded host and wasted on a quiet one."""
    tables = "/proc/net/udp /proc/net/udp6" if udp else "/proc/net/tcp /proc/net/tcp6"
    state = "07" if udp else "0A"
    look = (
        f"cat {tables} 2>/dev/null | awk -v p=':{port:04X}' -v s={state} "
        "'substr($2, length($2) - 4) == p && $4 == s {f=1} END {exit !f}'"
    )
    return (
        f"n=0; until {look}; do n=$((n+1)); [ $n -ge {wait_s * 20} ] && "
        f"{{ echo 'bench: nothing listens on port {port}' >&2; exit 1; }}; sleep 0.05; done"
    )


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
    # A peer tool's server runs in a second instance of the step (PeerServer), on the
    # same network; its args hold {host} (that instance's address) and {port}.
    needs_peer: ClassVar[bool] = False
    # A tool with no result-file option prints its result: its stdout and stderr become
    # the result (the parser then also sees its error lines).
    result_on_stdout: ClassVar[bool] = False

    @abstractmethod
    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        """The tool's command line: the workload's args plus its time and output flags."""

    @abstractmethod
    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        """Figures (unit and direction each) and diagnostics from its result file."""

    # Its server's socket is UDP (what wait_listening looks for), not TCP.
    udp: ClassVar[bool] = False

    def prelude(self, port: int, duration_s: float) -> str:
        """Shell run inside the instance before the tool (a server of its own)."""
        return ""

    def postlude(self) -> str:
        """Shell run inside the instance after the tool (stops the prelude's server)."""
        return ""

    def reason(self, line: str) -> str:
        """The part of the tool's last output line that says why it failed."""
        return line

    def server_argv(self, address: str, port: int) -> list[str]:
        """The host-side server a `needs_server` tool talks to (HostServer runs it)."""
        raise NotImplementedError(f"{self.name} needs no server")


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

    file: ClassVar[str] = FIO_FILE
    # Needs the volume bench attaches (a platform's `volume: true`).
    needs_volume: ClassVar[bool] = False

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return [
            "fio",
            f"--name={workload}",
            f"--filename={self.file}",
            *args,
            f"--runtime={duration_s:g}",
            "--time_based",
            "--output-format=json",
            f"--output={RESULT}",
        ]

    @staticmethod
    def sequential(options: dict[str, object]) -> bool:
        """Whether the job read or wrote its file in order (fio's rw: read, write, rw,
        trim; `read` when not given), not at random offsets."""
        rw = str(options.get("rw") or options.get("readwrite") or "read")
        return not rw.startswith("rand") and "percentage_random" not in options

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        doc = json.loads(raw.decode("utf-8", "replace"))
        jobs = doc.get("jobs") if isinstance(doc, dict) else None
        if not isinstance(jobs, list) or not jobs or not isinstance(jobs[0], dict):
            raise ValueError("fio wrote no jobs")
        job = jobs[0]
        options = job.get("job options") or {}
        # A sequential job's figure is its bandwidth (its IOPS at 1 MiB blocks are the
        # same number over the block size: a diagnostic); a random job's, its IOPS.
        # The first figure is the headline (the neighbours' victim reads it).
        sequential = self.sequential(options if isinstance(options, dict) else {})
        figures: list[WorkloadFigure] = []
        diagnostics: dict[str, float | str] = {}
        for direction in ("read", "write"):
            part = job.get(direction)
            if not isinstance(part, dict) or not part.get("io_bytes"):
                continue  # the job did not do this direction
            iops, bw = _num(part.get("iops")), _num(part.get("bw_bytes"))
            rate = (
                [WorkloadFigure(figure=f"{direction}_iops", value=iops, unit="IO/s", worse="lower")]
                if iops is not None
                else []
            )
            band = (
                [
                    WorkloadFigure(
                        figure=f"{direction}_bytes_per_s", value=bw, unit="bytes/s", worse="lower"
                    )
                ]
                if bw is not None
                else []
            )
            if sequential:
                figures += band
                if iops is not None:
                    diagnostics[f"{direction}_iops"] = iops
            else:
                figures += rate + band
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
        for key in ("rw", "bs", "direct", "ioengine", "size"):
            if key in options:
                diagnostics[key] = str(options[key])
        diagnostics["fio_version"] = str(doc.get("fio version", "?"))
        return figures, diagnostics


class FioVolume(Fio):
    """fio on the volume bench attaches to the instance (a platform's `volume: true`:
    docker and podman a named volume, native a directory on the host's disk, a VM a
    raw file on the host's disk as its virtio disk, ext2 formatted by the guest), not on
    its writable layer: under gVisor a volume's I/O goes through its gofer to the host
    file, its rootfs's may stay in the Sentry's memory."""

    name = "fio-volume"
    file = VOLUME_FIO_FILE
    needs_volume = True


class Iperf3(Tool):
    """iperf3's client inside the instance, its JSON (-J) result written with --logfile;
    the server is bench's, on this host (HostServer), at the address the instance reaches:
    the bridge's gateway for a container, the host's loopback for native."""

    name = "iperf3"
    needs_server = True

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return ["iperf3", *args, "-t", f"{duration_s:g}", "-J", "--logfile", RESULT]

    def server_argv(self, address: str, port: int) -> list[str]:
        return ["iperf3", "-s", "-B", address, "-p", str(port)]

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

    def prelude(self, port: int, duration_s: float) -> str:
        server = ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)]
        return (
            f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(server)} "
            f">/dev/null 2>&1 & {wait_listening(port)}; "
        )


class Sockperf(Tool):
    """sockperf's ping-pong client (TCP) inside the instance: one message of its minimum
    size (14 bytes) in flight at a time, each answered by bench's sockperf server on
    this host (HostServer), at the address iperf3's server would have. `--full-rtt`:
    the round trip itself (sockperf otherwise reports half of it). Its percentiles are
    printed, not written to a file: stdout is the result. sockperf exits 0 even when it
    cannot connect, so a result without percentiles is an error, with its ERROR line."""

    name = "sockperf"
    needs_server = True
    result_on_stdout = True
    # -f reads a list of connections from a file; --full-log writes every message's
    # times to one (megabytes in 5 s); the VMA options load another library.
    refused = ("f", "file", "full-log", "daemonize", "load-vma", "vmazcopyread")
    PROTOCOL: ClassVar[tuple[str, ...]] = ("--tcp",)  # sockperf's default is UDP
    ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
    PERCENTILE = re.compile(r"---> percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")
    FIGURES: ClassVar[dict[str, str]] = {"50.000": "rtt_p50_s", "99.000": "rtt_p99_s"}

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return [
            "sockperf",
            "ping-pong",
            *self.PROTOCOL,
            *args,
            "-t",
            f"{duration_s:g}",
            "--full-rtt",
        ]

    def server_argv(self, address: str, port: int) -> list[str]:
        return ["sockperf", "server", *self.PROTOCOL, "-i", address, "-p", str(port)]

    def reason(self, line: str) -> str:
        # Its error follows, on the same line, what it printed without a newline (the
        # address and port: different each run, which would make each failure distinct).
        line = self.ESCAPE.sub("", line)
        at = line.find("ERROR:")
        return line[at:] if at >= 0 else line

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        text = self.ESCAPE.sub("", raw.decode("utf-8", "replace"))
        errors = [ln.split("ERROR:", 1)[1].strip() for ln in text.splitlines() if "ERROR:" in ln]
        percentiles = {m.group(1): float(m.group(2)) for m in self.PERCENTILE.finditer(text)}
        figures = [
            # sockperf prints microseconds; bench's figures are in seconds.
            WorkloadFigure(figure=name, value=percentiles[p] / 1e6, unit="s", worse="higher")
            for p, name in self.FIGURES.items()
            if p in percentiles
        ]
        if not figures:
            raise ValueError(
                f"sockperf: {errors[0]}" if errors else "sockperf printed no percentiles"
            )
        diagnostics: dict[str, float | str] = {}
        for key, pattern, scale in (
            ("rtt_mean_s", r"avg-rtt=\s*([0-9.]+)", 1e-6),
            ("rtt_max_s", r"<MAX> observation\s*=\s*([0-9.]+)", 1e-6),
            ("observations", r"Total (\d+) observations", 1.0),
            ("valid_s", r"\[Valid Duration\] RunTime=([0-9.]+) sec", 1.0),
        ):
            m = re.search(pattern, text)
            if m:
                diagnostics[key] = float(m.group(1)) * scale
        m = re.search(r"== version #(\S+)", text)
        if m:
            diagnostics["sockperf_version"] = m.group(1)
        return figures, diagnostics


class SockperfLoopback(Sockperf):
    """sockperf's server and client in the same instance, over its loopback (the
    instance's own network stack, as iperf3-loopback). sockperf's server has no
    one-off mode: it is bounded by `timeout` and killed once the client is done."""

    name = "sockperf-loopback"
    needs_server = False

    def prelude(self, port: int, duration_s: float) -> str:
        server = self.server_argv("127.0.0.1", port)
        return (
            f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(server)} "
            f">/dev/null 2>&1 & server=$!; {wait_listening(port, udp=self.udp)}; "
        )

    def postlude(self) -> str:
        return "kill $server 2>/dev/null; "


class SockperfUdpLoopback(SockperfLoopback):
    """sockperf over UDP on the instance's own loopback: the round trip gVisor's netstack
    gives (under runsc its TCP server fails: it answers with sendto() and the unset
    address recvfrom() gave it on a connected TCP socket, which gVisor refuses)."""

    name = "sockperf-udp-loopback"
    PROTOCOL = ()
    udp = True


class Wrk(Tool):
    """An application: busybox `httpd` serving one small file, and Debian's wrk as its
    client, both in the instance over its own loopback (no network needed), so the
    figure is what serving HTTP costs inside the platform: accept, fork, read, write.
    The server is bound to 127.0.0.1 on a port bench picks, bounded by `timeout` and
    killed after the client. wrk's result is the JSON its Lua `done` hook writes (the
    workloads image's WRK_SCRIPT, to the file WRK_RESULT_ENV names), never its printout.
    wrk takes whole seconds: a fractional duration is rounded up."""

    name = "wrk"
    WWW = "/tmp/bench-www"
    FILE = "bench-4k"  # the file served: 4 KiB, a small static page's size
    FILE_BYTES = 4096
    # wrk's options that take a value (getopt: "-c4" or "-c 4"); -s names a Lua script
    # to run, and a script is a program: bench's own is the only one.
    WITH_VALUE = frozenset("tcdHT")
    LONG = ("connections", "duration", "threads", "script", "header", "latency", "timeout")

    def check_args(self, args: list[str]) -> None:
        for a in args:
            if a == "--":
                # What follows goes to the script's init(): bench's script takes none.
                raise ValueError("wrk arguments after '--' go to a Lua script: not from a scenario")
            if a.startswith("--"):
                option = a[2:].split("=", 1)[0]
                # getopt_long takes any unambiguous prefix of a long option (--scr).
                if (
                    option
                    and "script".startswith(option)
                    and not any(o.startswith(option) for o in self.LONG if o != "script")
                ):
                    raise ValueError(self._refused())
            elif a.startswith("-"):
                for ch in a[1:]:
                    if ch == "s":
                        raise ValueError(self._refused())
                    if ch in self.WITH_VALUE:
                        break  # the rest is that option's value

    def _refused(self) -> str:
        return (
            "wrk option 'script' is bench's to set, not the scenario's "
            "(a Lua script is a program, and bench runs as root)"
        )

    def argv(self, workload: str, args: list[str], duration_s: float) -> list[str]:
        return ["wrk", "-d", f"{math.ceil(duration_s)}s", "-s", WRK_SCRIPT, *args]

    def prelude(self, port: int, duration_s: float) -> str:
        server = ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", self.WWW]
        return (
            f"mkdir -p {self.WWW} && head -c {self.FILE_BYTES} /dev/zero >{self.WWW}/{self.FILE}; "
            f"export {WRK_RESULT_ENV}={RESULT}; "
            f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(server)} "
            f">/dev/null 2>&1 & server=$!; {wait_listening(port)}; "
        )

    def postlude(self) -> str:
        return f"kill $server 2>/dev/null; rm -rf {self.WWW}; "

    def parse(self, raw: bytes) -> tuple[list[WorkloadFigure], dict[str, float | str]]:
        doc = json.loads(raw.decode("utf-8", "replace"))
        if not isinstance(doc, dict):
            raise ValueError("wrk's report is no JSON object")
        requests, duration_us = _num(doc.get("requests")), _num(doc.get("duration_us"))
        errors = doc.get("errors")
        errors = errors if isinstance(errors, dict) else {}
        counts = {k: _num(v) or 0.0 for k, v in errors.items()}
        if not requests or not duration_us:
            raise ValueError(
                f"wrk: no request answered ({counts.get('connect', 0):.0f} connect errors)"
            )
        if counts.get("status"):
            raise ValueError(
                f"wrk: {counts['status']:.0f} of {requests:.0f} answers were HTTP errors"
            )
        latency = doc.get("latency_us")
        latency = latency if isinstance(latency, dict) else {}
        figures = [
            WorkloadFigure(
                figure="requests_per_s",
                value=requests / (duration_us / 1e6),
                unit="requests/s",
                worse="lower",
            )
        ]
        for key in ("p50", "p99"):
            value = _num(latency.get(key))
            if value is not None:
                figures.append(
                    WorkloadFigure(
                        figure=f"latency_{key}_s", value=value / 1e6, unit="s", worse="higher"
                    )
                )
        diagnostics: dict[str, float | str] = {
            "requests": requests,
            "duration_s": duration_us / 1e6,
            **{f"{k}_errors": v for k, v in counts.items()},
        }
        for key in ("mean", "max"):
            value = _num(latency.get(key))
            if value is not None:
                diagnostics[f"latency_{key}_s"] = value / 1e6
        received = _num(doc.get("bytes"))
        if received is not None:
            diagnostics["received_bytes_per_s"] = received / (duration_us / 1e6)
        return figures, diagnostics


class Iperf3Peer(Iperf3):
    """iperf3 instance -> instance: the server is one-off (-1) in the step's second
    instance, on the same network (containers: the bridge, through two veths)."""

    name = "iperf3-peer"
    needs_server = False
    needs_peer = True

    def server_argv(self, address: str, port: int) -> list[str]:
        return [*super().server_argv(address, port), "-1"]


class SockperfPeer(Sockperf):
    """sockperf instance -> instance, its server in the step's second instance."""

    name = "sockperf-peer"
    needs_server = False
    needs_peer = True


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        StressNg(),
        Fio(),
        FioVolume(),
        Iperf3(),
        Iperf3Loopback(),
        Iperf3Peer(),
        Sockperf(),
        SockperfLoopback(),
        SockperfUdpLoopback(),
        SockperfPeer(),
        Wrk(),
    )
}
# A port for an in-instance server: above the usual ephemeral range's start on no
# particular service; random so that two instances sharing a host's loopback (native)
# do not meet.
LOOPBACK_PORTS = (20000, 29999)


class HostServer:
    """A network tool's server on this host (iperf3's or sockperf's: Tool.server_argv),
    bound to the one address the instance reaches (never 0.0.0.0: a lab host's other
    interfaces stay closed), on a free port bench picks, stopped when the run ends (a
    context manager). The host's tool serves; the client is the packed one (iperf3's
    protocol is the same across 3.x, sockperf's is the same Debian version)."""

    LISTEN_WAIT_S = 5.0

    def __init__(self, address: str, tool: Tool | None = None) -> None:
        self.address = address
        self.tool = tool if tool is not None else TOOLS["iperf3"]
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HostServer:
        argv = self.tool.server_argv(self.address, 0)
        exe = shutil.which(argv[0])
        if exe is None:
            raise OSError(
                f"network workloads need {argv[0]} on this host (apt-get install {argv[0]})"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((self.address, 0))
            self.port = s.getsockname()[1]
        self._proc = subprocess.Popen(
            [exe, *self.tool.server_argv(self.address, self.port)[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Listening is read from /proc/net/tcp: a probe connection would be a client.
        deadline = time.monotonic() + self.LISTEN_WAIT_S
        while not listening(self.address, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise OSError(f"{argv[0]} did not listen on {self.address}:{self.port}")
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


PEER_PID = "/tmp/bench-peer.pid"


class PeerServer:
    """A peer tool's server inside another instance (the step's second), bound to that
    instance's address on their network, on a random port: started through the
    backend's `run_in` on a thread of its own (run_in waits for its end), bounded by
    busybox `timeout` there, and killed when the client is done (a context manager).
    Its shell writes its pid, then execs `timeout`, which execs the server in that pid
    (busybox's timeout watches from a child): the pid file names the server itself."""

    def __init__(self, backend: Backend, peer: Instance, tool: Tool, duration_s: float) -> None:
        self.backend, self.peer, self.tool, self.duration_s = backend, peer, tool, duration_s
        self.address = ""
        self.port = random.randint(*LOOPBACK_PORTS)
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def __enter__(self) -> PeerServer:
        address = self.backend.instance_address(self.peer)
        if address is None:
            raise OSError("the peer instance has no address")
        self.address = address
        server = shlex.join(self.tool.server_argv(address, self.port))
        bound = int(self.duration_s + GRACE_S)
        job = [
            "/bin/sh",
            "-c",
            f"rm -f {PEER_PID}; echo $$ >{PEER_PID}; "
            f"exec timeout -s KILL {bound} {server} >/dev/null 2>&1",
        ]

        def serve() -> None:
            try:
                self.backend.run_in(self.peer, job, bound + 30)
            except Exception as e:
                self.error = first_line(e)

        self._thread = threading.Thread(target=serve, name="bench-peer-server", daemon=True)
        self._thread.start()
        # One exec that returns when the server listens, waiting inside the peer.
        try:
            done = self.backend.run_in(
                self.peer,
                ["/bin/sh", "-c", wait_listening(self.port, udp=self.tool.udp)],
                LISTEN_WAIT_S + 30,
            )
            why = None if done.rc == 0 else f"it did not listen within {LISTEN_WAIT_S} s"
        except Exception as e:
            why = first_line(e)
        if why is not None:
            self.__exit__()
            raise OSError(
                f"{self.tool.server_argv('', 0)[0]} did not start in the peer instance: "
                + (self.error or why)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        # A one-off server (iperf3 -1) may have gone already, and its pid been reused
        # (native's pids are the host's): only a process of the server's name is killed.
        name = self.tool.server_argv("", 0)[0]
        stop = (
            f'p=$(cat {PEER_PID}); [ "$(cat /proc/$p/comm 2>/dev/null)" = {name} ] '
            f"&& kill -9 $p; rm -f {PEER_PID}"
        )
        with contextlib.suppress(Exception):
            self.backend.run_in(self.peer, ["/bin/sh", "-c", stop], 30)
        self._thread.join(self.duration_s + GRACE_S + 30)
        self._thread = None


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
    "randmem": Builtin(
        "stress-ng",
        ("--vm", "1", "--vm-bytes", "256M", "--vm-method", "prime-0", "--vm-keep"),
        "random memory access: 256 MiB stepped through in prime strides, no two touches "
        "near each other (stress-ng vm, prime-0)",
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
    "randread-volume": Builtin(
        "fio-volume",
        ("--rw=randread", "--bs=4k", "--size=64m", "--direct=1", "--ioengine=psync"),
        "4 KiB random reads, O_DIRECT, on an attached volume (volume: true)",
    ),
    "randwrite-volume": Builtin(
        "fio-volume",
        ("--rw=randwrite", "--bs=4k", "--size=64m", "--direct=1", "--ioengine=psync"),
        "4 KiB random writes, O_DIRECT, on an attached volume (volume: true)",
    ),
    "seqread": Builtin(
        "fio",
        ("--rw=read", "--bs=1m", "--size=64m", "--direct=1", "--ioengine=psync"),
        "1 MiB sequential reads, O_DIRECT, on the writable layer (bandwidth)",
    ),
    "seqwrite": Builtin(
        "fio",
        ("--rw=write", "--bs=1m", "--size=64m", "--direct=1", "--ioengine=psync"),
        "1 MiB sequential writes, O_DIRECT, on the writable layer (bandwidth)",
    ),
    "seqread-volume": Builtin(
        "fio-volume",
        ("--rw=read", "--bs=1m", "--size=64m", "--direct=1", "--ioengine=psync"),
        "1 MiB sequential reads, O_DIRECT, on an attached volume (volume: true)",
    ),
    "seqwrite-volume": Builtin(
        "fio-volume",
        ("--rw=write", "--bs=1m", "--size=64m", "--direct=1", "--ioengine=psync"),
        "1 MiB sequential writes, O_DIRECT, on an attached volume (volume: true)",
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
    "latency": Builtin(
        "sockperf",
        ("-i", "{host}", "-p", "{port}"),
        "TCP request/response round trip instance -> host, p50 and p99 (sockperf ping-pong)",
    ),
    "latency-loopback": Builtin(
        "sockperf-loopback",
        ("-i", "127.0.0.1", "-p", "{port}"),
        "TCP request/response round trip over the instance's own loopback",
    ),
    "latency-udp-loopback": Builtin(
        "sockperf-udp-loopback",
        ("-i", "127.0.0.1", "-p", "{port}"),
        "UDP request/response round trip over the instance's own loopback",
    ),
    "http-loopback": Builtin(
        "wrk",
        ("-t", "1", "-c", "4", "http://127.0.0.1:{port}/" + Wrk.FILE),
        "an application: busybox httpd serving a 4 KiB file to wrk (1 thread, 4 "
        "connections) over the instance's own loopback",
    ),
    "tcp-peer": Builtin(
        "iperf3-peer",
        ("-c", "{host}", "-p", "{port}"),
        "TCP throughput instance -> instance on their network (the step's two instances)",
    ),
    "latency-peer": Builtin(
        "sockperf-peer",
        ("-i", "{host}", "-p", "{port}"),
        "TCP request/response round trip instance -> instance on their network",
    ),
}


def needs_network(tool: str | None) -> bool:
    return tool in TOOLS and (TOOLS[tool].needs_server or TOOLS[tool].needs_peer)


def needs_peer(tool: str | None) -> bool:
    return tool in TOOLS and TOOLS[tool].needs_peer


def needs_volume(tool: str | None) -> bool:
    t = TOOLS.get(tool or "")
    return isinstance(t, Fio) and t.needs_volume


def command(
    tool_argv: list[str],
    duration_s: float,
    prelude: str = "",
    postlude: str = "",
    result_on_stdout: bool = False,
) -> list[str]:
    """What runs inside the instance: the tool bounded by busybox `timeout`, its
    human-readable output to a file (its last lines on stderr when it fails), then its
    result file on stdout, whatever the engine's exec does with the two streams. A tool
    that prints its result (`result_on_stdout`) prints it into the result file."""
    out = RESULT if result_on_stdout else OUTPUT
    body = (
        f"cd /tmp; rm -f {RESULT}; {prelude}"
        f"timeout -s KILL {int(duration_s + GRACE_S)} {shlex.join(tool_argv)} >{out} 2>&1; "
        f"rc=$?; {postlude}[ $rc -eq 0 ] || tail -n 5 {out} >&2; cat {RESULT} 2>/dev/null; "
        f"rm -f {RESULT} {OUTPUT} {FIO_FILE} {VOLUME_FIO_FILE}; exit $rc"
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
    peer: Instance | None = None,
) -> WorkloadRun:
    """One workload inside one running instance, to its end: never raises (a failure is
    the run's `error`). `clock` times it (bench's own: the runner's). A peer tool's
    server runs in `peer`."""
    tool = TOOLS[tool_name]
    emulated = inst.info.get("accel") == "tcg"
    base = {
        "workload": name,
        "tool": tool_name,
        "argv": tool.argv(name, args, duration_s),
        "duration_s": duration_s,
    }
    server: contextlib.AbstractContextManager[HostServer | PeerServer | None] = (
        contextlib.nullcontext()
    )
    try:
        if tool.needs_server:
            address = backend.host_address(inst)
            # None: the backend's tools are fakes and need no server (the fake backend).
            if address is not None:
                server = HostServer(address, tool)
        elif tool.needs_peer:
            if peer is None:
                raise ValueError(f"{name} runs between two instances: the step has one")
            if backend.instance_address(peer) is not None:
                server = PeerServer(backend, peer, tool, duration_s)
        with server as s:
            port = s.port if s is not None else random.randint(*LOOPBACK_PORTS)
            host = backend.host_address_seen(inst, s.address) if s is not None else "127.0.0.1"
            args = [a.replace("{host}", host).replace("{port}", str(port)) for a in args]
            argv = tool.argv(name, args, duration_s)
            base["argv"] = argv
            job = command(
                argv,
                duration_s,
                tool.prelude(port, duration_s),
                tool.postlude(),
                tool.result_on_stdout,
            )
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
            error=f"{tool_name} exited with {done.rc}: "
            + (tool.reason(why[-1])[:200] if why else "no output"),
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
        peer = None
        if any(needs_peer(w.tool) for w in chosen.run):
            # A pair: the step's first instance runs the workloads, its second serves
            # them and runs none (nothing else competes with the pair's traffic).
            if ctx.instances and inst is not ctx.instances[0]:
                return {}
            peer = ctx.instances[1] if len(ctx.instances) > 1 else None
        runs: list[JsonValue] = [
            run_workload(
                ctx.backend,
                inst,
                w.name,
                w.tool or "",
                list(w.args or ()),
                chosen.duration_of(w),
                ctx.clock.now,
                peer,
            ).model_dump(mode="json")
            for w in chosen.run
        ]
        return {"workloads": runs}
