"""Scenario files: YAML in, a validated `Scenario` out, or one line saying what is wrong.

Common keys live here; keys that only make sense for one engine live in that backend's
`Settings` model (see bench.backends), so a new backend adds its keys without touching
this file. Every error names the file, the line where YAML can tell it, and the key path.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    Field,
    JsonValue,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import ErrorDetails

from bench.model import addresses
from bench.model.errors import ScenarioError, UsageError
from bench.model.settings import (
    LOCAL,
    Bytes,
    Count,
    Density,
    KeyedValueError,
    Model,
    PlatformBase,
    Seconds,
    check_name,
)
from bench.model.units import format_bytes

# A key path in the scenario file: mapping keys and list indices (pydantic's error loc).
Loc = tuple[str | int, ...]
# Makes the one-line error for a key path of the file being read.
Fail = Callable[[Loc, str], ScenarioError]

# A scenario is a page of YAML. Anything much bigger is the wrong file or an attack, and
# must be refused before it is read into memory (the promise: bench never pushes a lab
# host into swap, not even while reading its input).
MAX_SCENARIO_BYTES = 256 * 1024
# Nodes after expanding aliases: an alias bomb ("billion laughs") of 500 bytes expands to
# billions of nodes. The largest real scenario is a few hundred.
MAX_YAML_NODES = 20_000
# Top-level keys bench ignores, as docker compose does: a place for YAML anchors shared
# by several platforms (`x-guest: &guest {...}` then `- <<: *guest`).
EXTENSION_PREFIX = "x-"
# Longer than any title should be: the description heads tables and terminal output.
MAX_DESCRIPTION_CHARS = 2_000


class Launch(Model):
    concurrency: int = Field(
        4, ge=1, le=256, strict=True, description="launch calls in flight at once (1-256)"
    )


class WorkloadSpec(Model):
    """One workload of a scenario's `workloads.run`: a built-in name (cpu, stream,
    syscall, switch, randread, randwrite, randread-volume, randwrite-volume, tcp,
    tcp-loopback, tcp-peer, latency, latency-loopback, latency-peer), or a name with its
    own tool: and args:."""

    name: str = Field(description="a built-in workload, or a name of your own with tool:")
    tool: str | None = Field(
        None,
        description="stress-ng, fio, fio-volume, iperf3, iperf3-loopback, iperf3-peer, "
        "sockperf, sockperf-loopback or sockperf-peer (default: the built-in's)",
    )
    args: list[str] | None = Field(
        None, description="the tool's arguments (its time and output flags are bench's)"
    )
    duration: Seconds | None = Field(None, description="overrides workloads.duration")

    _check_name = field_validator("name")(check_name)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: object) -> object:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float | None) -> float | None:
        return None if v is None else _workload_duration(v)

    @model_validator(mode="after")
    def _resolved(self) -> WorkloadSpec:
        from bench.measurements.workloads import BUILTIN, TOOLS

        if self.tool is None:
            builtin = BUILTIN.get(self.name)
            if builtin is None:
                raise KeyedValueError(
                    "name",
                    f"unknown workload {self.name!r} (built in: {', '.join(BUILTIN)}; "
                    "or give tool: and args:)",
                )
            if self.args is not None:
                raise KeyedValueError("args", "args: needs tool: (a built-in pins its own)")
            # Frozen model: the resolved tool and args are set once, here.
            object.__setattr__(self, "tool", builtin.tool)
            object.__setattr__(self, "args", list(builtin.args))
        elif self.tool not in TOOLS:
            raise KeyedValueError("tool", f"unknown tool {self.tool!r} (known: {', '.join(TOOLS)})")
        elif self.args is None:
            raise KeyedValueError("args", f"tool: {self.tool} needs args: (what to run)")
        else:
            try:
                TOOLS[self.tool].check_args(self.args)
            except ValueError as e:
                raise KeyedValueError("args", str(e)) from None
        return self

    @property
    def custom(self) -> bool:
        """Its own tool and args, not a built-in's."""
        return "tool" in self.model_fields_set


