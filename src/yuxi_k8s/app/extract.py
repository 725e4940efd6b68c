"""Re-read facts from an application source tree: the environment it reads, the tables it owns.

Pure reading of Python sources with :mod:`ast` (nothing of the application is
imported or run), so it works on any checkout or unpacked tarball:

- environment variables: ``os.getenv(X)``, ``os.environ.get(X)``, ``os.environ[X]``
  where ``X`` is a string literal, a module or class constant holding one, or the
  parameter of a small wrapper (``def _env(name): return os.environ.get(name)``)
  called with a literal; plus the provider key variables the static model
  catalogue names (``env=``/``api_key=`` keywords);
- tables: ``__tablename__`` of SQLAlchemy models and ``CREATE TABLE [IF NOT EXISTS] name``
  in SQL strings;
- settings: the annotated fields of the settings class (``Config``), each with its type as
  written and whether ``Field(..., exclude=True)`` keeps it out of the saved file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
CREATE_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?([a-z_][a-z0-9_]*)\"?", re.IGNORECASE
)


@dataclass
class EnvRead:
    name: str
    default: str | None  # the literal default where one is given, else None
    where: str  # path:line of one read


@dataclass
class SourceFacts:
    env: dict[str, EnvRead] = field(default_factory=dict)
    provider_env: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)

    def add_env(self, read: EnvRead) -> None:
        known = self.env.get(read.name)
        if known is None or (known.default is None and read.default is not None):
            self.env[read.name] = read


def _is_os_getenv(func: ast.expr) -> bool:
    """``os.getenv`` / ``getenv`` / ``os.environ.get`` / ``environ.get``."""
    if isinstance(func, ast.Attribute):
        if func.attr == "getenv":
            return True
        if func.attr == "get" and _is_environ(func.value):
            return True
    return isinstance(func, ast.Name) and func.id == "getenv"


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module- and class-level ``NAME = "value"`` assignments (the value must look like a variable)."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, str) and ENV_NAME.match(value):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = value
    return found


def _literal(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.Attribute):  # self.KB_DATABASE_URL_ENV, Class.NAME
        return constants.get(node.attr)
    return None


def _default(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and node.value is not None:
        return str(node.value)
    return None


def _wrappers(tree: ast.Module) -> dict[str, int]:
    """Functions that pass one of their parameters to getenv: name -> index of that parameter."""
    out: dict[str, int] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = [a.arg for a in fn.args.args]
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and _is_os_getenv(call.func) and call.args:
                arg = call.args[0]
                if isinstance(arg, ast.Name) and arg.id in params:
                    out[fn.name] = params.index(arg.id)
    return out


def _reads(tree: ast.Module, rel: str) -> Iterator[EnvRead]:
    constants = _string_constants(tree)
    wrappers = _wrappers(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            if _is_os_getenv(node.func):
                name = _literal(node.args[0], constants)
                default = _default(node.args[1]) if len(node.args) > 1 else None
            elif isinstance(node.func, ast.Name) and node.func.id in wrappers:
                index = wrappers[node.func.id]
                if len(node.args) <= index:
                    continue
                name = _literal(node.args[index], constants)
                default = _default(node.args[index + 1]) if len(node.args) > index + 1 else None
            else:
                continue
            if name and ENV_NAME.match(name):
                yield EnvRead(name, default, f"{rel}:{node.lineno}")
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _literal(node.slice, constants)
            if name and ENV_NAME.match(name):
                yield EnvRead(name, None, f"{rel}:{node.lineno}")


def _provider_env(tree: ast.Module) -> Iterator[str]:
    """``env="X_API_KEY"`` / ``api_key="X_API_KEY"`` keywords of the static model catalogue."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in ("env", "api_key") and isinstance(kw.value, ast.Constant):
                    value = kw.value.value
                    if isinstance(value, str) and ENV_NAME.match(value) and value != "NO_API_KEY":
                        yield value


def _tables(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            named = any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in node.targets)
            if named and isinstance(node.value.value, str):
                yield node.value.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from (m.lower() for m in CREATE_TABLE.findall(node.value))


def python_files(root: Path, folders: Iterable[str]) -> Iterator[tuple[Path, str]]:
    for folder in folders:
        base = root / folder
        if base.is_file():
            yield base, folder
            continue
        for path in sorted(base.rglob("*.py")):
            if "test" in path.relative_to(root).parts[:3]:
                continue
            yield path, str(path.relative_to(root))


def extract(root: Path, folders: Iterable[str], catalogue: str | None = None) -> SourceFacts:
    """Facts of the Python sources under *folders* of *root* (tests left out)."""
    facts = SourceFacts()
    for path, rel in python_files(root, folders):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        except SyntaxError as exc:
            raise ValueError(f"{rel}: not valid Python ({exc.msg}, line {exc.lineno})") from exc
        for read in _reads(tree, rel):
            facts.add_env(read)
        facts.tables.update(_tables(tree))
        if catalogue and rel == catalogue:
            facts.provider_env.update(_provider_env(tree))
    return facts


@dataclass(frozen=True)
class SettingField:
    annotation: str  # as written in the source, e.g. "int", "dict[str, bool]"
    excluded: bool  # Field(exclude=True): never saved


def _excluded(value: ast.expr | None) -> bool:
    if not isinstance(value, ast.Call):
        return False
    return any(
        kw.arg == "exclude" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in value.keywords
    )


def settings_fields(path: Path, class_name: str = "Config") -> dict[str, SettingField]:
    """The annotated fields of *class_name* in *path* (private ``_`` names and ClassVars left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                item.target.id: SettingField(ast.unparse(item.annotation), _excluded(item.value))
                for item in node.body
                if isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and not item.target.id.startswith("_")
                and "ClassVar" not in ast.unparse(item.annotation)
            }
    raise ValueError(f"{path.name}: no class {class_name}")
