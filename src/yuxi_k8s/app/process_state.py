"""The pinned application's per-process state, as data: where it lives upstream, what it risks, what
the kit decided and which test proves it.

``contracts/<version>-process-state.yaml`` (beside the contract) has one row per piece of state a
Yuxi-Know process keeps for itself (docs/per-process-state.md is the table for users). Three checks
keep it honest, all without importing anything:

- :func:`load` refuses a row without a decision, an ``open`` row without its issue, a row that is
  not ``open`` without a test (one line per problem);
- :func:`missing_tests`: every test node id, doc anchor and kit module a row names exists in this
  repository (test functions found with ``ast``);
- :func:`moved_places`: every upstream file and symbol a row names is still defined in a source
  tree (classes, their methods and attributes, functions, module-level names).

API::

    from yuxi_k8s.app import process_state
    rows = process_state.load()
    process_state.missing_tests(rows, REPO_ROOT)     # [] or one line per problem
    process_state.moved_places(rows, source.resolve().tree)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.app import PINNED_VERSION
from yuxi_k8s.app.contract import CONTRACTS

KINDS = ("kit", "manifests", "shared-volume", "documented", "open")
RISKS = ("data loss", "wrong", "security", "transient", "cosmetic", "fine")
DOCS_PREFIX = "docs: "
# tests/<path>.py::name[::name][param]: the file, the class/function path, an optional parameter id
_NODE_ID = re.compile(r"^(tests/[\w/.-]+\.py)((?:::\w+)+)(\[[^\]]+\])?$")
_DOC_REF = re.compile(r"^(docs/[\w/.-]+\.md)#([\w-]+)$")
_MODULE = re.compile(r"^yuxi_k8s(\.\w+)+$")


class ProcessStateError(ValueError):
    """The table is malformed; the message has one line per problem."""


@dataclass(frozen=True)
class Place:
    file: str  # inside the source tree, e.g. backend/package/yuxi/knowledge/base.py
    symbols: tuple[str, ...]  # Class.member, function, or module-level NAME


@dataclass(frozen=True)
class Decision:
    kind: str
    text: str
    issue: int | None  # the issue tracking an open row
    module: str | None  # the kit module that handles a `kit` row


@dataclass(frozen=True)
class Row:
    id: str  # "1".."20", or a name such as "db-url-log"
    state: str
    places: tuple[Place, ...]
    risk: str
    decision: Decision
    tests: tuple[str, ...]  # pytest node ids, or "docs: docs/<page>.md#<anchor>"


def table_path(version: str = PINNED_VERSION) -> Path:
    return CONTRACTS / f"{version}-process-state.yaml"


def load(path: Path | None = None) -> list[Row]:
    """The rows of *path* (default: the pinned version's table); ProcessStateError lists every problem."""
    path = path or table_path()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProcessStateError(f"{path.name}: cannot read: {exc}".replace("\n", " ")) from exc
    rows, problems = parse(doc, path.name)
    if problems:
        raise ProcessStateError("\n".join(problems))
    return rows


def parse(doc: Any, name: str) -> tuple[list[Row], list[str]]:
    """The rows of a loaded YAML document and its problems, each one line naming the file and row."""
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        return [], [f"{name}: expected a mapping with a `rows` list"]
    rows: list[Row] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(doc["rows"], 1):
        where = f"{name}: entry {index}"
        if not isinstance(raw, dict) or raw.get("row") in (None, ""):
            problems.append(f"{where}: has no `row` id")
            continue
        row_id = str(raw["row"])
        where = f"{name}: row {row_id}"
        if row_id in seen:
            problems.append(f"{where}: listed twice")
        seen.add(row_id)
        found = [f"{where}: {p}" for p in _row_problems(raw)]
        problems += found
        if not found:
            rows.append(_row(row_id, raw))
    return rows, problems


def _row_problems(raw: dict[str, Any]) -> Iterator[str]:
    if not _text(raw.get("state")):
        yield "no `state`"
    if raw.get("risk") not in RISKS:
        yield f"risk {raw.get('risk')!r} is not one of {', '.join(RISKS)}"
    places = raw.get("places")
    if not isinstance(places, list) or not places:
        yield "no `places` upstream"
    else:
        for place in places:
            if not isinstance(place, dict) or not _text(place.get("file")):
                yield f"a place without a `file`: {place!r}"
            elif not isinstance(place.get("symbols"), list) or not all(_text(s) for s in place["symbols"]):
                yield f"{place['file']}: `symbols` must be a list of names"
    decision = raw.get("decision")
    if not isinstance(decision, dict):
        yield "has no decision"
        return
    kind = decision.get("kind")
    if kind not in KINDS:
        yield f"decision kind {kind!r} is not one of {', '.join(KINDS)}"
    if not _text(decision.get("text")):
        yield "the decision has no `text`"
    if kind == "open" and not isinstance(decision.get("issue"), int):
        yield "is open without the issue that tracks it (`issue: N`)"
    module = decision.get("module")
    if module is not None and (kind != "kit" or not isinstance(module, str) or not _MODULE.match(module)):
        yield f"`module` {module!r} must be a yuxi_k8s module, and only on a kit decision"
    tests = raw.get("tests") or []
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        yield "`tests` must be a list of strings"
        return
    for test in tests:
        if test.startswith(DOCS_PREFIX):
            if kind != "documented":
                yield f"{test!r}: a doc anchor stands for a test only on a documented decision"
            elif not _DOC_REF.match(test.removeprefix(DOCS_PREFIX)):
                yield f"{test!r} is not `docs: docs/<page>.md#<anchor>`"
        elif not _NODE_ID.match(test):
            yield f"{test!r} is not a pytest node id (tests/<path>.py::test_name)"
    if kind in KINDS and kind != "open" and not tests:
        yield f"is {kind} without a test that proves it"


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _row(row_id: str, raw: dict[str, Any]) -> Row:
    d = raw["decision"]
    return Row(
        id=row_id,
        state=raw["state"].strip(),
        places=tuple(Place(p["file"], tuple(p["symbols"])) for p in raw["places"]),
        risk=raw["risk"],
        decision=Decision(d["kind"], d["text"].strip(), d.get("issue"), d.get("module")),
        tests=tuple(raw.get("tests") or ()),
    )


def missing_tests(rows: Iterable[Row], repo_root: Path) -> list[str]:
    """Tests, doc anchors and kit modules the rows name that this repository lacks, one line each."""
    problems: list[str] = []
    defined: dict[Path, set[str] | str] = {}
    for row in rows:
        for test in row.tests:
            if test.startswith(DOCS_PREFIX):
                problem = _missing_anchor(test.removeprefix(DOCS_PREFIX), repo_root)
            else:
                problem = _missing_test(test, repo_root, defined)
            if problem:
                problems.append(f"row {row.id}: {problem}")
        module = row.decision.module
        if module:
            base = repo_root / "src" / Path(*module.split("."))
            if not base.with_suffix(".py").is_file() and not (base / "__init__.py").is_file():
                problems.append(f"row {row.id}: kit module {module} is not in src/")
    return problems


def _missing_test(node_id: str, repo_root: Path, defined: dict[Path, set[str] | str]) -> str | None:
    match = _NODE_ID.match(node_id)
    if not match:
        return f"{node_id!r} is not a pytest node id"
    path = repo_root / match.group(1)
    if not path.is_file():
        return f"{match.group(1)} does not exist ({node_id})"
    if path not in defined:
        defined[path] = _definitions_or_error(path)
    names = defined[path]
    if isinstance(names, str):
        return names
    # The parameter id is pytest's; only the function (and its class) can be checked without running it.
    qualified = match.group(2).removeprefix("::").replace("::", ".")
    if qualified not in names:
        return f"{qualified} is not defined in {match.group(1)} ({node_id})"
    return None


def _missing_anchor(ref: str, repo_root: Path) -> str | None:
    match = _DOC_REF.match(ref)
    if not match:
        return f"{ref!r} is not docs/<page>.md#<anchor>"
    page = repo_root / match.group(1)
    if not page.is_file():
        return f"{match.group(1)} does not exist"
    anchors = {
        heading_anchor(line) for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    }
    if match.group(2) not in anchors:
        return f"{match.group(1)} has no heading #{match.group(2)}"
    return None


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def moved_places(rows: Iterable[Row], tree: Path) -> list[str]:
    """Upstream files missing from *tree*, or symbols no longer defined in them, one line each."""
    problems: list[str] = []
    defined: dict[Path, set[str] | str] = {}
    for row in rows:
        for place in row.places:
            path = tree / place.file
            if not path.is_file():
                problems.append(f"row {row.id}: {place.file} is not in the source")
                continue
            if path not in defined:
                defined[path] = _definitions_or_error(path)
            names = defined[path]
            if isinstance(names, str):
                problems.append(f"row {row.id}: {names}")
                continue
            problems += [
                f"row {row.id}: {symbol} is not defined in {place.file}"
                for symbol in place.symbols
                if symbol not in names
            ]
    return problems


def _definitions_or_error(path: Path) -> set[str] | str:
    try:
        return definitions(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        return f"{path.name} cannot be parsed: {exc}".replace("\n", " ")


def definitions(source: str) -> set[str]:
    """Names a Python module defines, qualified: ``f``, ``NAME``, ``Class``, ``Class.method``,
    ``Class.ATTR`` (class body, or ``self.ATTR =`` / ``cls.ATTR =`` in a method), ``Outer.Inner.x``.

    Module level includes the bodies of ``if``/``try``/``with`` (conditional definitions), never
    the bodies of functions.
    """
    names: set[str] = set()
    _collect(ast.parse(source).body, "", names)
    return names


def _collect(body: list[ast.stmt], prefix: str, names: set[str]) -> None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(prefix + node.name)
            if prefix:  # a method: the attributes it sets on its instance or class
                names.update(prefix + attr for attr in _self_attributes(node))
        elif isinstance(node, ast.ClassDef):
            names.add(prefix + node.name)
            _collect(node.body, f"{prefix}{node.name}.", names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(prefix + n for t in targets for n in _assigned_names(t))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.AsyncWith)):
            for block in ("body", "orelse", "finalbody"):
                _collect(getattr(node, block, []), prefix, names)
            for handler in getattr(node, "handlers", []):
                _collect(handler.body, prefix, names)


def _assigned_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _assigned_names(element)


def _self_attributes(method: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[str]:
    if not method.args.args:
        return
    receiver = method.args.args[0].arg  # self or cls
    for node in ast.walk(method):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == receiver
            ):
                yield target.attr


def docs_decisions(markdown: str) -> dict[str, tuple[str, int | None]]:
    """Row id -> (decision kind, issue), read from the table in docs/per-process-state.md.

    A table line is ``| <row> | what | risk | <decision> | test |``; the decision cell starts with
    the kind, and an open one says ``(issue N)``.
    """
    decisions: dict[str, tuple[str, int | None]] = {}
    for line in markdown.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"\d+|[a-z][a-z0-9-]*", cells[0]):
            continue
        kind = re.match(r"^([a-z-]+)", cells[3])
        issue = re.search(r"\(issue (\d+)\)", cells[3])
        if kind and kind.group(1) in KINDS:
            decisions[cells[0]] = (kind.group(1), int(issue.group(1)) if issue else None)
    return decisions