def _workload_duration(v: float) -> float:
    from bench.measurements.workloads import MAX_DURATION_S

    if not 1 <= v <= MAX_DURATION_S:
        raise ValueError(
            f"a workload runs 1s to {MAX_DURATION_S:g}s (the engines' exec call is bounded)"
        )
    return v


def _names_or_specs(schema: JsonDict) -> None:
    """`run`'s items as the file may write them: a built-in's name, or a mapping."""
    from bench.measurements.workloads import BUILTIN

    name: JsonDict = {
        "type": "string",
        "enum": list[JsonValue](BUILTIN),
        "description": "a built-in workload",
    }
    items = schema.get("items")
    schema["items"] = {"anyOf": [name, items]} if items is not None else name


class Workloads(Model):
    """Which workloads run in each instance once it is ready, and for how long; each
    repeat of the scenario (`repeat:`) runs them in a fresh instance."""

    duration: Seconds = Field(5.0, description="each workload's run time (1s-30s)")
    run: list[WorkloadSpec] = Field(
        min_length=1,
        description="the workloads, in order: built-in names or {name, tool, args}",
        json_schema_extra=_names_or_specs,
    )

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        return _workload_duration(v)

    @field_validator("run")
    @classmethod
    def _unique(cls, v: list[WorkloadSpec]) -> list[WorkloadSpec]:
        seen: set[str] = set()
        for w in v:
            if w.name in seen:
                raise ValueError(f"workload name {w.name!r} is used twice")
            seen.add(w.name)
        return v

    def duration_of(self, w: WorkloadSpec) -> float:
        return w.duration if w.duration is not None else self.duration

    def total_s(self) -> float:
        """Every workload's run time, once: what each instance spends on them."""
        return sum(self.duration_of(w) for w in self.run)


class Neighbours(Model):
    """A noisy-neighbour measurement: each step starts a victim and `aggressors` more
    instances of its platform (with its limits, e.g. cpus: 1); the victim runs its
    workload alone, then while the aggressors run each kind of stressor in turn."""

    aggressors: int = Field(1, ge=1, le=16, strict=True, description="aggressor instances (1-16)")
    kinds: list[str] = Field(
        ["cpu", "stream", "io", "fork"],
        min_length=1,
        description="the aggressors' stressors, in turn: cpu, stream, vm, io, fork, net",
    )
    victim: str = Field("cpu", description="the victim's workload: a built-in workload name")
    duration: Seconds = Field(5.0, description="the victim's run time under each kind (1s-30s)")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from bench.measurements.neighbours import KINDS

        for k in v:
            if k not in KINDS:
                raise ValueError(f"unknown aggressor kind {k!r} (known: {', '.join(KINDS)})")
        if len(set(v)) != len(v):
            raise ValueError("an aggressor kind is given twice")
        return v

    @field_validator("victim")
    @classmethod
    def _victim(cls, v: str) -> str:
        from bench.measurements.workloads import BUILTIN

        if v not in BUILTIN:
            raise ValueError(f"unknown victim workload {v!r} (built in: {', '.join(BUILTIN)})")
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        return _workload_duration(v)


