"""The one typed result model: every stored field, its unit, and whether it is a metric.

`Sample` (one instance of one step), `StepRecord` (one step), `HostFacts` (one machine)
and `RunMetadata` (one run) declare each field once. The runner builds them, the results
writer stores their dumps, the reader validates what it reads through them (after
upgrading older schema versions, see bench.model.results), and summary, compare and the
report take their metric lists, units and directions from here. A new metric declared
here appears in summary.csv, `bench compare --metric` and the report with no other edit.

A backend's own facts go into `extras`, a nested mapping: a backend key can never
overwrite a core field such as `ok`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.config import JsonDict

Worse = Literal["higher", "lower"]
# Facts by field name, as a measurement or a backend reports them for a record: a
# declared field's value, or an extra's (any JSON).
Facts = dict[str, JsonValue]
# A stored record as read back (a sample or step row, metadata.json, a part of it):
# JSON, validated through the models below. A value is read through the accessors
# under it (obj, objs, text, number, str_field, int_field), which narrow it to what
# the reader expects.
Row = dict[str, JsonValue]


def obj(value: JsonValue) -> Row:
    """`value` if it is a JSON object, else an empty one (a part an older run lacks)."""
    return value if isinstance(value, dict) else {}


def objs(value: JsonValue) -> list[Row]:
    """The entries of a JSON array, each as an object (scenario platforms, ...)."""
    return [obj(v) for v in value] if isinstance(value, list) else []


def text(value: object) -> str | None:
    """`value` if it is a string, else None."""
    return value if isinstance(value, str) else None


def number(value: object) -> float | None:
    """`value` if it is a number (not a bool), else None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def str_field(row: Mapping[str, object], key: str) -> str:
    """A string field every record of its kind has (platform): validated when read, so
    a row without it is a programming error, raised as one (KeyError, TypeError)."""
    v = row[key]
    if not isinstance(v, str):
        raise TypeError(f"{key}: {v!r} is not a string")
    return v


def int_field(row: Mapping[str, object], key: str, default: int | None = None) -> int:
    """An integer field every record of its kind has (n, repeat; `default` when the row
    may lack it), as str_field."""
    v = row[key] if default is None else row.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{key}: {v!r} is not an integer")
    return v


# metric() and value() return pydantic's Field(), typed Any so that it stands as a
# field's default whatever the field's type (pydantic's own idiom).
def metric(
    unit: str,
    doc: str,
    *,
    worse: Worse = "higher",
    summary: dict[str, str] | None = None,
    per_instance: bool = False,
) -> Any:
    """A measured value: compared by `bench compare`, summarised per (platform, N).

    `summary` maps summary columns to the statistic that fills them (p50, p95, max,
    median); by default one column named like the field holds its median. Statistics
    over samples use ready instances only. `per_instance` (step fields): divided by the
    step's N before summarising.
    """
    return Field(
        None,
        description=doc,
        json_schema_extra={
            "unit": unit,
            "metric": True,
            "worse": worse,
            "summary": cast("JsonDict | None", summary),  # dict is invariant: str is JSON
            "per_instance": per_instance,
        },
    )


def value(doc: str, unit: str | None = None, default: object = None) -> Any:
    """A stored fact that is not compared (labels, reasons, counts of things)."""
    return Field(default, description=doc, json_schema_extra={"unit": unit, "metric": False})


class Record(BaseModel):
    # Immutable once built; unknown keys are an error (the reader moves keys of older
    # schema versions into `extras` before validating).
    model_config = ConfigDict(extra="forbid", frozen=True)

    def row(self) -> dict[str, JsonValue]:
        """The stored form: a flat JSON-ready dict, `extras` nested."""
        return self.model_dump(mode="json")


