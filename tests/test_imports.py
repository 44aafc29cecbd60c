"""No import circle inside bench/: every module can be read before the modules that
import it. Imports inside functions count too (a lazy import that closes a circle is
still a circle, only deferred); imports under `if TYPE_CHECKING:` do not, and the
backend and measurement registries' lazy targets count as imports of their
packages."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "bench"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(tree: ast.AST, known: set[str], package: str) -> set[str]:
    """The bench modules a module imports (anywhere but under `if TYPE_CHECKING:`)."""
    out: set[str] = set()

    def add(name: str) -> None:
        # `from bench.backends import base` imports bench.backends.base too; `from
        # bench.plan.scenario import Scenario` imports bench.plan.scenario only.
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from bench.report import tables` needs bench.report.tables (its package is
            # always initialised first); `from bench.report import build` needs the package.
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    out.add(f"{base}.{alias.name}")
                else:
                    add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported_modules(ast.parse(path.read_text()), known, package) - {name}
    from bench.backends import BACKENDS
    from bench.measurements import MEASUREMENTS

    graph["bench.backends"] |= {target.partition(":")[0] for target in BACKENDS.values()}
    graph["bench.measurements"] |= {t.partition(":")[0] for t in MEASUREMENTS.values()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_bench_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_checker_sees_a_cycle_and_ignores_type_checking_imports():
    known = {"p.a", "p.b", "p.c"}
    a = ast.parse("def f():\n    from p.b import x\n")
    b = ast.parse("import p.c\nif TYPE_CHECKING:\n    from p.a import y\n")
    c = ast.parse("from p import a\nfrom p.b import z\n")
    graph = {
        "p.a": imported_modules(a, known, "p"),
        "p.b": imported_modules(b, known, "p"),
        "p.c": imported_modules(c, known, "p"),
    }
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a", "p.b"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({**graph, "p.c": set()}) is None


def test_settings_and_owner_are_leaves():
    graph = import_graph()
    assert graph["bench.model.settings"] <= {
        "bench.model.errors",
        "bench.model.units",
        "bench.model.addresses",
    }
    assert graph["bench.model.addresses"] == set()
    assert graph["bench.model.owner"] <= {
        "bench.model.errors",
        "bench.model.paths",
    }  # run locks' folder
    assert graph["bench.model.paths"] == set()
    assert "bench.plan.scenario" not in graph["bench.backends.base"]


# The layers of bench/, lowest first: a module imports modules of its own layer and of
# those below it, never of one above (a leaf never reads a machine, the runner never
# calls a command's module). A module's layer is that of its longest listed prefix:
# "judge" covers every module of bench/judge/, "model.records" that one module. The
# packages are the layers (README's Layout), but for the leaves, listed one by one:
# modules of any package that import nothing of bench. A new module is placed by its
# package, or here, or test_every_module_has_a_layer fails.
LAYERS: dict[str, set[str]] = {
    "leaves (no bench import)": {
        "bench", "model.errors", "model.paths", "model.units", "model.kinds",
        "model.records", "model.addresses", "model.stats", "model.phases",
        "machines.console", "machines.iohub", "machines.procfs", "machines.clock",
    },
    "the record model's store (bench.model: settings, run folders and their locks)": {
        "model",
    },
    "machines (bench.machines: hosts, images; backends; measurements)": {
        "machines", "backends", "measurements",
    },
    "plan (bench.plan: the scenario, where its leftovers are)": {"plan"},
    "running (bench.runner)": {"runner"},
    "judging (bench.judge)": {"judge"},
    "reporting (bench.report)": {"report"},
    "commands (bench.commands, the CLI)": {"cli", "__main__", "commands"},
}  # fmt: skip
# The runner's parts (bench.runner.policy, .executor, ...) are its own: outside the
# running layer a module calls `bench run` (bench.runner.run) or the runner (bench.runner).
RUNNER_FACES = {"bench.runner.run", "bench.runner"}


def layer_of(module: str, layers: dict[str, set[str]] = LAYERS) -> int | None:
    """The rank of a module's layer (0: the lowest), None when it has none."""
    ranks = {
        name if name == "bench" else f"bench.{name}": rank
        for rank, names in enumerate(layers.values())
        for name in names
    }
    while module:
        if module in ranks:
            return ranks[module]
        module = module.rpartition(".")[0]
        if module == "bench":
            return None  # only the package's own __init__ is the leaf "bench"
    return None


def upward_imports(graph: dict[str, set[str]], layers: dict[str, set[str]] = LAYERS) -> list[str]:
    names = list(layers)
    out = []
    for module, imported in sorted(graph.items()):
        here = layer_of(module, layers)
        for other in sorted(imported):
            there = layer_of(other, layers)
            if here is not None and there is not None and there > here:
                out.append(f"{module} ({names[here]}) imports {other} ({names[there]})")
    return out


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer of LAYERS: {unplaced}"


def test_no_layer_imports_a_higher_one():
    found = upward_imports(import_graph())
    assert not found, "a lower layer imports a higher one:\n" + "\n".join(found)


def test_only_the_running_layer_imports_the_runners_parts():
    running = layer_of("bench.runner.run")
    found = sorted(
        f"{module} imports {other}"
        for module, imported in import_graph().items()
        if layer_of(module) != running
        for other in imported
        if other.startswith("bench.runner.") and other not in RUNNER_FACES
    )
    assert not found, "the runner's parts are its own:\n" + "\n".join(found)


def test_the_layer_check_sees_an_upward_import():
    layers = {"low": {"a"}, "high": {"b", "c"}}
    graph = {"bench.a": {"bench.b"}, "bench.b": {"bench.a", "bench.c.x"}, "bench.c.x": set()}
    assert layer_of("bench.c.x", layers) == 1
    assert layer_of("bench.d", layers) is None
    assert upward_imports(graph, layers) == ["bench.a (low) imports bench.b (high)"]
    assert upward_imports({**graph, "bench.a": set()}, layers) == []