class Scenario(Model):
    name: str = Field(
        description="names the run (results/<name>-<time>-<id>/); letters, digits, '.', '_', '-'"
    )
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS, description="free text")
    repeat: int = Field(
        1, ge=1, le=1000, strict=True, description="times each (platform, N) step is run"
    )
    timeout: Seconds = Field(
        120.0, description="per instance, from its launch call to its readiness line"
    )
    counts: list[Count] = Field(
        [1], min_length=1, description="N values; each step starts N instances together"
    )
    density: Density | None = Field(None, description="a density search instead of counts")
    launch: Launch = Field(Launch(), description="how instances are launched")
    on_failure: Literal["continue", "stop"] = Field(
        "continue", description="stop ends the run after the first step with a failed instance"
    )
    # Instances per platform started, waited for and destroyed before its first measured
    # step, never counted: the first boots on an engine pay for cold caches and lazy
    # engine set-up that no later step sees.
    warmup: int = Field(
        1,
        ge=0,
        le=64,
        strict=True,
        description="instances per platform started, waited for and destroyed before its "
        "first step, never counted; 0 turns it off",
    )
    # Wait after the last instance is ready before reading memory: lets page cache and
    # lazily touched guest memory settle, so the host view is not caught mid-boot.
    settle: Seconds = Field(
        3.0, description="wait after the last instance is ready before memory is read"
    )
    # Drop the page cache before both MemAvailable readings (root only).
    drop_caches: bool = Field(
        False, description="drop the page cache before both MemAvailable readings (root)"
    )
    # bench never launches a step predicted to push host MemAvailable below this.
    memory_reserve: Bytes = Field(
        1 * 2**30,
        description="bench never launches a step predicted to push host MemAvailable below this",
    )
    workloads: Workloads | None = Field(
        None,
        description="workloads run inside each instance once it is ready (stress-ng, fio; "
        "the `workloads` bench image), with ratios to a native platform",
    )
    neighbours: Neighbours | None = Field(
        None,
        description="a noisy-neighbour measurement: a victim's workload alone and while "
        "aggressor instances of its platform stress CPU, memory, disk, fork; sets the count",
    )
    # Already validated by each backend's Settings model (see parse_scenario);
    # SerializeAsAny keeps the backend's own keys when the scenario is dumped.
    platforms: list[SerializeAsAny[PlatformBase]] = Field(
        min_length=1, description="one or more, with unique names"
    )
    # Short names of the machines engines run on: `local` (this one) or
    # ssh://[user@]host[:port]; a platform's `host:` (or `bench run --host`) names one.
    hosts: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="short names of the machines engines run on: local or "
        "ssh://[user@]host[:port]; a platform's host: names one",
    )

    _check_name = field_validator("name")(check_name)

    @field_validator("hosts")
    @classmethod
    def _host_addresses(cls, v: dict[str, str]) -> dict[str, str]:
        for name, address in v.items():
            check_name(name)
            try:
                addresses.check_host(address)
            except ValueError as e:
                raise ValueError(f"hosts.{name}: {e}") from None
        return v

    @field_validator("platforms")
    @classmethod
    def _unique_names(cls, v: list[PlatformBase]) -> list[PlatformBase]:
        seen: set[str] = set()
        for p in v:
            if p.name in seen:
                raise ValueError(f"platform name {p.name!r} is used twice")
            seen.add(p.name)
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("timeout must be above zero")
        return v

    @model_validator(mode="after")
    def _counts_or_density(self) -> Scenario:
        if "counts" in self.model_fields_set and self.density is not None:
            raise KeyedValueError(
                "density", "give counts or density, not both (counts is a fixed list of N)"
            )
        return self

    @model_validator(mode="after")
    def _workloads_without_search(self) -> Scenario:
        if self.workloads is not None and (
            self.density is not None or any(p.density is not None for p in self.platforms)
        ):
            raise KeyedValueError(
                "workloads", "workloads run at fixed counts: drop density (use counts: [1])"
            )
        return self

    @model_validator(mode="after")
    def _native_runs_builtins_only(self) -> Scenario:
        # A native platform is a root process on this host with no isolation but a chroot:
        # only the built-in workloads, whose arguments are bench's, run there.
        if self.workloads is None or not any(p.backend == "native" for p in self.platforms):
            return self
        for i, w in enumerate(self.workloads.run):
            if w.custom:
                raise KeyedValueError(
                    f"workloads.run.{i}",
                    f"{w.name!r} has its own tool and args, and a native platform would run "
                    "them as root on this host: use a built-in workload, or drop the native "
                    "platform",
                )
        return self

    @model_validator(mode="after")
    def _commands_need_a_console(self) -> Scenario:
        # A VM runs workloads (and neighbours' stressors) through its serial console
        # (bench.backends.guest.run_in_guest): a guest booted without one cannot.
        if self.workloads is None and self.neighbours is None:
            return self
        key = "workloads" if self.workloads is not None else "neighbours"
        for p in self.platforms:
            if getattr(p, "console", True) is False:
                raise KeyedValueError(
                    key,
                    f"a VM runs them through its serial console, and platform {p.name} boots "
                    "without one (console: false): drop console: false there, or the platform",
                )
        return self

    @model_validator(mode="after")
    def _neighbours_set_the_count(self) -> Scenario:
        # One place decides a neighbours step's size: aggressors + 1, never a list of N.
        if self.neighbours is not None and (
            "counts" in self.model_fields_set
            or self.density is not None
            or any(p.counts is not None or p.density is not None for p in self.platforms)
        ):
            raise KeyedValueError(
                "neighbours",
                "neighbours set each step's count (aggressors + 1): drop counts and density",
            )
        return self

    @model_validator(mode="after")
    def _network_for_workloads(self) -> Scenario:
        from bench.measurements.workloads import needs_network

        if self.workloads is None:
            return self
        wants = [w.name for w in self.workloads.run if needs_network(w.tool)]
        if not wants:
            return self
        for p in self.platforms:
            if p.backend in ("qemu", "libvirt") and not getattr(p, "user_net", False):
                raise KeyedValueError(
                    "workloads",
                    f"{', '.join(wants)} need a network: set network: user on platform "
                    f"{p.name} (the guest reaches this host as 10.0.2.2)",
                )
            if p.backend in ("qemu", "libvirt"):
                continue
            if getattr(p, "network", None) == "none":
                raise KeyedValueError(
                    "workloads",
                    f"{', '.join(wants)} need a network: set network: bridge (or a network's "
                    f"name) on platform {p.name}",
                )
        return self

    @model_validator(mode="after")
    def _volume_for_volume_workloads(self) -> Scenario:
        from bench.measurements.workloads import needs_volume

        if self.workloads is None:
            return self
        wants = [w.name for w in self.workloads.run if needs_volume(w.tool)]
        if not wants:
            return self
        for p in self.platforms:
            # A VM's volume is a disk the guest formats and mounts (GuestSettings).
            if not getattr(p, "volume", False):
                raise KeyedValueError(
                    "workloads",
                    f"{', '.join(wants)} need an attached volume: set volume: true on "
                    f"platform {p.name}",
                )
        return self

    @model_validator(mode="after")
    def _no_writable_layer_fio_in_vms(self) -> Scenario:
        # A VM's writable layer is its initramfs, in RAM: fio's O_DIRECT open is
        # refused there (EINVAL), so the run could only fail; its disk is the volume.
        from bench.measurements.workloads import BUILTIN

        wants = [w.name for w in self.workloads.run if w.tool == "fio"] if self.workloads else []
        if self.neighbours is not None and BUILTIN[self.neighbours.victim].tool == "fio":
            wants.append(self.neighbours.victim)
        vms = [p.name for p in self.platforms if p.backend in ("qemu", "libvirt")]
        if wants and vms:
            # A built-in's own -volume form (seqread: seqread-volume), else the random pair.
            instead = list(dict.fromkeys(f"{w}-volume" for w in wants if f"{w}-volume" in BUILTIN))
            raise KeyedValueError(
                "workloads",
                f"{', '.join(wants)} run fio on the writable layer, which in a VM is its "
                f"initramfs (RAM, no O_DIRECT): on platform {vms[0]} use "
                f"{' or '.join(instead or ['randread-volume', 'randwrite-volume'])} "
                "with volume: true",
            )
        return self

    @model_validator(mode="after")
    def _pairs_for_peer_workloads(self) -> Scenario:
        from bench.measurements.workloads import needs_peer

        if self.workloads is None:
            return self
        wants = [w.name for w in self.workloads.run if needs_peer(w.tool)]
        if not wants:
            return self
        # The step's first instance is the client, its second the server: exactly two.
        if self.neighbours is not None or any(self.counts_for(p) != [2] for p in self.platforms):
            raise KeyedValueError(
                "workloads",
                f"{', '.join(wants)} run between two instances of each platform: set "
                "counts: [2] (and no neighbours)",
            )
        return self

    def search_for(self, platform: PlatformBase) -> Density | None:
        """The density search this platform runs, if any (its own block wins)."""
        if platform.density is not None:
            return platform.density
        if platform.counts is not None:
            return None
        return self.density

    def searches(self) -> dict[str, dict[str, JsonValue]]:
        """Platform name -> its density search block, for platforms that search (stored
        in the run's metadata, so readers never re-derive it)."""
        out: dict[str, dict[str, JsonValue]] = {}
        for p in self.platforms:
            search = self.search_for(p)
            if search is not None:
                out[p.name] = search.model_dump(mode="json")
        return out

    def counts_for(self, platform: PlatformBase) -> list[int]:
        """Fixed counts, or every N a density search may reach."""
        if self.neighbours is not None:
            return [self.neighbours.aggressors + 1]
        search = self.search_for(platform)
        if search is not None:
            return search.counts()
        return list(platform.counts or self.counts)

    def reserve_for(self, platform: PlatformBase) -> int:
        search = self.search_for(platform)
        if search is not None and search.memory_reserve is not None:
            return search.memory_reserve
        return self.memory_reserve

    def plan(self) -> list[Step]:
        """Every step in the order the runner takes them."""
        return [
            Step(platform=p, n=n, repeat=r)
            for p in self.platforms
            for n in self.counts_for(p)
            for r in range(self.repeat)
        ]


