"""Scenario files: YAML in, a validated `Scenario` out, or one line saying what is wrong.

Common keys live here; keys that only make sense for one engine live in that backend's
`Settings` model (see bench.backends), so a new backend adds its keys without touching
this file. Every error names the file, the line where YAML can tell it, and the key path.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
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
    """When an instance counts as ready: a line on its console that starts with `marker`."""

    marker: str = Field(DEFAULT_MARKER, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"marker": v} if isinstance(v, str) else v


class Launch(Model):
    concurrency: int = Field(4, ge=1, le=256, strict=True)


class PlatformBase(Model):
    """Keys every platform has; a backend's Settings subclass adds its own."""

    name: str
    backend: str
    image: str = Field(min_length=1, max_length=512)
    memory: Bytes | None = None
    counts: list[Count] | None = Field(None, min_length=1)
    ready: ReadyRule = ReadyRule()
    command: list[str] | None = None

    _check_name = field_validator("name")(_check_name)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        # A string is split like a shell would split words, but it is never run through
        # a shell: metacharacters stay literal arguments.
        return shlex.split(v) if isinstance(v, str) else v

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
    launch: Launch = Launch()
    on_failure: Literal["continue", "stop"] = "continue"
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

    def counts_for(self, platform: PlatformBase) -> list[int]:
        return list(platform.counts or self.counts)

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

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_scenario(path: str | Path) -> LoadedScenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(str(path), f"cannot read: {e.strerror}") from None
    return LoadedScenario(parse_scenario(text, str(path)), path, text)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
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

    def fail(loc: tuple[Any, ...], message: str) -> ScenarioError:
        return ScenarioError(source, message, key=_key_path(loc), line=_nearest_line(lines, loc))

    platforms = data.get("platforms")
    if isinstance(platforms, list):
        data = {**data, "platforms": [_platform(p, i, fail) for i, p in enumerate(platforms)]}
    try:
        return Scenario(**data)
    except ValidationError as e:
        err = e.errors()[0]
        raise fail(tuple(err["loc"]), _describe(err)) from None


def _platform(raw: Any, i: int, fail: Any) -> PlatformBase:
    """Validate one platform with the Settings model of the backend it names."""
    from bench.backends import BACKENDS, settings_model

    if not isinstance(raw, dict):
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
        raise fail(("platforms", i, *err["loc"]), _describe(err)) from None


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
