"""How much of bench/ is untyped: `Any` and `dict[str, Any]`, counting each use of an
alias that stands for them (issue 22's targets: at most 100 and 40).

    .venv/bin/python benchmarks/type_counts.py [DIR ...] [--list]

Read from the syntax tree, so comments and docstrings do not count and nothing is
imported. Counted, in each module:
- `Any`: every name `Any` (or `typing.Any`), also inside a type written as a string
  (`cast("dict[str, Any]", x)`);
- `dict[str, Any]`: every such subscript, written or in a string;
- aliases: a module-level name bound to a type that holds `Any` (`Row = dict[str, Any]`,
  `X: TypeAlias = Mapping[str, Any]`, or an alias of such an alias) counts once per use
  of that name where it is defined, imported (`from m import X`) or reached
  (`m.X`), its own definition aside; an alias of `dict[str, Any]` adds to both counts.
`--list` prints each remaining use with its file and line (what to judge by hand: each
should be JSON coming in or a third-party SDK's object). DIR defaults to bench/.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Module:
    path: Path
    name: str  # dotted, e.g. bench.model.records
    tree: ast.Module
    # alias name -> (holds Any, holds dict[str, Any])
    aliases: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    alias_lines: set[int] = field(default_factory=set)


def _string_types(node: ast.AST) -> list[ast.expr]:
    """The expressions written as strings under `node` ("dict[str, Any]"), parsed."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "Any" in sub.value:
            try:
                out.append(ast.parse(sub.value.strip(), mode="eval").body)
            except (SyntaxError, ValueError):
                continue  # prose, a format string: not a type
    return out


def _is_any(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "Any"
    return isinstance(node, ast.Attribute) and node.attr == "Any"


def _is_dict_str_any(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)):
        return False
    if node.value.id not in ("dict", "Dict") or not isinstance(node.slice, ast.Tuple):
        return False
    key, value = (node.slice.elts + [None, None])[:2]
    return isinstance(key, ast.Name) and key.id == "str" and value is not None and _is_any(value)


def _direct(node: ast.AST) -> tuple[int, int]:
    """`Any` and `dict[str, Any]` written in `node`, strings included."""
    trees = [node, *_string_types(node)]
    anys = sum(1 for t in trees for sub in ast.walk(t) if _is_any(sub))
    dicts = sum(1 for t in trees for sub in ast.walk(t) if _is_dict_str_any(sub))
    return anys, dicts


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (prose that may parse as an expression)."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        doc = first.value if isinstance(first, ast.Expr) else None
        if isinstance(doc, ast.Constant) and isinstance(doc.value, str):
            out.add(id(doc))
    return out


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements at module level, those under `if TYPE_CHECKING:` included."""
    out = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.If):
            out += _module_level(stmt.body) + _module_level(stmt.orelse)
    return out


def _alias_target(stmt: ast.stmt) -> tuple[str, ast.expr] | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        annotation = ast.unparse(stmt.annotation)
        if not annotation.endswith("TypeAlias"):
            return None
        target, value = stmt.target, stmt.value
    else:
        return None
    if not isinstance(target, ast.Name):
        return None
    return target.id, value


def read(dirs: list[Path]) -> list[Module]:
    modules = []
    for d in dirs:
        for path in sorted(d.rglob("*.py")):
            rel = path.relative_to(d.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            tree = ast.parse(path.read_text(), filename=str(path))
            modules.append(Module(path, ".".join(parts), tree))
    return modules


def find_aliases(modules: list[Module]) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(module, alias) -> (holds Any, holds dict[str, Any]), to a fixed point: an alias
    of an alias counts as what it names."""
    found: dict[tuple[str, str], tuple[bool, bool]] = {}
    changed = True
    while changed:
        changed = False
        for m in modules:
            for stmt in _module_level(m.tree.body):
                named = _alias_target(stmt)
                if named is None:
                    continue
                name, value = named
                anys, dicts = _direct(value)
                names = [n.id for n in ast.walk(value) if isinstance(n, ast.Name)]
                via = [found.get((m.name, n)) or _imported(m, n, found) for n in names]
                holds = (
                    anys > 0 or any(v is not None and v[0] for v in via),
                    dicts > 0 or any(v is not None and v[1] for v in via),
                )
                if holds[0] and found.get((m.name, name)) != holds:
                    found[(m.name, name)] = holds
                    m.aliases[name] = holds
                    m.alias_lines.add(stmt.lineno)
                    changed = True
    return found


