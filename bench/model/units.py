"""Sizes and durations as written in scenario files ("128MiB", "2GB", "120s", "500ms")."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TypeGuard

_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = r"(\d+(?:\.\d+)?)"
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z]*)\s*$")
# A duration is one or more number-unit parts, largest first: "90s", "1m30s", "1h 5min".
_DURATION_PART = re.compile(rf"\s*{_NUMBER}\s*([a-z]*)")
SIZE_HELP = "B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
DURATION_HELP = "ms, s, m (or min) and h, alone or combined as in 1m30s"


def parse_size(value: object) -> int:
    """Bytes from "128MiB", "2GB", "512KiB" or "4096B". A number without a unit is an
    error (is `memory: 512` 512 bytes or 512 MiB?), except 0, which is 0 in any unit."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256MiB, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        if value == 0:
            return 0
        raise ValueError(f"size {value} has no unit: {_unit_hint(value)}")
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 256MiB, got {value!r}")
    m = _SIZE_RE.match(value)
    if m and not m.group(2):
        if float(m.group(1)) == 0:
            return 0
        number = float(m.group(1))
        hint = _unit_hint(int(number)) if number.is_integer() else f"write e.g. {m.group(1)}MiB"
        raise ValueError(f"size {value!r} has no unit: {hint}")
    unit = m.group(2).upper() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(f"bad size {value!r}: use a number with {SIZE_HELP}")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def _unit_hint(n: int) -> str:
    """What a bare size probably meant. A count of a mebibyte or more is bytes (nobody
    asks for 128 Mi MiB), so the hint is that count in B and its exact binary unit; a
    smaller one may be either, so both readings are offered."""
    if n >= 2**20:
        exact = next((f"{n // f}{u}" for u, f in SIZE_UNITS if n % f == 0 and f > 1), None)
        return f"write {n}B for bytes" + (f" (= {exact})" if exact else "")
    return f"write e.g. {n}MiB, or {n}B for bytes"


def parse_duration(value: object) -> float:
    """Seconds from "120s", "500ms", "2m", "1m30s", "1h". A bare number is refused:
    120 what?"""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, not a boolean")
    if isinstance(value, int | float):
        raise ValueError(f"duration {value!r} has no unit: write e.g. {value}s or {value}ms")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, got {value!r}")
    total, pos, parts = 0.0, 0, 0
    text = value.strip()
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"bad duration {value!r}: use a number with {DURATION_HELP}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos, parts = m.end(), parts + 1
    if parts == 0:
        raise ValueError(f"bad duration {value!r}: use a number with {DURATION_HELP}")
    return total


# Output is always in binary units, like the scenario files' MiB and GiB: a size printed
# in MB next to one in MiB would differ by 5% for no reason.
SIZE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))
_DURATION_STEPS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6))


def size_unit(values: Iterable[float | None]) -> tuple[str, int]:
    """The unit and its factor in bytes for a column or axis of sizes: the largest unit the
    biggest magnitude reaches, so every value reads as at least a fraction of it."""
    top = max((abs(float(v)) for v in values if _finite(v)), default=0.0)
    return next((u, f) for u, f in SIZE_UNITS if top >= f or f == 1)


def format_bytes(n: float | None, decimals: int = 1) -> str:
    """Sizes such as "512 B", "1.5 KiB", "128.0 MiB", "-2.0 GiB"; "-" for None or NaN."""
    if n is None or math.isnan(n):
        return "-"
    i = next((i for i, (_, f) in enumerate(SIZE_UNITS) if abs(n) >= f), len(SIZE_UNITS) - 1)
    places = decimals if SIZE_UNITS[i][0] != "B" else 0
    # Rounding may carry into the next unit up: 1023.96 KiB is "1.0 MiB", not "1024.0 KiB".
    if i > 0 and abs(round(n / SIZE_UNITS[i][1], places)) >= 1024:
        i, places = i - 1, decimals
    unit, factor = SIZE_UNITS[i]
    return f"{n / factor:.{places}f} {unit}"


def format_seconds(s: float | None, digits: int = 3, trim: bool = False) -> str:
    """Durations such as "420 µs", "12.3 ms", "4.32 s", "125 s": `digits` significant digits in the
    largest unit the value reaches, seconds at most. `trim` drops trailing zeros ("1 s",
    not "1.00 s"), for axis ticks. "-" for None or NaN."""
    if s is None or math.isnan(s):
        return "-"
    if s == 0 or math.isinf(s):
        return f"{s:g} s"
    units = _DURATION_STEPS
    i = next((i for i, (_, f) in enumerate(units) if abs(s) >= f), len(units) - 1)
    # Rounding may carry into the next unit up: 999.96 ms is "1.00 s", not "1000 ms".
    if i > 0 and abs(_significant(s / units[i][1], digits)) >= 1000:
        i -= 1
    unit, factor = units[i]
    value = s / factor
    places = max(0, digits - 1 - math.floor(math.log10(abs(_significant(value, digits)))))
    text = f"{value:.{places}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}"


def _significant(v: float, digits: int) -> float:
    return float(f"{v:.{digits}g}")


def _finite(v: float | None) -> TypeGuard[float]:
    return v is not None and math.isfinite(v)


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 step", "3 steps": a count with its noun, singular when it is one."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"
