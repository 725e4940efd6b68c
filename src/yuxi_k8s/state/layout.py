"""The application's saves/ layout: parse it into records and render records back.

One neutral form, :class:`Snapshot`, sits between the files and the database:
the file backend, ``migrate-config``, ``export-config`` and ``diff`` all use it,
so the three agree on what each file holds. Parsing is liberal (missing optional
files, older statuses, unknown keys are kept); rendering is stable (sorted keys,
two-space indent, UTF-8 kept readable), so an unchanged import exports identically.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import jsonio

BASE_TOML = "config/base.toml"
CUSTOM_PROVIDERS_TOML = "config/custom_providers.toml"
GLOBAL_METADATA = "knowledge_base_data/global_metadata.json"
GRAPH_INFO = "knowledge_graph/neo4j/graph_info.json"
TASKS = "tasks/tasks.json"
PROVIDER_SCOPES = {"model_names": BASE_TOML, "custom": CUSTOM_PROVIDERS_TOML}
# Keys of a knowledge base that global_metadata.json holds (besides unknown ones it had).
GLOBAL_KB_KEYS = ("name", "description", "kb_type", "created_at", "additional_params")
FILE_STATUSES = (
    "uploaded", "parsing", "parsed", "error_parsing", "indexing", "indexed", "error_indexing",
    "done", "failed",  # older data
)  # fmt: skip
RAW_TASKS = "$raw"  # tasks.json that is not {"tasks": [{id...}]} is kept whole under this key
_TYPE_FILE = re.compile(r"^knowledge_base_data/([A-Za-z0-9_.-]+)_data/metadata_\1\.json$")


def type_metadata_path(kb_type: str) -> str:
    return f"knowledge_base_data/{kb_type}_data/metadata_{kb_type}.json"


def kb_type_of_path(rel: str) -> str | None:
    match = _TYPE_FILE.match(rel)
    return match.group(1) if match else None


class FormatError(ValueError):
    """A saves/ file that cannot be read; str() is one line naming the file (and line)."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class KbEntry:
    kb_type: str
    payload: dict[str, Any] | None = None  # entry in metadata_<type>.json
    global_payload: dict[str, Any] | None = None  # entry in global_metadata.json

    def merged(self) -> dict[str, Any]:
        return {**(self.global_payload or {}), **(self.payload or {})}


@dataclass
class FileEntry:
    kb_type: str
    payload: dict[str, Any]


@dataclass
class Snapshot:
    """Everything the state library keeps, as plain records."""

    config: dict[str, Any] = field(default_factory=dict)
    providers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    kbs: dict[str, KbEntry] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # in file order
    # Per managed file (relative path): its top-level keys that are not records.
    # Presence also means "the file existed", so export recreates it even if empty.
    documents: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "config keys": len(self.config),
            "providers": len(self.providers),
            "knowledge bases": len(self.kbs),
            "files": len(self.files),
            "tasks": len(self.tasks),
            "documents": len(self.documents),
        }


# --- record helpers shared by both backends -----------------------------------


def split_kb(record: dict[str, Any], previous: KbEntry | None) -> KbEntry:
    """Split an API record into the two files' entries (the inverse of ``merged``)."""
    kb_type = record.get("kb_type") or (previous.kb_type if previous else None)
    if not kb_type or not isinstance(kb_type, str):
        raise ValueError("a knowledge base record needs a string 'kb_type'")
    keep_params = bool(previous and previous.payload and "additional_params" in previous.payload)
    payload = {k: v for k, v in record.items() if k != "additional_params" or keep_params}
    global_keys = set(GLOBAL_KB_KEYS) | set((previous.global_payload or {}) if previous else ())
    global_payload = {k: v for k, v in record.items() if k in global_keys}
    return KbEntry(kb_type=kb_type, payload=payload, global_payload=global_payload)


# --- TOML values that JSON cannot hold ------------------------------------------

_TOML_TAG = "$toml"


def _toml_to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        kind = type(value).__name__
        return {_TOML_TAG: kind, "value": value.isoformat()}
    return value


