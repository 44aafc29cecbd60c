"""The JSON Schema of scenario files (`bench schema`), generated from the models that
validate them: `Scenario`, and for each platform the Settings model of the backend it
names, as a union chosen by its `backend` key. Editors use it for completion and inline
errors; `bench validate` stays the judge (a schema cannot say "counts or density").
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, JsonValue, create_model

from bench.model.records import obj, objs, text
from bench.model.settings import DURATION_PATTERN, DURATION_SCHEMA, SIZE_PATTERN, SIZE_SCHEMA

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def scenario_schema() -> dict[str, JsonValue]:
    from bench.backends import BACKENDS, backend_class
    from bench.plan.scenario import EXTENSION_PREFIX, Scenario

    # Backends users do not see (the test-only fake) stay out, as from --help.
    models = [cls.Settings for cls in map(backend_class, BACKENDS) if cls.listed]
    # Made at run time from the backends: a type for pydantic, a value (Any) for mypy.
    platform: Any = Annotated[Union[tuple(models)], Field(discriminator="backend")]  # noqa: UP007
    given = Scenario.model_fields["platforms"]
    model = create_model(
        "Scenario",
        __base__=Scenario,
        __doc__="A bench scenario file (bench run, bench validate).",
        platforms=(list[platform], Field(min_length=1, description=given.description)),
    )
    schema: dict[str, JsonValue] = model.model_json_schema()
    for model_schema in [schema, *obj(schema["$defs"]).values()]:
        _units_as_written(obj(model_schema))
    # Keys bench ignores (scenario.EXTENSION_PREFIX): anchors shared by platforms.
    schema["patternProperties"] = {
        f"^{EXTENSION_PREFIX}": {"description": "ignored by bench: a place for YAML anchors"}
    }
    return {"$schema": DIALECT, **schema}


def _units_as_written(model_schema: dict[str, JsonValue]) -> None:
    """Sizes and durations are validated into numbers: say their defaults as the file
    writes them ("120s", "1GiB"), and keep the unit's wording next to the key's own."""
    units = (
        (SIZE_PATTERN, SIZE_SCHEMA, size_text),
        (DURATION_PATTERN, DURATION_SCHEMA, duration_text),
    )
    for key in map(obj, obj(model_schema.get("properties")).values()):
        patterns = set(_patterns(key))
        for pattern, unit, written in units:
            if pattern not in patterns:
                continue
            default = key.get("default")
            if isinstance(default, int | float) and not isinstance(default, bool) and default:
                key["default"] = written(default)
            said = text(key.get("description"))
            if said and str(unit["description"]) not in said:
                key["description"] = f"{said}; {unit['description']}"


def _patterns(schema: dict[str, JsonValue]) -> list[str]:
    """Patterns of a schema and of its alternatives (a nullable size is anyOf in anyOf)."""
    pattern = text(schema.get("pattern"))
    out = [pattern] if pattern is not None else []
    for alternative in objs(schema.get("anyOf")):
        out += _patterns(alternative)
    return out


def size_text(n: float) -> str:
    """Bytes in the largest binary unit that holds them whole: 1073741824 -> "1GiB"."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n % factor == 0:
            return f"{int(n // factor)}{unit}"
    return f"{int(n)}B"


def duration_text(s: float) -> str:
    return f"{s:g}s" if s >= 1 or s == 0 else f"{s * 1000:g}ms"