class Sample(Record):
    """One instance of one step: its times from its own launch call, and its costs."""

    # Only platform and n are required: hand-written or partial rows still load.
    run_id: str | None = None
    step: int | None = value("0-based index of the step in the run")
    platform: str
    backend: str | None = None
    kind: str | None = value("container, sandbox, microvm or vm (bench.model.kinds)")
    host: str | None = value("key of the machine the engine ran on (metadata.hosts)")
    n: int = value("instances started together in the step")
    repeat: int = value("0-based repetition of this (platform, N)", default=0)
    index: int = value("0-based index of the instance within its step", default=0)
    name: str = value("the container or domain name", default="")
    ok: bool = value("ready within the timeout", default=False)
    # A str, not a Literal: a kind added later must not make older readers refuse a run.
    failure: str | None = value("why not ok: launch, exited, timeout, probe or interrupted")
    error: str | None = value("one line: what went wrong")
    queued_s: float | None = metric(
        "s", "launch call relative to the step's start: queueing behind `concurrency`"
    )
    create_s: float | None = metric("s", "create call returned, from the launch call")
    start_s: float | None = metric("s", "start call returned, from the launch call")
    ready_s: float | None = metric(
        "s",
        "readiness marker seen, from the launch call",
        summary={"ready_p50_s": "p50", "ready_p95_s": "p95", "ready_max_s": "max"},
    )
    ready_at_s: float | None = metric("s", "readiness marker seen, from the step's start")
    guest_uptime_s: float | None = metric(
        "s",
        "the guest's own uptime in its marker line (own kernels: sandboxes and VMs; a "
        "container shares the host's)",
    )
    guest_kernel: str | None = value("kernel release the guest reported")
    marker_fields: dict[str, str] = Field(
        default_factory=dict,
        description="key=value fields of the marker line (ready: {regex: ...}: its named groups)",
    )
    ready_kind: str | None = value(
        "what ready meant (the platform's ready:): marker, regex, tcp, http or exit"
    )
    exit_code: int | None = value("the exit status of its process (ready: {exit: ...})")
    ready_probes: int | None = value("probe attempts from the host until ready (tcp, http)")
    ready_window_s: float | None = value(
        "tcp, http: the service became ready within this before ready_s (since the probe's "
        "last refused attempt began): ready_s is late by at most this",
        unit="s",
    )
    console_tail: str | None = value("last console lines of a failed instance")
    accel: str | None = value("kvm or tcg (VMs)")
    runtime: str | None = value("the OCI runtime a container ran under: runc, runsc, crun, ...")
    pss_bytes: int | None = metric(
        "bytes",
        "proportional set size of its host processes (process view)",
        summary={"mem_pss_per_instance_bytes": "median"},
    )
    uss_bytes: int | None = metric("bytes", "unique set size of its host processes")
    rss_bytes: int | None = metric("bytes", "resident set size of its host processes")
    processes: int | None = value("host processes counted in the process view")
    # What the engine itself costs per instance, apart from what runs in it (issue 24):
    # a VM's VMM less its guest's RAM (Firecracker's method), a container's runtime
    # processes (its shim or conmon; gVisor's gofer and sandbox) apart from its own.
    vmm_overhead_bytes: int | None = metric(
        "bytes",
        "the VMM process's RSS less the RSS of its guest-RAM-sized mappings (VMs)",
        summary={"mem_vmm_overhead_per_instance_bytes": "median"},
    )
    vmm_overhead_pss_bytes: int | None = metric(
        "bytes", "the VMM process's PSS less the PSS of its guest-RAM-sized mappings (VMs)"
    )
    guest_ram_rss_bytes: int | None = value(
        "resident part of the guest's RAM in its VMM (the mappings left out above)", "bytes"
    )
    runtime_rss_bytes: int | None = metric(
        "bytes",
        "RSS of the container runtime's own processes: containerd-shim or conmon, gVisor's "
        "gofer and sandbox (containers)",
        summary={"mem_runtime_per_instance_bytes": "median"},
    )
    runtime_pss_bytes: int | None = metric(
        "bytes", "PSS of the container runtime's own processes (containers)"
    )
    runtime_processes: int | None = value("runtime processes counted in runtime_rss_bytes")
    engine_mem_bytes: int | None = metric(
        "bytes",
        "the engine's own memory figure (engine view)",
        summary={"mem_engine_per_instance_bytes": "median"},
    )
    engine_mem_source: str | None = value("where engine_mem_bytes comes from")
    disk_writable_bytes: int | None = metric(
        "bytes",
        "its own writable storage: container layer or VM overlay",
        summary={"disk_per_instance_bytes": "median"},
    )
    sample_error: str | None = value("why some of its measurements are missing")
    destroy_error: str | None = value("why the engine would not destroy it")
    extras: Facts = Field(
        default_factory=dict, description="backend-specific facts (never core fields)"
    )
    # Where the time to ready went (bench.model.phases): instants on bench's clock, from the
    # launch call, as console lines reached bench; None when not seen (older runs too).
    vmm_ready_s: float | None = metric(
        "s", "the VMM process answered its control socket (direct QEMU: QMP), from the launch"
    )
    first_output_s: float | None = metric("s", "first console byte, from the launch call")
    kernel_start_s: float | None = metric(
        "s",
        "the guest kernel's first console line (Linux version), from the launch call: "
        "firmware and decompression end here",
    )
    init_start_s: float | None = metric(
        "s", "the guest kernel ran init (Run /init as init process), from the launch call"
    )
    guest_init_s: float | None = metric(
        "s", "the guest's own clock (printk time) when its kernel ran init"
    )
    # The engine's own event stream (bench.measurements.engine_events), its wall-clock
    # instants less the launch call's wall-clock instant: a local engine only.
    engine_create_s: float | None = metric(
        "s", "the engine's own create event (its event stream), from the launch call"
    )
    engine_start_s: float | None = metric(
        "s",
        "the engine's own start event (its event stream: the runtime started the "
        "container), from the launch call",
    )
    engine_events_error: str | None = value(
        "why engine_create_s/engine_start_s are not recorded (an engine on another "
        "machine: its clock is not bench's; its event stream not read)"
    )
    console_lines: int | None = value("console lines before the marker")
    setup_start_s: float | None = metric(
        "s",
        "the guest kernel's setup code printed (Probing EDD), from the launch call: the "
        "firmware has loaded the kernel, decompression follows",
    )


