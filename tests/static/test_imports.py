"""The direction of dependencies inside ``yuxi_k8s``, read from the source (ast), not by importing it.

- The libraries never import the command line: ``yuxi_k8s.cli`` (and its ``UserError``) may be
  imported only by ``cli.py``, the ``__main__`` modules and each concern's ``commands.py``.
- No import cycle among module-level imports (those run when a module is imported). Imports
  inside functions are how a cycle hides, so those are checked as well, against a short list of
  known ones that must shrink, never grow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "yuxi_k8s"
CLI = "yuxi_k8s.cli"
# Cycles through imports inside functions, known and being removed (issue 15: "a base class that
# knows its subclasses"). Remove an entry once it is gone: the test fails on a stale one.
KNOWN_FUNCTION_LEVEL_CYCLES: list[set[str]] = []


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # the deepest module of the package the statement names
    line: int
    module_level: bool


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def _deepest(name: str) -> str | None:
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or None


def _named(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: from the importer's package, up level - 1
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    for alias in node.names:
        sub = f"{base}.{alias.name}"  # `from pkg import submodule` imports the submodule
        yield sub if sub in MODULES else base


def imports_of(module: str, path: Path) -> Iterator[Import]:
    def visit(nodes: list[ast.stmt], module_level: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _named(module, path, node):
                    target = _deepest(name)
                    if target is not None and target != module:
                        yield Import(module, target, node.lineno, module_level)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # for the type checker only: never runs
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(node.body, False)
            else:  # if/try/with/class bodies run at import time with their module
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.ExceptHandler):
                        yield from visit(child.body, module_level)
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(node, field, None)
                    if isinstance(block, list):
                        yield from visit([n for n in block if isinstance(n, ast.stmt)], module_level)

    yield from visit(ast.parse(path.read_text(), str(path)).body, True)


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def cycles(edges: list[Import]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _may_import_cli(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module == CLI or last in ("__main__", "commands")


def test_no_library_module_imports_the_cli() -> None:
    offenders = [
        f"{e.importer} (line {e.line})"
        for e in ALL_IMPORTS
        if e.imported == CLI and not _may_import_cli(e.importer)
    ]
    assert not offenders, (
        f"library modules importing {CLI}: {offenders}; raise the concern's own error and let its "
        "commands.py convert it"
    )


def test_no_import_cycle_at_module_level() -> None:
    found = cycles([e for e in ALL_IMPORTS if e.module_level])
    assert not found, [sorted(c) for c in found]


def test_function_level_cycles_are_only_the_known_ones() -> None:
    found = cycles(ALL_IMPORTS)
    new = [sorted(c) for c in found if c not in KNOWN_FUNCTION_LEVEL_CYCLES]
    gone = [sorted(c) for c in KNOWN_FUNCTION_LEVEL_CYCLES if c not in found]
    assert not new, f"new import cycles (through imports inside functions): {new}"
    assert not gone, f"fixed, remove from KNOWN_FUNCTION_LEVEL_CYCLES: {gone}"


def test_the_walker_sees_what_it_should() -> None:
    """The checks above are only as good as the import walker: prove it on known facts."""
    by_importer = {(e.importer, e.imported, e.module_level) for e in ALL_IMPORTS}
    assert ("yuxi_k8s.validate.commands", CLI, True) in by_importer
    assert ("yuxi_k8s.validate.schemas", "yuxi_k8s.validate.crds", True) in by_importer
    # function-level: validate/commands.py imports the pipeline inside its handler
    assert ("yuxi_k8s.validate.commands", "yuxi_k8s.validate.pipeline", False) in by_importer
    # a cycle is found when there is one, and only then
    a_b, b_c, c_a = Import("a", "b", 1, True), Import("b", "c", 1, True), Import("c", "a", 1, True)
    assert cycles([a_b, b_c, c_a]) == [{"a", "b", "c"}]
    assert cycles([a_b, b_c]) == []


TESTS = PACKAGE.parents[1] / "tests"
# tests/state still imports helpers from its conftest (being moved to a support module by the
# state work of issue 15); remove each file here once it no longer does: the test fails on a stale one.
KNOWN_CONFTEST_IMPORTS: set[str] = set()


def test_no_test_module_imports_a_conftest() -> None:
    """pytest loads each conftest under its own name; importing one again makes a second copy
    (two sets of globals, fixtures defined twice). Shared helpers live in plain modules."""
    found = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n.split(".")[-1] == "conftest" for n in names):
                found.add(str(path.relative_to(TESTS.parent)))
    assert not found - KNOWN_CONFTEST_IMPORTS, sorted(found - KNOWN_CONFTEST_IMPORTS)
    assert not KNOWN_CONFTEST_IMPORTS - found, f"fixed, remove: {sorted(KNOWN_CONFTEST_IMPORTS - found)}"