@dataclass(frozen=True)
class Step:
    platform: PlatformBase
    n: int
    repeat: int  # 0-based index of this repetition
    # A ramp's level: instances of the previous level still running; it adds n - kept.
    kept: int = 0

    @property
    def added(self) -> int:
        """Instances this step launches."""
        return self.n - self.kept


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: Path
    text: str
    lines: dict[Loc, int] = field(default_factory=dict)
    # The --host names the scenario was placed on (on_hosts), to repeat in hints.
    placed_on: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, loc: Loc, message: str) -> ScenarioError:
        """An error about this file at a key path, with its line number."""
        return ScenarioError(
            str(self.path), message, key=_key_path(loc), line=_nearest_line(self.lines, loc)
        )


def host_address(scenario: Scenario, host: str) -> str | None:
    """The address a `host:` value names: a `hosts:` entry, `local`, or an address
    written out (ssh://...); None for a name the scenario does not define."""
    if host in scenario.hosts:
        return scenario.hosts[host]
    if host == LOCAL or "://" in host:
        return host
    return None


def _placed(scenario: Scenario, fail: Fail) -> Scenario:
    """Each platform whose `host:` names a machine, pointed at that machine's engine."""
    placed = []
    for i, p in enumerate(scenario.platforms):
        address = host_address(scenario, p.host) if p.host else None
        if p.host and address is None:
            known = ", ".join(scenario.hosts) or "none"
            raise fail(("platforms", i, "host"), f"no host {p.host!r} in hosts: (known: {known})")
        if address is None or (address != LOCAL and not address.startswith("ssh://")):
            placed.append(p)  # no host, or an engine address the backend checks itself
            continue
        try:
            addresses.check_host(address)
            placed.append(p.placed_on(address))
        except ValueError as e:
            raise fail(("platforms", i, "host"), str(e)) from None
    return scenario.model_copy(update={"platforms": placed})


