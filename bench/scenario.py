"""Scenario files: YAML in, a validated `Scenario` out, or one line saying what is wrong.

Common keys live here; keys that only make sense for one engine live in that backend's
`Settings` model (see bench.backends), so a new backend adds its keys without touching
this file. Every error names the file, the line where YAML can tell it, and the key path.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.errors import ScenarioError
from bench.units import parse_duration, parse_size

# Names end up in container names, domain names and file names: keep them boring.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
# More instances than any one host holds: a typo (or 1e9), not a plan.
MAX_COUNT = 10_000
DEFAULT_MARKER = "BENCH_READY"


def _size(v: Any) -> int:
    return parse_size(v)


def _duration(v: Any) -> float:
    return parse_duration(v)


Bytes = Annotated[int, BeforeValidator(_size)]
Seconds = Annotated[float, BeforeValidator(_duration)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]


def _check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(
            f"{v!r} is not a valid name: use 1-48 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return v


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadyRule(Model):
    """When an instance counts as ready: a console line holding `marker` as a word."""

    marker: str = Field(DEFAULT_MARKER, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"marker": v} if isinstance(v, str) else v


class Launch(Model):
    concurrency: int = Field(4, ge=1, le=256, strict=True)


class Slo(Model):
    ready_p95: Seconds | None = None  # a step whose p95 ready time exceeds this ends a search


class Density(Model):
    """A density search: N grows until a step breaks a limit; replaces `counts`."""

    start: Count = 1
    factor: float | None = Field(None, gt=1, le=16)
    step: Count | None = None
    max: Count
    slo: Slo = Slo()
    memory_reserve: Bytes | None = None  # default: the scenario's memory_reserve

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

    name: str
    backend: str
    image: str = Field(min_length=1, max_length=512)
    memory: Bytes | None = None
    counts: list[Count] | None = Field(None, min_length=1)
    density: Density | None = None
    ready: ReadyRule = ReadyRule()
    command: list[str] | None = None

    _check_name = field_validator("name")(_check_name)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        # A string is split like a shell would split words, but it is never run through
        # a shell: metacharacters stay literal arguments.
        return shlex.split(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _counts_or_density(self) -> PlatformBase:
        if self.counts is not None and self.density is not None:
            raise ValueError("give counts or density, not both")
        return self

    @field_validator("memory")
    @classmethod
    def _positive_memory(cls, v: int | None) -> int | None:
        if v is not None and v < 4 * 2**20:
            raise ValueError("memory below 4MiB cannot hold an instance")
        return v


class Scenario(Model):
    name: str
    description: str = ""
    repeat: int = Field(1, ge=1, le=1000, strict=True)
    timeout: Seconds = 120.0
    counts: list[Count] = Field([1], min_length=1)
    density: Density | None = None
    launch: Launch = Launch()
    on_failure: Literal["continue", "stop"] = "continue"
    # Wait after the last instance is ready before reading memory: lets page cache and
    # lazily touched guest memory settle, so the host view is not caught mid-boot.
    settle: Seconds = 3.0
    # Drop the page cache before both MemAvailable readings (root only).
    drop_caches: bool = False
    # bench never launches a step predicted to push host MemAvailable below this.
    memory_reserve: Bytes = 1 * 2**30
    # Already validated by each backend's Settings model (see parse_scenario);
    # SerializeAsAny keeps the backend's own keys when the scenario is dumped.
    platforms: list[SerializeAsAny[PlatformBase]] = Field(min_length=1)

    _check_name = field_validator("name")(_check_name)

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
            raise ValueError("give counts or density, not both")
        return self

    def search_for(self, platform: PlatformBase) -> Density | None:
        """The density search this platform runs, if any (its own block wins)."""
        if platform.density is not None:
            return platform.density
        if platform.counts is not None:
            return None
        return self.density

    def searches(self) -> dict[str, dict[str, Any]]:
        """Platform name -> its density search block, for platforms that search (stored
        in the run's metadata, so readers never re-derive it)."""
        out = {}
        for p in self.platforms:
            search = self.search_for(p)
            if search is not None:
                out[p.name] = search.model_dump(mode="json")
        return out

    def counts_for(self, platform: PlatformBase) -> list[int]:
        """Fixed counts, or every N a density search may reach."""
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


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: Path
    text: str
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, loc: tuple[Any, ...], message: str) -> ScenarioError:
        """An error about this file at a key path, with its line number."""
        return ScenarioError(
            str(self.path), message, key=_key_path(loc), line=_nearest_line(self.lines, loc)
        )


class KeyedValueError(ValueError):
    """A validation error about one key of a model, raised from a model-level check."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def load_scenario(path: str | Path) -> LoadedScenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(path), f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(str(path), f"not UTF-8 text (byte {e.start})") from None
    scenario, lines = _parse(text, str(path))
    return LoadedScenario(scenario, path, text, lines)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    return _parse(text, source)[0]


def _parse(text: str, source: str) -> tuple[Scenario, dict[tuple[Any, ...], int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(source, f"YAML syntax error: {problem}", line=line) from None
    if not isinstance(data, dict):
        raise ScenarioError(source, "expected a mapping of keys (name, platforms, ...)", line=1)
    lines = _key_lines(root)
    duplicate = _first_duplicate(root)
    if duplicate:
        path, line = duplicate
        # PyYAML would silently keep the last value: a typo that changes the plan.
        raise ScenarioError(source, "duplicate key: given twice", key=_key_path(path), line=line)

    def fail(loc: tuple[Any, ...], message: str) -> ScenarioError:
        return ScenarioError(source, message, key=_key_path(loc), line=_nearest_line(lines, loc))

    for key in data:
        if not isinstance(key, str):
            raise fail((str(key),), "unknown key (keys are words: name, platforms, ...)")
    platforms = data.get("platforms")
    if isinstance(platforms, list):
        data = {**data, "platforms": [_platform(p, i, fail) for i, p in enumerate(platforms)]}
    try:
        return Scenario(**data), lines
    except ValidationError as e:
        err = e.errors()[0]
        raise fail(_error_loc(err), _describe(err)) from None


def _error_loc(err: Any) -> tuple[Any, ...]:
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    return (*loc, cause.key) if isinstance(cause, KeyedValueError) else loc


def _platform(raw: Any, i: int, fail: Any) -> PlatformBase:
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
    try:
        return settings_model(backend)(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise fail(("platforms", i, *_error_loc(err)), _describe(err)) from None


def _describe(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and the README's key list)"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for k in range(len(loc), -1, -1):
        if loc[:k] in lines:
            return lines[loc[:k]]
    return None


def _first_duplicate(
    node: yaml.Node | None, prefix: tuple[Any, ...] = ()
) -> tuple[tuple[Any, ...], int] | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
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


def _key_lines(node: yaml.Node | None, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in the document to its 1-based line number."""
    out: dict[tuple[Any, ...], int] = {}
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
