"""Hostile or huge scenario files: one line and exit 2, fast and in little memory.

Each file is given to `bench validate --offline` in a subprocess whose wall time and
peak RSS are measured (os.wait4). Before the caps an alias bomb of a few hundred bytes
ran for 58 s and grew to 3.9 GB; a 50 MB description took 47 s and 1.1 GB. The bounds
below are an order of magnitude above what the capped parser needs (about 0.3 s and
40 MiB, mostly Python's start-up), so a loaded CI machine does not flake them, and an
order of magnitude below the old behaviour, so losing a cap fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.plan.scenario import MAX_SCENARIO_BYTES, MAX_YAML_NODES

WALL_BOUND_S = 5.0
RSS_BOUND_BYTES = 128 * 2**20

PLATFORMS = "platforms:\n  - name: c\n    backend: docker\n    image: busybox\n"


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "name: bad-bomb\n" + "\n".join(lines) + "\n" + PLATFORMS


def huge_description(size: int = 50 * 2**20) -> str:
    return "name: bad-huge\ndescription: " + "x" * size + "\n" + PLATFORMS


def many_keys(size: int = 50 * 2**20) -> str:
    line = "x-pad: 1\n"
    return "name: bad-many\n" + PLATFORMS + line * (size // len(line))


def wide_under_cap() -> str:
    # Under the byte cap but over the node cap without any alias: a flat list of numbers.
    items = ", ".join(["1"] * (MAX_YAML_NODES + 10))
    return f"name: bad-wide\ncounts: [{items}]\n" + PLATFORMS


def deep(levels: int = 5000) -> str:
    return "name: bad-deep\ncounts: " + "[" * levels + "1" + "]" * levels + "\n" + PLATFORMS


# Runs bench's CLI and, at exit, writes the process's VmHWM (peak RSS of its own memory
# since exec). rusage's ru_maxrss would not do: it also counts the pytest process this
# child was forked from, before exec.
PEAK_WRAPPER = """
import atexit, os, runpy, sys

def peak():
    with open("/proc/self/status") as f:
        kib = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(str(kib * 1024))

atexit.register(peak)
sys.argv = ["bench", *sys.argv[1:]]
runpy.run_module("bench", run_name="__main__")
"""


def validate_measured(path: Path) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run `bench validate --offline PATH`: its result, wall seconds and peak RSS bytes."""
    peak_file = path.with_suffix(".peak")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, "validate", "--offline", str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PEAK_FILE": str(peak_file)},
        timeout=120,
    )
    wall = time.monotonic() - start
    return result, wall, int(peak_file.read_text())


@pytest.mark.parametrize(
    "make,expect",
    [
        (alias_bomb, "an alias bomb?"),
        (wide_under_cap, f"more than {MAX_YAML_NODES} YAML nodes"),
        (deep, "nested too deeply"),
        (huge_description, "larger than 256 KiB"),
        (many_keys, "larger than 256 KiB"),
    ],
    ids=["alias-bomb", "many-nodes", "deep", "50MB-description", "50MB-of-keys"],
)
def test_hostile_file_is_refused_fast_in_little_memory(tmp_path, make, expect):
    path = tmp_path / "hostile.yaml"
    path.write_text(make())
    result, wall, peak = validate_measured(path)
    print(f"{path.stat().st_size} bytes: {wall:.2f} s, peak RSS {peak / 2**20:.0f} MiB")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.stderr
    assert result.stdout == ""
    assert wall < WALL_BOUND_S, f"took {wall:.1f} s"
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"


def test_alias_bomb_really_is_one():
    # The file above must be a real bomb, or the test proves nothing: over 3 billion
    # nodes once expanded (counted by the same memoised walk, with no cap).
    import yaml

    from bench.plan.scenario import _expanded_nodes

    text = alias_bomb()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert len(text) < 1000
    assert _expanded_nodes(root, limit=10**12) > 3 * 10**9


def test_the_byte_cap_leaves_room_for_real_scenarios():
    shipped = Path(__file__).resolve().parent.parent / "scenarios"
    biggest = max(p.stat().st_size for p in shipped.glob("*.yaml"))
    assert biggest * 20 < MAX_SCENARIO_BYTES


def test_aliases_within_the_cap_still_work(tmp_path):
    # Anchors shared by platforms are a legitimate use of aliases, in an x- key.
    from bench.plan.scenario import parse_scenario

    text = (
        "name: shared\nx-guest: &guest {backend: docker, image: busybox, memory: 64MiB}\n"
        "platforms:\n  - {<<: *guest, name: a}\n  - {<<: *guest, name: b}\n"
    )
    s = parse_scenario(text)
    assert [(p.name, p.memory) for p in s.platforms] == [("a", 64 * 2**20), ("b", 64 * 2**20)]
