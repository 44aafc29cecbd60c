"""JSON: the verdicts of `bench compare`, `bench ab` and `bench history` as one
document each (their --json), for scripts and CI steps that read fields, not prose.

The verdicts say what goes into their document (`to_dict`: plain values, named as in
the JSON); this renderer only turns it into text, the same way for every command: NaN
and infinities as null (bench.judge.verdict.json_ready), non-ASCII kept, two-space indent,
and a final newline so that a shell prompt after it starts on its own line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from bench.judge import verdict as v


class Verdict(Protocol):
    """What a verdict offers its JSON renderer."""

    def to_dict(self) -> Mapping[str, object]: ...


def verdict_json(result: Verdict) -> str:
    """`result`'s document as --json prints it."""
    return json.dumps(v.json_ready(result.to_dict()), indent=2, ensure_ascii=False) + "\n"
