"""bench/ is grouped by role: every package says what it holds, and the README's
layout section names every package and every module in it (so a reader finds a
module from the README, and a new module cannot go unmentioned)."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

PACKAGE = REPO / "bench"


def layout_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]


def packages():
    return sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))


def test_every_package_has_a_docstring_that_says_what_it_holds():
    for init in (p / "__init__.py" for p in packages()):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 15, f"{init}: say what this package holds, and why"


def test_the_readme_layout_names_every_package_and_module():
    section = layout_section()
    named = set(re.findall(r"`([\w/]+(?:\.py)?)`", section))
    missing = [f"{p.name}/" for p in packages() if f"{p.name}/" not in named]
    for p in packages():
        if p.name in ("backends", "measurements"):
            continue  # one module per engine / measurement: the registry lists them
        missing += [
            f"{p.name}/{m.name}"
            for m in p.glob("*.py")
            if m.name != "__init__.py" and m.name not in named
        ]
    missing += [
        m.name
        for m in PACKAGE.glob("*.py")
        if m.name not in ("__init__.py",) and m.name not in named
    ]
    assert not missing, f"README.md's Layout section does not name: {missing}"


def test_the_top_level_holds_only_the_entry_points():
    assert sorted(m.name for m in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py"]