class WorkloadFigure(BaseModel):
    """One figure a workload's tool reported (bench.measurements.workloads): its unit and
    which way is worse, as the tool's plug-in declares them, so tables and ratios read
    them from the record, never from a name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    figure: str  # "<stressor or job>.<what>": cpu.bogo_ops_per_s, randread.read_iops
    value: float
    unit: str  # ops/s, IO/s, bytes/s, MB/s, ns, s
    worse: Worse  # "lower": more is better (a rate); "higher": less is better (a latency)


class WorkloadRun(BaseModel):
    """One workload run to its end inside one instance (one repeat of it): stored per
    sample, as a list under `extras["workloads"]`; statistics across repeats, ratios to
    native and intervals are computed when read (bench.report.workloads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workload: str  # the scenario's name for it (cpu, randread, ...)
    tool: str  # stress-ng, fio
    argv: list[str]  # exactly what ran inside the instance
    duration_s: float  # the run time asked of the tool
    wall_s: float | None = None  # bench's clock around the whole command
    rc: int | None = None
    error: str | None = None  # one line: why it has no figures
    # Accel was tcg: a VM's figures under emulation are kept but never put in ratios.
    emulated: bool = False
    figures: list[WorkloadFigure] = Field(default_factory=list)
    # What explains a figure but is not one: CPU share the tool got (a contended host),
    # CPU-time rates (not comparable across kernels), fio's qualifiers (direct, ...).
    diagnostics: dict[str, float | str] = Field(default_factory=dict)
    raw: str = ""  # the tool's own result (YAML, JSON) as it printed it


class NeighbourRun(BaseModel):
    """The victim's workload in one step of a noisy-neighbour scenario, alone or while
    the step's other instances (the aggressors) ran one stressor kind: stored per step,
    as a list under `extras["neighbours"]`; slowdowns are computed when read
    (bench.report.neighbours)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggressor: str  # "alone", or the stressor kind the aggressors ran (cpu, stream, ...)
    aggressors: int  # how many aggressor instances ran it (0 alone)
    victim: WorkloadRun
    # One line per aggressor that failed (its stressor did not run to its end).
    aggressor_errors: list[str] = Field(default_factory=list)


class StepRecord(Record):
    """One step: N instances started, waited for, measured, torn down (or refused)."""

    run_id: str | None = None
    step: int | None = value("0-based index of the step in the run")
    platform: str
    backend: str | None = None
    kind: str | None = None
    host: str | None = value("key of the machine the engine ran on")
    n: int
    repeat: int = 0
    added: int | None = value(
        "instances the step launched: N, or in a ramp the ones added to the previous N's"
    )
    status: str = value("ran, refused or interrupted", default="ran")
    failures: int | None = value("instances not ready within the timeout")
    all_ready_s: float | None = metric("s", "first launch call to the last instance ready")
    launch_rate_per_s: float | None = metric(
        "1/s", "instances made ready per second of the step", worse="lower"
    )
    wait_s: float | None = metric("s", "first launch call to the end of the wait")
    teardown_s: float | None = metric("s", "destroying every instance of the step")
    destroy_failures: int | None = value("instances the engine would not destroy")
    settle_s: float | None = value("wait before the memory readings", "s")
    dropped_caches: bool | None = value("page cache dropped before both readings")
    mem_available_before_bytes: int | None = value("host MemAvailable before launch", "bytes")
    mem_available_after_bytes: int | None = value("host MemAvailable after settle", "bytes")
    host_drop_bytes: int | None = value("drop of host MemAvailable over the step", "bytes")
    host_drop_per_instance_bytes: float | None = metric(
        "bytes",
        "drop of host MemAvailable per instance (host view)",
        summary={"mem_host_per_instance_bytes": "median"},
    )
    # The kernel's slab (/proc/meminfo) at both readings: what a step costs the host's
    # kernel (dentries, inodes, cgroups, namespaces), which no process's memory shows.
    slab_before_bytes: int | None = value("host Slab before launch", "bytes")
    slab_after_bytes: int | None = value("host Slab after settle", "bytes")
    sreclaimable_before_bytes: int | None = value("host SReclaimable before launch", "bytes")
    sreclaimable_after_bytes: int | None = value("host SReclaimable after settle", "bytes")
    sunreclaim_before_bytes: int | None = value("host SUnreclaim before launch", "bytes")
    sunreclaim_after_bytes: int | None = value("host SUnreclaim after settle", "bytes")
    slab_growth_bytes: int | None = metric(
        "bytes",
        "growth of the host kernel's Slab over the step",
        summary={"slab_per_instance_bytes": "median"},
        per_instance=True,
    )
    disk_growth_bytes: int | None = metric(
        "bytes",
        "growth of the engine's storage over the step",
        summary={"storage_per_instance_bytes": "median"},
        per_instance=True,
    )
    sampling_s: float | None = metric("s", "bench's own time spent sampling the instances")
    ksm_run: int | None = None
    ksm_pages_shared: int | None = None
    ksm_pages_sharing: int | None = None
    thp_mode: str | None = None
    load_avg_1m: float | None = value("host load when the step was measured")
    rtt_s: float | None = value(
        "round trip from bench to the engine's machine before the step (SSH keepalive; 0 on "
        "this machine): ready_s is seen on bench's clock, so a remote one includes its share",
        "s",
    )
    limit: str | None = value("density limit the step broke: failure, timeout, slo, memory_reserve")
    limit_detail: str | None = None
    predicted_bytes: int | None = value("memory the guard predicted for a refused step", "bytes")
    memory_reserve_bytes: int | None = value("the reserve the guard kept", "bytes")
    extras: Facts = Field(default_factory=dict)


class HostFacts(BaseModel):
    """One machine as seen when a run started. New facts may be added freely."""

    model_config = ConfigDict(extra="allow", frozen=True)

    hostname: str | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = None
    cpu_physical_cores: int | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    kernel: str | None = None
    os: str | None = None
    arch: str | None = None
    kvm_device: bool | None = None
    load_avg_1m: float | None = None
    cgroup_version: int | None = None
    python: str | None = None
    bench_version: str | None = None


class StoredPart(BaseModel):
    """A part of metadata.json written as it was given: a field left out stays out of
    the dump (no `null` added), so a stored part reads back key for key, in order."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        out: dict[str, object] = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in out.items() if k in given}


class EngineFacts(StoredPart):
    """One platform's engine as `Backend.prepare` found it (versions, image digests, the
    accel a VM got: each backend's own keys, kept as extras), and the host it ran on."""

    engine: str | None = value("the backend's engine: docker, podman, libvirt, qemu, ...")
    host: str | None = value("key of the machine the engine ran on (metadata.hosts)")

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        out = StoredPart._as_given(self, handler)
        # Stored since schema 2 after the backend's facts: bench adds it once prepared.
        if "host" in out:
            out["host"] = out.pop("host")
        return out

    def on_host(self, key: str) -> EngineFacts:
        return self.model_copy(update={"host": key})

    def fact(self, name: str) -> object:
        """A backend's own fact (an extra), or None."""
        return (self.model_extra or {}).get(name)


class WarmupPlatform(StoredPart):
    ready: int  # warm-up instances that became ready
    ready_s: list[float | None]  # each one's ready time, None if it was not


class Warmup(StoredPart):
    """Warm-up instances per platform before its first step (never counted)."""

    instances: int  # per platform
    platforms: dict[str, WarmupPlatform] = Field(default_factory=dict)


class AbPairs(StoredPart):
    """`bench ab`: baseline and candidate platforms and the step pairs (bench.judge.ab)."""

    baseline: str
    candidate: str
    # [baseline step, candidate step] in the order they ran; absent: pair by (N, repeat).
    pairs: list[list[int]] | None = None


class RunMetadata(BaseModel):
    """metadata.json. Written at the start, updated at the end (status, counts)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int
    bench_version: str | None = None
    run_id: str
    status: str = "unknown"
    pid: int | None = value("the bench process that wrote the run")
    controller: str | None = value("hostname of the machine bench ran on (schema 2)")
    started_at: str | None = None
    finished_at: str | None = None
    scenario: dict[str, JsonValue] = Field(default_factory=dict)
    scenario_text: str | None = None
    scenario_path: str | None = None
    scenario_sha256: str | None = None
    # The controller's host, where bench ran (kept for readers of schema 1).
    host: dict[str, JsonValue] = Field(default_factory=dict)
    # Every machine an engine of this run ran on, by key (Sample.host).
    hosts: dict[str, HostFacts] = Field(default_factory=dict)
    engines: dict[str, EngineFacts] = Field(default_factory=dict)
    # Platform name -> its density search block, for platforms that searched.
    searches: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    warmup: Warmup | None = None
    ab: AbPairs | None = None
    failures: int | None = None
    leftovers: list[str] | None = None
    error: str | None = None
    # Optional platforms this host could not run (platform name -> why), left out.
    left_out: dict[str, str] | None = None


# -- declarations, read by summary, compare and the report ------------------------------


@dataclass(frozen=True)
class FieldInfo:
    name: str
    unit: str | None
    metric: bool
    worse: Worse | None
    doc: str
    summary: dict[str, str]  # summary column -> statistic (metrics only)
    per_instance: bool


@cache
def fields_of(model: type[Record]) -> dict[str, FieldInfo]:
    out = {}
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        is_metric = bool(extra.get("metric"))
        summary = extra.get("summary") or ({name: "median"} if is_metric else {})
        # The extras metric() and value() wrote: cast back to the types they took.
        out[name] = FieldInfo(
            name=name,
            unit=cast("str | None", extra.get("unit")),
            metric=is_metric,
            worse=cast("Worse | None", extra.get("worse")) if is_metric else None,
            doc=f.description or "",
            summary=dict(cast("dict[str, str]", summary)),
            per_instance=bool(extra.get("per_instance")),
        )
    return out


def metrics(model: type[Record]) -> dict[str, FieldInfo]:
    """The metric fields of a record type, in declaration order."""
    return {k: f for k, f in fields_of(model).items() if f.metric}


def core_fields(model: type[Record]) -> frozenset[str]:
    return frozenset(model.model_fields)


def split_extras(model: type[Record], data: Mapping[str, JsonValue]) -> Row:
    """`data` with every key the model does not declare moved into `extras`.

    For backend facts and for rows of older schema versions: nothing undeclared can
    land on (or shadow) a core field.
    """
    core = core_fields(model)
    out = {k: v for k, v in data.items() if k in core}
    extras = {k: v for k, v in data.items() if k not in core}
    if extras:
        prior = data.get("extras")
        out["extras"] = {**obj(prior), **extras}
    return out


# The Sample fields a backend's sample() and the measurer may fill; every other key a
# backend reports is kept in `extras`, so it can never overwrite what the runner measured.
BACKEND_FIELDS = frozenset(
    {
        "accel",
        "runtime",
        "pss_bytes",
        "uss_bytes",
        "rss_bytes",
        "processes",
        "vmm_overhead_bytes",
        "vmm_overhead_pss_bytes",
        "guest_ram_rss_bytes",
        "runtime_rss_bytes",
        "runtime_pss_bytes",
        "engine_create_s",
        "engine_start_s",
        "engine_events_error",
        "runtime_processes",
        "engine_mem_bytes",
        "engine_mem_source",
        "disk_writable_bytes",
        "sample_error",
        "destroy_error",
    }
)


def backend_facts(info: Mapping[str, object]) -> dict[str, Any]:
    """A backend's facts about one instance as Sample keyword arguments: the fields it
    may fill, and everything else (private `_` keys dropped) under `extras`.

    Any: the values are what a backend found (its SDK's numbers and strings), typed by
    pydantic when the Sample is made, not before."""
    out = {k: v for k, v in info.items() if k in BACKEND_FIELDS}
    extras = {k: v for k, v in info.items() if k not in BACKEND_FIELDS and not k.startswith("_")}
    if extras:
        out["extras"] = extras
    return out


def unit_of(name: str) -> str | None:
    """The declared unit of a sample or step field, by name."""
    for model in (Sample, StepRecord):
        info = fields_of(model).get(name)
        if info is not None:
            return info.unit
    return None
