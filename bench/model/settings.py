"""Platform settings every backend builds on: the common keys, the unit types and the
name rules. A leaf module (it imports nothing else from bench but errors and units), so
`bench.plan.scenario` and every backend can import it without importing each other.
"""

from __future__ import annotations

import importlib
import math
import re
import shlex
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.config import JsonDict

from bench.model.addresses import LOCAL
from bench.model.units import DURATION_HELP, SIZE_HELP, parse_duration, parse_size

# Names end up in container names, domain names and file names: keep them boring.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
# More instances than any one host holds: a typo (or 1e9), not a plan.
MAX_COUNT = 10_000
DEFAULT_MARKER = "BENCH_READY"


def _size(v: object) -> int:
    return parse_size(v)


def _duration(v: object) -> float:
    return parse_duration(v)


# What `bench schema` says of the unit types: text with a unit, as the file must write
# them (they are validated into ints and floats). JSON Schema patterns have no
# case-insensitive flag, hence the letter classes; tests/test_schema.py holds each
# pattern against its parser.
SIZE_PATTERN = r"^\s*(\d+(\.\d+)?\s*([KkMmGgTt][Ii]?)?[Bb]|0+(\.0+)?)\s*$"
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|min|s|m|h)\s*)+$"
SIZE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": SIZE_PATTERN, "examples": ["256MiB", "2GiB"]},
        {"const": 0},
    ],
    "description": f"a size: a number with {SIZE_HELP}; 0 needs no unit",
}
DURATION_SCHEMA = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "examples": ["120s", "500ms", "1m30s"],
    "description": f"a duration: a number with {DURATION_HELP}",
}

Bytes = Annotated[int, BeforeValidator(_size), WithJsonSchema(SIZE_SCHEMA)]
Seconds = Annotated[float, BeforeValidator(_duration), WithJsonSchema(DURATION_SCHEMA)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]


def _or_text(text: JsonDict) -> Callable[[JsonDict], None]:
    """A field's JSON schema, widened to also accept the text form its validator takes."""

    def widen(schema: JsonDict) -> None:
        keep = ("description", "default", "title")
        inner = {k: v for k, v in schema.items() if k not in keep}
        for k in inner:
            del schema[k]
        alternatives = inner.pop("anyOf", [inner])
        schema["anyOf"] = [text, *(alternatives if isinstance(alternatives, list) else [inner])]

    return widen


def check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(
            f"{v!r} is not a valid name: use 1-48 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return v


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What `ready:` may wait for; exactly one per rule (marker when none is given).
READY_KINDS = ("marker", "regex", "tcp", "http", "exit")
# Kinds the host learns over the network, by probing the instance's address.
NETWORK_READY = frozenset({"tcp", "http"})
MAX_PATTERN = 200
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]


def regex_risk(pattern: str) -> str | None:
    """Why `pattern` may take exponential time on a console line, as far as a cheap look
    at its parse tree tells: a quantifier inside a repeated group (`(a+)+`, `(\\w+ ?)*`)
    or a backreference. None: no such construct (possessive and atomic parts never
    backtrack, so they pass)."""
    # The parser `re` itself uses (sre_parse before 3.11, deprecated since): typeshed
    # has no stubs for its private name.
    c: Any = importlib.import_module("re._constants")
    p: Any = importlib.import_module("re._parser")

    repeats = (c.MAX_REPEAT, c.MIN_REPEAT)
    refs = (c.GROUPREF, c.GROUPREF_EXISTS)

    def walk(items: Any, repeated: bool) -> str | None:
        for op, av in items:
            found = None
            if op in refs:
                return "a backreference"
            if op in repeats:
                _lo, hi, sub = av
                unbounded = hi == c.MAXREPEAT
                if repeated and unbounded:
                    return "a quantifier inside a repeated group"
                found = walk(sub, repeated or hi > 1)
            elif op == c.SUBPATTERN:
                found = walk(av[-1], repeated)
            elif op == c.BRANCH:
                found = next((r for b in av[1] if (r := walk(b, repeated))), None)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                found = walk(av[1], repeated)
            if found:
                return found
        return None

    return walk(p.parse(pattern), False)


class HttpReady(Model):
    """An HTTP GET on the instance's port answering `status`."""

    port: Port = Field(description="the TCP port the service listens on, inside the instance")
    path: str = Field(
        "/",
        max_length=200,
        pattern=r"^/[\x21-\x7e]*$",
        description="the path asked for (GET), starting with /",
    )
    status: int = Field(200, ge=100, le=599, strict=True, description="the status that means ready")


