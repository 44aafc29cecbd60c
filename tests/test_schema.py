"""`bench schema`: the JSON Schema editors use must accept what bench accepts (every
shipped scenario) and refuse what it refuses, in the file's own terms (sizes and
durations as text with a unit)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from bench import cli
from bench.model.errors import ScenarioError
from bench.model.settings import DURATION_PATTERN, SIZE_PATTERN
from bench.model.units import parse_duration, parse_size
from bench.plan.scenario import parse_scenario
from tests.conftest import REPO

SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    p = CliRunner().invoke(cli.app, ["schema"])
    assert p.exit_code == 0, p.output
    assert p.output.endswith("}\n")
    schema = json.loads(p.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(yaml.safe_load(text))]


def test_scenarios_are_shipped():
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_scenario_validates_against_the_schema(validator, path):
    assert errors(validator, path.read_text()) == []


GOOD = """\
name: ok
timeout: 1m30s
memory_reserve: 0
x-guest: &guest {backend: qemu, memory: 256MiB}
density: {max: 8, slo: {ready_p95: 500ms}, memory_reserve: 2GiB}
platforms:
  - {<<: *guest, name: vm, machine: q35}
  - {name: c, backend: docker, image: busybox, ready: READY, command: sh -c 'exec /init'}
  - {name: p, backend: podman, image: busybox, ready: {marker: GO}, command: [sh]}
  - {name: l, backend: libvirt, accel: tcg, kernel: /boot/vmlinuz, initrd: /boot/initrd.img}
"""


def test_what_bench_accepts_the_schema_accepts(validator):
    parse_scenario(GOOD)  # bench takes it
    assert errors(validator, GOOD) == []


BAD = {
    "unknown top-level key": ("platfroms: []\n", "platfroms"),
    "unknown platform key": ("  - {name: c, backend: docker, image: busybox, vcpus: 2}\n", "vcpus"),
    "unknown backend": ("  - {name: c, backend: lxc, image: busybox}\n", "lxc"),
    "a key of another backend": ("  - {name: v, backend: qemu, runtime: runc}\n", "runtime"),
    "repeat as text": ("repeat: two\n", "two"),
    "a size without a unit": ("  - {name: c, backend: docker, image: busybox, memory: 512}\n", ""),
    "a bare duration": ("timeout: 120\n", "120"),
    "a bad duration unit": ("timeout: 2 weeks\n", "2 weeks"),
    "counts as text": ("counts: '1,2,4'\n", "1,2,4"),
    "accel unknown": ("  - {name: v, backend: libvirt, accel: hvf}\n", "hvf"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_what_bench_refuses_the_schema_refuses(validator, case):
    line, shown = BAD[case]
    base = "name: bad\nplatforms:\n  - {name: ok, backend: docker, image: busybox}\n"
    text = base + line if line.startswith("  - ") else line + base
    with pytest.raises(ScenarioError):
        parse_scenario(text)
    found = errors(validator, text)
    assert found, f"the schema accepts {case}"
    assert shown in " ".join(found)


def test_without_required_keys_the_schema_refuses(validator):
    assert any("'name' is a required property" in m for m in errors(validator, "platforms: []\n"))
    assert errors(validator, "name: x\nplatforms: []\n")  # at least one platform


def test_every_key_says_what_it_means(validator):
    schema = validator.schema
    for model in [schema, *schema["$defs"].values()]:
        for key, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{key} has no description"


def test_units_are_text_with_their_defaults_as_written(validator):
    props = validator.schema["properties"]
    assert props["timeout"]["type"] == "string"
    assert props["timeout"]["default"] == "120s"
    assert props["settle"]["default"] == "3s"
    assert props["memory_reserve"]["default"] == "1GiB"
    assert "a size" in props["memory_reserve"]["description"]
    assert "integer" not in json.dumps(props["timeout"])
    qemu = validator.schema["$defs"]["QemuSettings"]["properties"]
    assert qemu["memory"]["default"] == "256MiB"
    assert "fake" not in json.dumps(props["platforms"])  # the test-only backend


def _parses(parse, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "text",
    ["128MiB", "2GB", "1.5 kib", "4096B", "0", "0.0", " 1TiB ", "512", "1 m", "x", "-1MiB",
     "0.5", "1 MiB B", "KiB", "1.MiB", "1e3MiB"],
)  # fmt: skip
def test_the_size_pattern_agrees_with_the_parser(text):
    assert bool(re.search(SIZE_PATTERN, text)) == _parses(parse_size, text)


@pytest.mark.parametrize(
    "text",
    ["120s", "500ms", "2m", "2min", "1h", "1m30s", "1h 5min", " 90s ", "0s", "0.5s", "120",
     "1 m s", "1mins", "s", "2 weeks", "1m30", "-1s", "1.s"],
)  # fmt: skip
def test_the_duration_pattern_agrees_with_the_parser(text):
    assert bool(re.search(DURATION_PATTERN, text)) == _parses(parse_duration, text)
