"""Scenario files: YAML in, a validated `Scenario` out, or one line saying what is wrong.

Common keys live here; keys that only make sense for one engine live in that backend's
`Settings` model (see bench.backends), so a new backend adds its keys without touching
this file. Every error names the file, the line where YAML can tell it, and the key path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from bench.errors import ScenarioError
from bench.settings import (
    Bytes,
    Count,
    Density,
    KeyedValueError,
    Model,
    PlatformBase,
    Seconds,
    check_name,
)


class Launch(Model):
    concurrency: int = Field(4, ge=1, le=256, strict=True)


class Scenario(Model):
    name: str
    description: str = ""
    repeat: int = Field(1, ge=1, le=1000, strict=True)
    timeout: Seconds = 120.0
    counts: list[Count] = Field([1], min_length=1)
    density: Density | None = None
    launch: Launch = Launch()
    on_failure: Literal["continue", "stop"] = "continue"
    # Instances per platform started, waited for and destroyed before its first measured
    # step, never counted: the first boots on an engine pay for cold caches and lazy
    # engine set-up that no later step sees.
    warmup: int = Field(1, ge=0, le=64, strict=True)
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

    _check_name = field_validator("name")(check_name)

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