def on_hosts(loaded: LoadedScenario, hosts: list[str]) -> LoadedScenario:
    """The whole scenario once per host (`bench run --host A --host B`): every platform
    placed on each host in turn, under its own name (records tell the hosts apart)."""
    sc = loaded.scenario
    platforms = []
    for host in dict.fromkeys(hosts):
        address = host_address(sc, host)
        if address is None:
            known = ", ".join([*sc.hosts, LOCAL])
            raise UsageError(
                f"--host {host}: not a host of {loaded.path} (known: {known}) nor an "
                f"address ({addresses.SSH_FORM})"
            )
        try:
            addresses.check_host(address)
        except ValueError as e:
            raise UsageError(f"--host {e}") from None
        for p in sc.platforms:
            try:
                platforms.append(p.placed_on(address))
            except ValueError as e:
                raise UsageError(f"--host {host}: platform {p.name!r}: {e}") from None
    placed = sc.model_copy(update={"platforms": platforms})
    return dataclasses.replace(loaded, scenario=placed, placed_on=tuple(dict.fromkeys(hosts)))


def load_scenario(path: str | Path) -> LoadedScenario:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SCENARIO_BYTES + 1)
    except OSError as e:
        raise ScenarioError(str(path), f"cannot read: {e.strerror}") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            str(path),
            f"file is larger than {format_bytes(MAX_SCENARIO_BYTES, 0)}, the most a scenario "
            "may be: is it the right file?",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(str(path), f"not UTF-8 text (byte {e.start})") from None
    scenario, lines = _parse(text, str(path))
    return LoadedScenario(scenario, path, text, lines)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    return _parse(text, source)[0]