class ReadyRule(Model):
    """When an instance counts as ready: one of a console marker (the default), a
    regular expression on a console line, a TCP port accepting a connection, an HTTP
    status on a path, or the process exiting with a status (run to completion)."""

    marker: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="a console line that contains this as a word (default BENCH_READY)",
    )
    regex: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATTERN,
        description="a console line this regular expression matches; named groups are stored",
    )
    tcp: Port | None = Field(None, description="this TCP port accepts a connection")
    http: HttpReady | None = Field(None, description="an HTTP GET answers this status")
    exit: int | None = Field(
        None,
        ge=0,
        le=255,
        strict=True,
        description="the process exits with this status (run to completion: ready means done)",
    )

    channel: Literal["console", "debugcon"] = Field(
        "console",
        description="console: the marker's line; debugcon (VMs): a byte the guest writes "
        "to QEMU's debug I/O port 0xe9, no emulated UART on the way",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: object) -> object:
        if isinstance(v, str):
            return {"marker": v}
        if isinstance(v, dict) and not any(v.get(k) is not None for k in READY_KINDS):
            return {**v, "marker": DEFAULT_MARKER}
        return v

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Stored as written, the kinds not given left out: a run's stored scenario then
        # reads {marker: BENCH_READY} as it did before the other kinds existed, and runs
        # from before and after compare as the same setup (bench.judge.comparability).
        dumped: dict[str, object] = handler(self)
        # The default channel likewise (runs from before channels existed).
        return {
            k: v
            for k, v in dumped.items()
            if v is not None and not (k == "channel" and v == "console")
        }

    @model_validator(mode="after")
    def _one_kind(self) -> ReadyRule:
        given = [k for k in READY_KINDS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(READY_KINDS)}, not {' and '.join(given)}")
        if self.channel != "console" and self.kind not in ("marker", "regex"):
            raise ValueError(
                f"channel {self.channel} decides readiness itself: give it with a marker "
                f"or regex (for the line's fields), not {self.kind}"
            )
        return self

    @field_validator("regex")
    @classmethod
    def _safe_regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        risk = regex_risk(v)
        if risk:
            hint = " (e.g. (a+)+ as a+)" if "quantifier" in risk else ""
            raise ValueError(
                f"{risk} can take exponential time on a console line: rewrite it without{hint}"
            )
        return v

    @property
    def kind(self) -> str:
        """marker, regex, tcp, http or exit."""
        return next((k for k in READY_KINDS if getattr(self, k) is not None), "marker")

    @property
    def port(self) -> int | None:
        """The port a network rule probes, inside the instance."""
        return self.tcp if self.tcp is not None else self.http.port if self.http else None

    def describe(self, short: bool = False) -> str:
        """What ready means under this rule, in words for errors and the report, or
        `short` for a table cell (BENCH_READY, /PATTERN/, tcp :8080, HTTP 200 :8080/health,
        exit 0)."""
        if self.regex is not None:
            return f"/{self.regex}/" if short else f"a console line matching {self.regex!r}"
        if self.tcp is not None:
            return f"tcp :{self.tcp}" if short else f"port {self.tcp} accepting a connection"
        if self.http is not None:
            h = self.http
            if short:
                return f"HTTP {h.status} :{h.port}{h.path}"
            return f"HTTP {h.status} on {h.path} (port {h.port})"
        if self.exit is not None:
            return f"exit {self.exit}" if short else f"exit status {self.exit}"
        return self.marker or DEFAULT_MARKER


class Slo(Model):
    ready_p95: Seconds | None = Field(
        None, description="a step whose p95 ready time exceeds this ends the search"
    )


class Density(Model):
    """A density search: N grows until a step breaks a limit; replaces `counts`."""

    start: Count = Field(1, description="the first N")
    factor: float | None = Field(
        None, gt=1, le=16, description="N grows by this factor (1, 2, 4, ...; default 2)"
    )
    step: Count | None = Field(
        None, description="N grows by this step (8, 16, 24, ...), instead of a factor"
    )
    max: Count = Field(description="the largest N tried")
    slo: Slo = Field(Slo(), description="limits a step must meet for the search to go on")
    memory_reserve: Bytes | None = Field(
        None,
        description="never let host MemAvailable fall below this (default: the scenario's "
        "memory_reserve)",
    )
    # ramp: each level keeps the previous level's instances and adds to them (readiness
    # of the new ones under the load already there; one teardown at the end). restart:
    # each level starts N from zero and tears them all down (N launched together).
    mode: Literal["restart", "ramp"] = Field(
        "restart",
        description="ramp: each N adds to the previous N's instances, torn down once at the "
        "end; restart: each N starts from zero (N launched together)",
    )

    @model_validator(mode="after")
    def _one_progression(self) -> Density:
        if self.factor is not None and self.step is not None:
            raise ValueError("give factor (1, 2, 4, ...) or step (8, 16, 24, ...), not both")
        if self.start > self.max:
            raise ValueError(f"start {self.start} is above max {self.max}")
        return self

    def counts(self) -> list[int]:
        # `step: 8` alone means 8, 16, 24, ...; `factor: 2` alone means 1, 2, 4, ...
        n = self.step if self.step and "start" not in self.model_fields_set else self.start
        out: list[int] = []
        while n <= self.max:
            out.append(n)
            n = n + self.step if self.step else max(n + 1, math.ceil(n * (self.factor or 2)))
        return out


