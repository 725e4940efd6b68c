"""File mode: the application's own saves/ layout, safe for several processes on one volume.

Every read-modify-write holds an exclusive ``flock`` on ``saves/.yuxi-k8s/state.lock``
and replaces files atomically, so two processes (or pods on one RWX volume with
working locks) lose nothing. Files hold no versions, so a sidecar
``saves/.yuxi-k8s/versions.json`` counts them (a record without an entry is at
version 1); edits made outside this library do not bump it.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import layout
from .config import DistributedConfig, Versioned, check_config_key, check_scope, provider_key
from .errors import ConflictError, FencingError, NotFoundError, StateUnavailableError
from .fileio import atomic_write, file_lock
from .layout import FormatError, KbEntry
from .settings import Settings

STATE_DIR = ".yuxi-k8s"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _check(key: str, expected: int | None, actual: int | None) -> None:
    if expected is None:
        return
    if expected == 0 and actual is None:
        return
    if actual != expected:
        raise ConflictError(key, expected, actual)


class FileConfig(DistributedConfig):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = Path(settings.save_dir)
        self._lock_path = self.root / STATE_DIR / "state.lock"
        self._versions_rel = f"{STATE_DIR}/versions.json"
        self._parsed: dict[str, tuple[tuple[int, int, int], Any]] = {}

    # --- reading with a per-file parse cache (atomic renames change the inode) ------------
    def _read(self, rel: str) -> Any:
        path = self.root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            self._parsed.pop(rel, None)
            return None
        except OSError as exc:
            raise StateUnavailableError(f"cannot read {path}: {exc.strerror}") from exc
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._parsed.get(rel)
        if cached and cached[0] == sig:
            return cached[1]
        try:
            value = (
                layout.load_toml(path) if rel.endswith(".toml") else layout.load_json(path, allow_nan=True)
            )
        except FormatError as exc:
            raise StateUnavailableError(str(exc)) from exc
        self._parsed[rel] = (sig, value)
        return value

    def _read_copy(self, rel: str) -> Any:
        return copy.deepcopy(self._read(rel))

    def _write(self, rel: str, value: Any) -> None:
        text = layout.dump_toml(value) if rel.endswith(".toml") else layout.dump_json(value)
        try:
            atomic_write(self.root / rel, text)
        except OSError as exc:
            raise StateUnavailableError(f"cannot write {self.root / rel}: {exc.strerror}") from exc

    def _version_of(self, key: str, exists: bool) -> int | None:
        if not exists:
            return None
        versions = self._read(self._versions_rel) or {}
        return int(versions.get(key, 1))

    def _bump(self, key: str, old: int | None, deleted: bool = False) -> int:
        versions = self._read_copy(self._versions_rel) or {}
        new = (old or 0) + 1
        if deleted:
            versions.pop(key, None)
        else:
            versions[key] = new
        self._write(self._versions_rel, versions)
        return new

    def _locked(self) -> Any:
        if not self.root.is_dir():
            raise StateUnavailableError(f"saves directory {self.root} does not exist")
        return file_lock(self._lock_path)

    def _check_fence(self, fence: tuple[str, int] | None) -> None:
        if fence is None:
            return
        resource, token = fence
        rel = f"{STATE_DIR}/fencing.json"
        tokens = self._read_copy(rel) or {}
        if int(tokens.get(resource, 0)) > token:
            raise FencingError(f"fencing token {token} for {resource} is older than {tokens[resource]}")
        tokens[resource] = token
        self._write(rel, tokens)

    # --- config keys ----------------------------------------------------------------
    def _base(self) -> dict[str, Any]:
        return self._read(layout.BASE_TOML) or {}

    def get_versioned(self, key: str) -> Versioned | None:
        if key == "model_names":
            return Versioned(self.list_providers("model_names"), 0)
        base = self._base()
        if key not in base:
            return None
        return Versioned(copy.deepcopy(base[key]), self._version_of(key, True) or 1)

    def items(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self._base().items() if k != "model_names"}

    def set(
        self,
        key: str,
        value: Any,
        *,
        expected_version: int | None = None,
        updated_by: str | None = None,
        fence: tuple[str, int] | None = None,
    ) -> int:
        check_config_key(key)
        with self._locked():
            base = self._read_copy(layout.BASE_TOML) or {}
            old = self._version_of(key, key in base)
            _check(key, expected_version, old)
            self._check_fence(fence)
            base[key] = value
            self._write(layout.BASE_TOML, base)
            return self._bump(key, old)

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        check_config_key(key)
        with self._locked():
            base = self._read_copy(layout.BASE_TOML) or {}
            old = self._version_of(key, key in base)
            _check(key, expected_version, old)
            if key in base:
                del base[key]
                self._write(layout.BASE_TOML, base)
                self._bump(key, old, deleted=True)

    # --- providers ------------------------------------------------------------------
    def _provider_doc(self, scope: str) -> tuple[str, dict[str, Any]]:
        rel = layout.PROVIDER_SCOPES[check_scope(scope)]
        return rel, self._read(rel) or {}

    def get_provider_versioned(self, name: str, *, scope: str = "model_names") -> Versioned | None:
        _, doc = self._provider_doc(scope)
        record = (doc.get("model_names") or {}).get(name)
        if record is None:
            return None
        return Versioned(copy.deepcopy(record), self._version_of(provider_key(scope, name), True) or 1)

    def list_providers(self, scope: str = "model_names") -> dict[str, dict[str, Any]]:
        _, doc = self._provider_doc(scope)
        return copy.deepcopy(dict(doc.get("model_names") or {}))

    def _edit_provider(
        self, name: str, scope: str, expected: int | None, record: dict[str, Any] | None
    ) -> int:
        rel, _ = self._provider_doc(scope)
        key = provider_key(scope, name)
        with self._locked():
            doc = self._read_copy(rel) or {}
            table = doc.setdefault("model_names", {})
            old = self._version_of(key, name in table)
            _check(key, expected, old)
            if record is None:
                if name not in table:
                    return 0
                del table[name]
            else:
                table[name] = record
            self._write(rel, doc)
            return self._bump(key, old, deleted=record is None)

    def put_provider(
        self,
        name: str,
        record: dict[str, Any],
        *,
        scope: str = "model_names",
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> int:
        if not isinstance(record, dict):
            raise ValueError("a provider record is a dict")
        return self._edit_provider(name, scope, expected_version, record)

    def delete_provider(
        self, name: str, *, scope: str = "model_names", expected_version: int | None = None
    ) -> None:
        self._edit_provider(name, scope, expected_version, None)

    # --- knowledge bases -------------------------------------------------------------
    def _type_rels(self) -> list[str]:
        kb_dir = self.root / "knowledge_base_data"
        if not kb_dir.is_dir():
            return []
        rels = [p.relative_to(self.root).as_posix() for p in sorted(kb_dir.glob("*_data/metadata_*.json"))]
        return [r for r in rels if layout.kb_type_of_path(r)]

    def _kb_entry(self, db_id: str, read: Callable[[str], Any]) -> tuple[KbEntry | None, str | None]:
        glob_doc = read(layout.GLOBAL_METADATA) or {}
        global_payload = (glob_doc.get("databases") or {}).get(db_id)
        for rel in self._type_rels():
            payload = ((read(rel) or {}).get("databases") or {}).get(db_id)
            if payload is not None:
                kb_type = layout.kb_type_of_path(rel) or "unknown"
                return KbEntry(kb_type, payload, global_payload), rel
        if global_payload is not None:
            return KbEntry(str(global_payload.get("kb_type") or "unknown"), None, global_payload), None
        return None, None

    def get_kb_versioned(self, db_id: str) -> Versioned | None:
        entry, _ = self._kb_entry(db_id, self._read)
        if entry is None:
            return None
        return Versioned(copy.deepcopy(entry.merged()), self._version_of(f"kb:{db_id}", True) or 1)

    def list_kbs(self, kb_type: str | None = None) -> dict[str, dict[str, Any]]:
        snap_kbs: dict[str, KbEntry] = {}
        for db_id, entry in ((self._read(layout.GLOBAL_METADATA) or {}).get("databases") or {}).items():
            snap_kbs[db_id] = KbEntry(str(entry.get("kb_type") or "unknown"), None, entry)
        for rel in self._type_rels():
            t = layout.kb_type_of_path(rel) or "unknown"
            for db_id, entry in ((self._read(rel) or {}).get("databases") or {}).items():
                kb = snap_kbs.setdefault(db_id, KbEntry(t))
                kb.kb_type, kb.payload = t, entry
        return {k: copy.deepcopy(v.merged()) for k, v in snap_kbs.items() if kb_type in (None, v.kb_type)}

    def _type_doc(self, rel: str, kb_type: str) -> dict[str, Any]:
        doc = self._read_copy(rel)
        if doc is None:
            doc = {"databases": {}, "files": {}, "benchmarks": {}, "kb_type": kb_type}
        doc.setdefault("databases", {})
        doc.setdefault("files", {})
        return doc

    def put_kb(self, db_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        key = f"kb:{db_id}"
        with self._locked():
            previous, old_rel = self._kb_entry(db_id, self._read)
            old = self._version_of(key, previous is not None)
            _check(key, expected_version, old)
            entry = layout.split_kb(record, previous)
            rel = layout.type_metadata_path(entry.kb_type)
            if old_rel and old_rel != rel:  # the type changed: move it
                moved = self._type_doc(old_rel, previous.kb_type)  # type: ignore[union-attr]
                moved["databases"].pop(db_id, None)
                self._write(old_rel, moved)
            doc = self._type_doc(rel, entry.kb_type)
            doc["databases"][db_id] = entry.payload
            doc["updated_at"] = _now()
            self._write(rel, doc)
            glob_doc = self._read_copy(layout.GLOBAL_METADATA) or {"databases": {}, "version": "2.0"}
            glob_doc.setdefault("databases", {})[db_id] = entry.global_payload
            glob_doc["updated_at"] = _now()
            self._write(layout.GLOBAL_METADATA, glob_doc)
            return self._bump(key, old)

    def delete_kb(
        self, db_id: str, *, expected_version: int | None = None, delete_files: bool = True
    ) -> None:
        key = f"kb:{db_id}"
        with self._locked():
            previous, _ = self._kb_entry(db_id, self._read)
            old = self._version_of(key, previous is not None)
            _check(key, expected_version, old)
            if previous is None:
                return
            for rel in self._type_rels():
                doc = self._read_copy(rel) or {}
                dbs, files = doc.get("databases") or {}, doc.get("files") or {}
                gone = [f for f, rec in files.items() if delete_files and rec.get("database_id") == db_id]
                if db_id in dbs or gone:
                    dbs.pop(db_id, None)
                    for f in gone:
                        del files[f]
                    doc["updated_at"] = _now()
                    self._write(rel, doc)
            glob_doc = self._read_copy(layout.GLOBAL_METADATA)
            if glob_doc and db_id in (glob_doc.get("databases") or {}):
                del glob_doc["databases"][db_id]
                glob_doc["updated_at"] = _now()
                self._write(layout.GLOBAL_METADATA, glob_doc)
            self._bump(key, old, deleted=True)

    # --- files ---------------------------------------------------------------------
    def _find_file(self, file_id: str) -> tuple[dict[str, Any] | None, str | None]:
        for rel in self._type_rels():
            record = ((self._read(rel) or {}).get("files") or {}).get(file_id)
            if record is not None:
                return record, rel
        return None, None

    def get_file_versioned(self, file_id: str) -> Versioned | None:
        record, _ = self._find_file(file_id)
        if record is None:
            return None
        return Versioned(copy.deepcopy(record), self._version_of(f"file:{file_id}", True) or 1)

    def list_files(self, db_id: str | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rel in self._type_rels():
            for file_id, rec in ((self._read(rel) or {}).get("files") or {}).items():
                if db_id is None or rec.get("database_id") == db_id:
                    out[file_id] = copy.deepcopy(rec)
        return out

    def put_file(self, file_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        key = f"file:{file_id}"
        db_id = record.get("database_id")
        with self._locked():
            current, old_rel = self._find_file(file_id)
            old = self._version_of(key, current is not None)
            _check(key, expected_version, old)
            kb, _ = self._kb_entry(str(db_id), self._read) if db_id else (None, None)
            kb_type = (
                kb.kb_type if kb else record.get("kb_type") or (layout.kb_type_of_path(old_rel or "") or None)
            )
            if not kb_type:
                raise NotFoundError(f"knowledge base {db_id!r} of file {file_id} not found")
            rel = layout.type_metadata_path(str(kb_type))
            if old_rel and old_rel != rel:
                moved = self._type_doc(old_rel, layout.kb_type_of_path(old_rel) or "")
                moved["files"].pop(file_id, None)
                self._write(old_rel, moved)
            doc = self._type_doc(rel, str(kb_type))
            doc["files"][file_id] = record
            doc["updated_at"] = _now()
            self._write(rel, doc)
            return self._bump(key, old)

    def delete_file(self, file_id: str, *, expected_version: int | None = None) -> None:
        key = f"file:{file_id}"
        with self._locked():
            current, rel = self._find_file(file_id)
            old = self._version_of(key, current is not None)
            _check(key, expected_version, old)
            if current is None or rel is None:
                return
            doc = self._read_copy(rel)
            del doc["files"][file_id]
            doc["updated_at"] = _now()
            self._write(rel, doc)
            self._bump(key, old, deleted=True)

    # --- tasks and documents ------------------------------------------------------------
    def list_tasks(self) -> list[dict[str, Any]]:
        doc = self._read(layout.TASKS)
        tasks = doc.get("tasks") if isinstance(doc, dict) else None
        return copy.deepcopy(tasks) if isinstance(tasks, list) else []

    def put_task(self, task_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        key = f"task:{task_id}"
        with self._locked():
            doc = self._read_copy(layout.TASKS) or {"tasks": []}
            tasks = doc.setdefault("tasks", [])
            index = next((i for i, t in enumerate(tasks) if t.get("id") == task_id), None)
            old = self._version_of(key, index is not None)
            _check(key, expected_version, old)
            record = {**record, "id": task_id}
            if index is None:
                tasks.append(record)
            else:
                tasks[index] = record
            doc["updated_at"] = _now()
            self._write(layout.TASKS, doc)
            return self._bump(key, old)

    def get_document(self, name: str) -> Versioned | None:
        _check_document(name)
        value = self._read(name)
        if value is None:
            return None
        return Versioned(copy.deepcopy(value), self._version_of(f"doc:{name}", True) or 1)

    def put_document(self, name: str, value: Any, *, expected_version: int | None = None) -> int:
        _check_document(name)
        key = f"doc:{name}"
        with self._locked():
            old = self._version_of(key, os.path.exists(self.root / name))
            _check(key, expected_version, old)
            self._write(name, value)
            return self._bump(key, old)


DOCUMENTS = (layout.GRAPH_INFO,)


def _check_document(name: str) -> None:
    if name not in DOCUMENTS:
        raise ValueError(f"documents are {', '.join(DOCUMENTS)}; not {name!r}")