def _imported(
    m: Module, name: str, found: dict[tuple[str, str], tuple[bool, bool]]
) -> tuple[bool, bool] | None:
    for node in ast.walk(m.tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if (a.asname or a.name) == name and (node.module, a.name) in found:
                    return found[(node.module, a.name)]
    return None


@dataclass
class Use:
    path: Path
    line: int
    what: str  # "Any", "dict[str, Any]", or the alias's module.name
    dict_alias: bool = False  # an alias of dict[str, Any]: counts in both


def count(modules: list[Module]) -> tuple[list[Use], dict[tuple[str, str], tuple[bool, bool]]]:
    found = find_aliases(modules)
    uses: list[Use] = []
    for m in modules:
        docs = _docstrings(m.tree)
        # Names this module reaches: its own aliases, the ones it imports by name, and
        # the modules it imports (`from bench.judge import comparability`: comparability.X).
        local = {name: (m.name, name) for name in m.aliases}
        modules_as: dict[str, str] = {}
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    if (node.module, a.name) in found:
                        local[a.asname or a.name] = (node.module, a.name)
                    modules_as[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    modules_as[a.asname or a.name] = a.name
        for node in ast.walk(m.tree):
            line = getattr(node, "lineno", 0)
            if _is_any(node):
                uses.append(Use(m.path, line, "Any"))
            if _is_dict_str_any(node):
                uses.append(Use(m.path, line, "dict[str, Any]"))
            if isinstance(node, ast.Constant) and id(node) not in docs:
                for t in _string_types(node):
                    uses += [Use(m.path, line, "Any") for x in ast.walk(t) if _is_any(x)]
                    uses += [
                        Use(m.path, line, "dict[str, Any]")
                        for x in ast.walk(t)
                        if _is_dict_str_any(x)
                    ]
            key = None
            if isinstance(node, ast.Name) and node.id in local:
                if line not in m.alias_lines and not isinstance(node.ctx, ast.Store):
                    key = local[node.id]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = modules_as.get(node.value.id)
                if owner and (owner, node.attr) in found:
                    key = (owner, node.attr)
            if key is not None:
                uses.append(Use(m.path, line, ".".join(key), dict_alias=found[key][1]))
    return uses, found


def totals(uses: list[Use]) -> tuple[int, int]:
    """(Any, dict[str, Any]), each use of an alias counted as what it stands for."""
    anys = sum(u.what != "dict[str, Any]" for u in uses)
    dicts = sum(u.what == "dict[str, Any]" or u.dict_alias for u in uses)
    return anys, dicts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[REPO / "bench"])
    parser.add_argument("--list", action="store_true", help="print each use")
    args = parser.parse_args()
    uses, found = count(read([d.resolve() for d in args.dirs]))
    if args.list:
        for u in sorted(uses, key=lambda u: (str(u.path), u.line)):
            where = u.path.relative_to(REPO) if u.path.is_relative_to(REPO) else u.path
            print(f"{where}:{u.line}: {u.what}")
    anys, dicts = totals(uses)
    written_any = sum(u.what == "Any" for u in uses)
    written_dict = sum(u.what == "dict[str, Any]" for u in uses)
    via = Counter(u.what for u in uses if u.what not in ("Any", "dict[str, Any]"))
    print(f"Any: {anys} ({written_any} written, {anys - written_any} through aliases)")
    print(
        f"dict[str, Any]: {dicts} ({written_dict} written, {dicts - written_dict} through aliases)"
    )
    for (module, name), (_, is_dict) in sorted(found.items()):
        kind = "dict[str, Any]" if is_dict else "Any"
        print(f"  alias {module}.{name} = ...{kind}...: {via[f'{module}.{name}']} uses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