class PlatformBase(Model):
    """Keys every platform has; a backend's Settings subclass adds its own."""

    # The readiness channels (ReadyRule.channel) this platform's backend can watch: a
    # VM backend adds the debug port (bench.backends.guest).
    ready_channels: ClassVar[frozenset[str]] = frozenset({"console"})

    name: str = Field(
        description="unique in the scenario; letters, digits, '.', '_', '-' (at most 48)"
    )
    backend: str = Field(description="the engine that runs this platform")
    image: str = Field(
        min_length=1,
        max_length=512,
        description="busybox = the bench image pair; containers: any local image, never pulled",
    )
    memory: Bytes | None = Field(
        None, description="memory limit per container / RAM per VM (default: none)"
    )
    counts: list[Count] | None = Field(
        None, min_length=1, description="overrides the scenario's counts (or density)"
    )
    density: Density | None = Field(None, description="this platform's own density search")
    ready: ReadyRule = Field(
        ReadyRule(),
        description="when an instance is ready: a marker word on a console line (container "
        "stdout/stderr, VM serial; key=value words after it are stored), or one of "
        "{marker: TEXT}, {regex: PATTERN}, {tcp: PORT}, {http: {port, path, status}}, "
        "{exit: STATUS}; VMs may add channel: debugcon (the debug I/O port decides, "
        "not the serial line)",
        json_schema_extra=_or_text({"type": "string", "minLength": 1, "maxLength": 200}),
    )
    command: list[str] | None = Field(
        None,
        description="containers only: argv list, or a string split into words like a shell "
        "would, but never run through a shell (default: the image's)",
        json_schema_extra=_or_text({"type": "string"}),
    )
    # The machine its engine runs on: a name from the scenario's `hosts:` (resolved when
    # the scenario is read, see placed_on) or, for backends that take one, an address.
    host: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="the machine its engine runs on: a name from hosts:, or an address",
    )
    optional: bool = Field(
        False,
        description="true: when this host cannot run it (its engine, runtime or image is "
        "missing or refused), the run goes on without it and stores why",
    )

    _check_name = field_validator("name")(check_name)

    #: The `ready:` kinds this platform's backend can wait for (READY_KINDS): a console
    #: is all a backend must give; the others need its instances' address or exit status.
    ready_kinds: ClassVar[frozenset[str]] = frozenset({"marker", "regex"})
    #: Why, for a kind not in ready_kinds, when the reason says more than the list.
    ready_refused: ClassVar[dict[str, str]] = {}

    def placed_on(self, address: str) -> PlatformBase:
        """This platform with its engine on the machine at `address`: LOCAL, or
        ssh://[user@]host[:port]. A backend that can drive a remote engine overrides
        this to point its own address key there; by default only this machine will do."""
        if address == LOCAL:
            return self.model_copy(update={"host": None})
        raise ValueError(f"backend {self.backend} runs only on this machine, not on {address}")

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: object) -> object:
        # A string is split like a shell would split words, but it is never run through
        # a shell: metacharacters stay literal arguments.
        return shlex.split(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _counts_or_density(self) -> PlatformBase:
        if self.counts is not None and self.density is not None:
            raise ValueError("give counts or density, not both")
        return self

    @model_validator(mode="after")
    def _ready_kind(self) -> PlatformBase:
        kind = self.ready.kind
        if kind not in self.ready_kinds:
            known = ", ".join(k for k in READY_KINDS if k in self.ready_kinds)
            why = self.ready_refused.get(kind)
            raise KeyedValueError(
                "ready",
                f"backend {self.backend} cannot wait for {kind} readiness"
                + (f": {why}" if why else f" (it can: {known})"),
            )
        return self

    @model_validator(mode="after")
    def _ready_channel(self) -> PlatformBase:
        if self.ready.channel not in self.ready_channels:
            raise KeyedValueError(
                "ready",
                f"channel {self.ready.channel} is for VMs (qemu, libvirt): a {self.backend} "
                "platform is ready by its console",
            )
        return self

    @field_validator("memory")
    @classmethod
    def _positive_memory(cls, v: int | None) -> int | None:
        if v is not None and v < 4 * 2**20:
            raise ValueError("memory below 4MiB cannot hold an instance")
        return v


class KeyedValueError(ValueError):
    """A validation error about one key of a model, raised from a model-level check."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