def _json_to_toml(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TOML_TAG, "value"}:
            kind, text = value[_TOML_TAG], value["value"]
            parse = {
                "datetime": dt.datetime.fromisoformat,
                "date": dt.date.fromisoformat,
                "time": dt.time.fromisoformat,
            }
            return parse[kind](text)
        # TOML has no null: a key set to None is left out of the file.
        return {k: _json_to_toml(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_json_to_toml(v) for v in value if v is not None]
    return value


# --- reading -------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes without a UTF-8 BOM (edited on Windows), or None when absent or blank
    (an empty file, left by a crash mid-write of the app, holds nothing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return None if not data or data.isspace() else data


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_text(path: Path) -> str | None:
    data = _read_bytes(path)
    return None if data is None else _decode(path, data)


def load_toml(path: Path) -> dict[str, Any] | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return _toml_to_json(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = str(exc).splitlines()[0]
        if line is None:
            found = re.search(r"line (\d+)", msg)
            line = int(found.group(1)) if found else None
        raise FormatError(path, f"invalid TOML: {msg}", line) from None


def load_json(path: Path, *, allow_nan: bool = False) -> Any:
    """Parse a JSON file. NaN/Infinity (which Python writes) are refused unless *allow_nan*:
    they are fine file to file, but PostgreSQL cannot store them."""
    data = _read_bytes(path)
    if data is None:
        return None
    try:
        return jsonio.fast_loads(data)  # bytes straight in: no decode and re-encode of a large file
    except ValueError:
        pass  # invalid UTF-8, NaN, very large numbers, malformed: let the standard library say which
    try:
        return jsonio.loads(_decode(path, data), allow_nan=allow_nan)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except jsonio.NotJSONError as exc:
        raise FormatError(path, str(exc)) from None


def _object(path: Path, value: Any, what: str = "the file") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(path, f"expected a JSON/TOML object in {what}, found {type(value).__name__}")
    return value


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _providers_of(path: Path, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = doc.get("model_names")
    if table is None:
        return {}
    table = _object(path, table, "model_names")
    for name, provider in table.items():
        _object(path, provider, f"model_names.{name}")
    return table


def read_saves(root: Path) -> Snapshot:
    """Parse every managed file under *root* (a saves/ directory)."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, "not a directory (expected the application's saves/ folder)")
    snap = Snapshot()

    base = load_toml(root / BASE_TOML)
    if base is not None:
        providers = _providers_of(root / BASE_TOML, base)
        snap.config = {k: v for k, v in base.items() if k != "model_names"}
        snap.providers.update({("model_names", n): p for n, p in providers.items()})
        snap.documents[BASE_TOML] = {}

    custom = load_toml(root / CUSTOM_PROVIDERS_TOML)
    if custom is not None:
        providers = _providers_of(root / CUSTOM_PROVIDERS_TOML, custom)
        snap.providers.update({("custom", n): p for n, p in providers.items()})
        snap.documents[CUSTOM_PROVIDERS_TOML] = {k: v for k, v in custom.items() if k != "model_names"}

    global_doc = load_json(root / GLOBAL_METADATA)
    if global_doc is not None:
        path = root / GLOBAL_METADATA
        global_doc = _object(path, global_doc)
        for db_id, entry in _object(path, _or_empty(global_doc.get("databases")), "databases").items():
            entry = _object(path, entry, f"databases.{db_id}")
            kb_type = entry.get("kb_type") or "unknown"
            snap.kbs[db_id] = KbEntry(kb_type=str(kb_type), global_payload=entry)
        snap.documents[GLOBAL_METADATA] = {k: v for k, v in global_doc.items() if k != "databases"}

    kb_dir = root / "knowledge_base_data"
    type_files = sorted(kb_dir.glob("*_data/metadata_*.json")) if kb_dir.is_dir() else []
    for path in type_files:
        rel = path.relative_to(root).as_posix()
        kb_type = kb_type_of_path(rel)
        if kb_type is None:
            continue
        doc = load_json(path)
        if doc is None:
            continue
        doc = _object(path, doc)
        for db_id, entry in _object(path, _or_empty(doc.get("databases")), "databases").items():
            entry = _object(path, entry, f"databases.{db_id}")
            kb = snap.kbs.setdefault(db_id, KbEntry(kb_type=kb_type))
            if kb.payload is not None:
                raise FormatError(
                    path, f"knowledge base {db_id} also appears in {type_metadata_path(kb.kb_type)}"
                )
            kb.kb_type, kb.payload = kb_type, entry
        for file_id, entry in _object(path, _or_empty(doc.get("files")), "files").items():
            if type(entry) is not dict:  # (inline: this loop runs once per file record)
                entry = _object(path, entry, f"files.{file_id}")
            if file_id in snap.files:
                raise FormatError(path, f"file id {file_id} also appears in another metadata file")
            snap.files[file_id] = FileEntry(kb_type=kb_type, payload=entry)
        snap.documents[rel] = {k: v for k, v in doc.items() if k not in ("databases", "files")}

    graph = load_json(root / GRAPH_INFO)
    if graph is not None:
        snap.documents[GRAPH_INFO] = graph

    tasks_doc = load_json(root / TASKS)
    if tasks_doc is not None:
        tasks = tasks_doc.get("tasks") if isinstance(tasks_doc, dict) else None
        ids = (
            [t.get("id") for t in tasks]
            if isinstance(tasks, list) and all(isinstance(t, dict) for t in tasks)
            else None
        )
        if ids is not None and all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids):
            snap.tasks = {t["id"]: t for t in tasks}  # type: ignore[union-attr]
            snap.documents[TASKS] = {k: v for k, v in tasks_doc.items() if k != "tasks"}
        else:  # a shape we do not know: keep it whole rather than guess
            snap.documents[TASKS] = {RAW_TASKS: tasks_doc}
    return snap


# --- rendering -----------------------------------------------------------------


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def dump_toml(value: dict[str, Any]) -> str:
    return tomli_w.dumps(_json_to_toml(value))


def render_base_toml(config: dict[str, Any], providers: dict[str, dict[str, Any]]) -> str:
    doc: dict[str, Any] = dict(config)
    if providers:
        doc["model_names"] = providers
    return dump_toml(doc)


def render_saves(snap: Snapshot) -> dict[str, str]:
    """The text of every managed file the snapshot holds, by relative path."""
    out: dict[str, str] = {}
    by_scope: dict[str, dict[str, dict[str, Any]]] = {"model_names": {}, "custom": {}}
    for (scope, name), payload in snap.providers.items():
        by_scope.setdefault(scope, {})[name] = payload
    if snap.config or by_scope["model_names"] or BASE_TOML in snap.documents:
        out[BASE_TOML] = render_base_toml(snap.config, by_scope["model_names"])
    if by_scope["custom"] or CUSTOM_PROVIDERS_TOML in snap.documents:
        doc = dict(snap.documents.get(CUSTOM_PROVIDERS_TOML) or {})
        if by_scope["custom"]:
            doc["model_names"] = by_scope["custom"]
        out[CUSTOM_PROVIDERS_TOML] = dump_toml(doc)

    global_dbs = {k: kb.global_payload for k, kb in snap.kbs.items() if kb.global_payload is not None}
    if global_dbs or GLOBAL_METADATA in snap.documents:
        out[GLOBAL_METADATA] = dump_json(
            {**(snap.documents.get(GLOBAL_METADATA) or {}), "databases": global_dbs}
        )

    types = {kb.kb_type for kb in snap.kbs.values() if kb.payload is not None}
    types |= {f.kb_type for f in snap.files.values()}
    types |= {t for rel in snap.documents if (t := kb_type_of_path(rel))}
    for kb_type in sorted(types):
        rel = type_metadata_path(kb_type)
        dbs = {
            k: kb.payload for k, kb in snap.kbs.items() if kb.payload is not None and kb.kb_type == kb_type
        }
        files = {k: f.payload for k, f in snap.files.items() if f.kb_type == kb_type}
        out[rel] = dump_json({**(snap.documents.get(rel) or {}), "databases": dbs, "files": files})

    if GRAPH_INFO in snap.documents:
        out[GRAPH_INFO] = dump_json(snap.documents[GRAPH_INFO])
    tasks_extra = snap.documents.get(TASKS)
    if isinstance(tasks_extra, dict) and RAW_TASKS in tasks_extra:
        out[TASKS] = dump_json(tasks_extra[RAW_TASKS])
    elif snap.tasks or tasks_extra is not None:
        out[TASKS] = dump_json({**(tasks_extra or {}), "tasks": list(snap.tasks.values())})
    return out
