"""benchmarks/type_counts.py: what it counts, and bench/ within issue 22's targets."""

import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import type_counts  # noqa: E402


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def _counts(pkg: Path) -> tuple[int, int, dict[str, int]]:
    uses, _ = type_counts.count(type_counts.read([pkg]))
    by_alias: dict[str, int] = {}
    for u in uses:
        if u.what not in ("Any", "dict[str, Any]"):
            by_alias[u.what] = by_alias.get(u.what, 0) + 1
    return (*type_counts.totals(uses), by_alias)


def test_aliases_count_at_each_use_and_prose_does_not(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": '''
                """Any word in a docstring is prose."""
                from typing import Any, TypeAlias, cast
                # Any in a comment is not counted either.
                Row = dict[str, Any]
                Rows: TypeAlias = list[Row]
                Loose = Any

                def f(x: Row, y: Rows) -> Row:
                    return cast("dict[str, Any]", x)
            ''',
            "b.py": """
                from pkg import a
                from pkg.a import Row as R

                def g(x: R, y: a.Loose) -> a.Rows:
                    return [x]
            """,
        },
    )
    anys, dicts, by_alias = _counts(pkg)
    # Written: Row's Any, Loose's Any, the Any inside the cast's string.
    # Through aliases: Row in f twice and in b once (as R); Rows in f and b; Loose in b.
    assert by_alias == {"pkg.a.Row": 3, "pkg.a.Rows": 2, "pkg.a.Loose": 1}
    assert anys == 3 + 6
    # dict[str, Any]: Row's definition and the cast's string; Row's and Rows' uses.
    assert dicts == 2 + 5


def test_a_type_without_any_is_not_an_alias(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "c.py": """
                from pydantic import JsonValue
                Row = dict[str, JsonValue]
                def f(x: Row) -> Row:
                    return x
            """,
        },
    )
    assert _counts(pkg) == (0, 0, {})


def test_bench_stays_within_issue_22s_targets():
    anys, dicts, _ = _counts(REPO / "bench")
    assert anys <= 100 and dicts <= 40, (anys, dicts)