def _parse(text: str, source: str) -> tuple[Scenario, dict[Loc, int]]:
    root, data = _read_yaml(text, source)
    if not isinstance(data, dict):
        raise ScenarioError(source, "expected a mapping of keys (name, platforms, ...)", line=1)
    lines = _key_lines(root)
    duplicate = _first_duplicate(root)
    if duplicate:
        path, line = duplicate
        # PyYAML would silently keep the last value: a typo that changes the plan.
        raise ScenarioError(source, "duplicate key: given twice", key=_key_path(path), line=line)

    def fail(loc: Loc, message: str) -> ScenarioError:
        return ScenarioError(source, message, key=_key_path(loc), line=_nearest_line(lines, loc))

    for key in data:
        if not isinstance(key, str):
            raise fail((str(key),), "unknown key (keys are words: name, platforms, ...)")
        if key not in Scenario.model_fields and not key.startswith(EXTENSION_PREFIX):
            # Before validation: a misspelled `platfroms:` would otherwise be reported as
            # `platforms` missing, on line 1.
            raise fail((key,), unknown_key(key, Scenario.model_fields))
    data = {k: v for k, v in data.items() if not k.startswith(EXTENSION_PREFIX)}
    platforms = data.get("platforms")
    if isinstance(platforms, list):
        data = {**data, "platforms": [_platform(p, i, fail, root) for i, p in enumerate(platforms)]}
    try:
        scenario = Scenario(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _error_loc(err)
        raise fail(loc, _describe(err, _node_at(root, loc))) from None
    return _placed(scenario, fail), lines


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, object]:
    """The composed document and its Python value, refusing what would cost more than a
    scenario is worth before building it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            nodes = _expanded_nodes(root, MAX_YAML_NODES)
            if nodes > MAX_YAML_NODES:
                raise ScenarioError(
                    source,
                    f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded: "
                    "a scenario needs a few hundred (an alias bomb?)",
                )
        return root, loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from None
    except RecursionError:
        raise ScenarioError(source, "YAML nested too deeply for a scenario") from None
    finally:
        loader.dispose()


def _yaml_error(e: yaml.YAMLError, source: str) -> ScenarioError:
    mark = getattr(e, "problem_mark", None)
    line = mark.line + 1 if mark else None
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None) or ""
    if "expected a single document" in context:
        return ScenarioError(
            source, "a second YAML document starts here (---): one scenario per file", line=line
        )
    if "'\\t'" in problem:
        return ScenarioError(source, "tab character: indent YAML with spaces", line=line)
    return ScenarioError(source, f"YAML syntax error: {problem}", line=line)


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes the document has with every alias expanded, counting no further
    than a little past `limit`. Memoised per node, so an alias bomb costs its own size."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        sizes[id(node)] = total = min(total, limit + 1)
        return total

    return size(root)


def unknown_key(key: str, known: Collection[str]) -> str:
    """ "unknown key", with the nearest known spelling when there is one."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"unknown key: did you mean {close[0]}?"
    return "unknown key (check its spelling and the README's key list)"


