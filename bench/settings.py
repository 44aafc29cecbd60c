"""Platform settings every backend builds on: the common keys, the unit types and the
name rules. A leaf module (it imports nothing else from bench but errors and units), so
`bench.scenario` and every backend can import it without importing each other.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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


def check_name(v: str) -> str:
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


#: The `hosts:` address (and `--host` value) of the machine bench runs on.
LOCAL = "local"


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
    # The machine its engine runs on: a name from the scenario's `hosts:` (resolved when
    # the scenario is read, see placed_on) or, for backends that take one, an address.
    host: str | None = Field(None, min_length=1, max_length=512)

    _check_name = field_validator("name")(check_name)

    def placed_on(self, address: str) -> PlatformBase:
        """This platform with its engine on the machine at `address`: LOCAL, or
        ssh://[user@]host[:port]. A backend that can drive a remote engine overrides
        this to point its own address key there; by default only this machine will do."""
        if address == LOCAL:
            return self.model_copy(update={"host": None})
        raise ValueError(f"backend {self.backend} runs only on this machine, not on {address}")

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


class KeyedValueError(ValueError):
    """A validation error about one key of a model, raised from a model-level check."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
