"""Sizes and durations as written in scenario files ("128MiB", "2GB", "120s", "500ms")."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
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
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]*)\s*$")


def parse_size(value: str | int) -> int:
    """Bytes from "128MiB", "2GB", "512KiB" or a plain integer of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256MiB, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 256MiB, got {value!r}")
    m = _SIZE_RE.match(value)
    unit = m.group(2).upper() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(f"bad size {value!r}: use a number with B, KiB, MiB, GiB, KB, MB or GB")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: str | int | float) -> float:
    """Seconds from "120s", "500ms", "2m". A bare number is refused: 120 what?"""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, not a boolean")
    if isinstance(value, int | float):
        raise ValueError(f"duration {value!r} has no unit: write e.g. {value}s or {value}ms")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, got {value!r}")
    m = _DURATION_RE.match(value)
    if not m or m.group(2) not in _DURATION_UNITS:
        raise ValueError(f"bad duration {value!r}: use a number with ms, s or m (e.g. 120s)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    return f"{s:.2f} s"