def _error_loc(err: ErrorDetails) -> Loc:
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    return (*loc, cause.key) if isinstance(cause, KeyedValueError) else loc


def _platform(raw: object, i: int, fail: Fail, root: yaml.Node | None = None) -> PlatformBase:
    """Validate one platform with the Settings model of the backend it names."""
    from bench.backends import BACKENDS, settings_model

    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise fail(("platforms", i), "expected a mapping with name, backend, image, ...")
    backend = raw.get("backend")
    if backend is None:
        raise fail(
            ("platforms", i, "backend"), f"required key is missing (one of: {', '.join(BACKENDS)})"
        )
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise fail(
            ("platforms", i, "backend"),
            f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})",
        )
    model = settings_model(backend)
    try:
        return model(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ("platforms", i, *_error_loc(err))
        raise fail(loc, _describe(err, _node_at(root, loc), model.model_fields)) from None


def _describe(err: ErrorDetails, node: yaml.Node | None = None, known: Collection[str] = ()) -> str:
    """pydantic's error in the words of the scenario file: what was written, what to
    write instead."""
    kind, msg, value = err["type"], err["msg"], err.get("input")
    written = node.value if isinstance(node, yaml.ScalarNode) else None
    if kind == "extra_forbidden":
        return unknown_key(str(err["loc"][-1]), known)
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "list_type":
        return _not_a_list(err["loc"], value)
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        what = "a whole number" if kind.startswith("int") else "a number"
        return f"expected {what}, got {_shown(written, value)}"
    if kind == "string_type" and isinstance(value, bool | int | float) and written is not None:
        # YAML 1.1 reads no/yes/on/off as booleans and 1.0 as a number.
        return (
            f"YAML read {written} as {_yaml_value(value)}, not text: quote it, "
            f'e.g. {err["loc"][-1]}: "{written}"'
        )
    if kind == "string_too_long":
        return (
            f"longer than {err['ctx']['max_length']} characters: keep it to a title and a "
            "sentence or two (it heads tables and terminal output)"
        )
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {_shown(written, value)}"
    if kind == "bool_type" or kind == "bool_parsing":
        return f"expected true or false, got {_shown(written, value)}"
    shown = msg.removeprefix("Input should be ")
    if shown != msg:
        return f"should be {shown}, got {_shown(written, value)}"
    return msg


def _not_a_list(loc: Loc, value: object) -> str:
    if loc and loc[-1] == "platforms" and isinstance(value, dict):
        return "expected a list: write each platform as `- name: ...` under platforms:"
    if isinstance(value, str) and "," in value:
        items = ", ".join(p.strip() for p in value.split(","))
        return f"expected a list, got the text {value!r}: write [{items}]"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"expected a list, got {value!r}: write [{value}]"
    return f"expected a list (write [a, b] or one `- item` per line), got {_shown(None, value)}"


def _shown(written: str | None, value: object) -> str:
    """The value as the file wrote it: quoted when YAML read it as text."""
    if written is not None:
        text = repr(written) if isinstance(value, str) else written
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _node_at(root: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    """The YAML node at a key path, to quote what the file says (not what YAML made of it)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return None
    return node


def _key_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _nearest_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for k in range(len(loc), -1, -1):
        if loc[:k] in lines:
            return lines[loc[:k]]
    return None


def _first_duplicate(node: yaml.Node | None, prefix: Loc = ()) -> tuple[Loc, int] | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            path = (*prefix, key.value)
            if key.value in seen:
                return path, key.start_mark.line + 1
            seen.add(key.value)
            found = _first_duplicate(value, path)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _first_duplicate(item, (*prefix, i))
            if found:
                return found
    return None


def _key_lines(node: yaml.Node | None, prefix: Loc = ()) -> dict[Loc, int]:
    """Map every key path in the document to its 1-based line number."""
    out: dict[Loc, int] = {}
    if node is None:
        return out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            out.update({k: v for k, v in _key_lines(value, path).items() if k != path})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_key_lines(item, (*prefix, i)))
    return out
