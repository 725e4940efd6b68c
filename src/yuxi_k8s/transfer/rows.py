"""Snapshots as table rows, and reading a whole snapshot out of PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..state.layout import FileEntry, KbEntry, Snapshot

Rows = dict[str, dict[Any, dict[str, Any]]]  # kind -> key -> column values

# kind -> (table, primary-key columns, data columns), in a safe insert order.
TABLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "config": ("system_config", ("key",), ("value",)),
    "provider": ("model_providers", ("scope", "name"), ("payload",)),
    "kb": ("knowledge_bases", ("db_id",), ("kb_type", "name", "payload", "global_payload")),
    "file": ("kb_files", ("file_id",), ("database_id", "kb_type", "status", "filename", "payload")),
    "task": ("tasks", ("task_id",), ("position", "status", "payload")),
    "doc": ("documents", ("name",), ("payload",)),
}
JSON_COLUMNS = {"value", "payload", "global_payload"}
KIND_LABELS = {
    "config": "config keys",
    "provider": "model providers",
    "kb": "knowledge bases",
    "file": "knowledge-base files",
    "task": "tasks",
    "doc": "documents",
}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)


def snapshot_rows(snap: Snapshot) -> Rows:
    rows: Rows = {kind: {} for kind in TABLES}
    rows["config"] = {k: {"value": v} for k, v in snap.config.items()}
    rows["provider"] = {k: {"payload": v} for k, v in snap.providers.items()}
    for db_id, kb in snap.kbs.items():
        name = (kb.payload or {}).get("name", (kb.global_payload or {}).get("name"))
        rows["kb"][db_id] = {
            "kb_type": kb.kb_type,
            "name": _text(name),
            "payload": kb.payload,
            "global_payload": kb.global_payload,
        }
    for file_id, f in snap.files.items():
        rows["file"][file_id] = {
            "database_id": _text(f.payload.get("database_id")),
            "kb_type": f.kb_type,
            "status": _text(f.payload.get("status")),
            "filename": _text(f.payload.get("filename")),
            "payload": f.payload,
        }
    for position, (task_id, task) in enumerate(snap.tasks.items(), start=1):
        rows["task"][task_id] = {"position": position, "status": _text(task.get("status")), "payload": task}
    rows["doc"] = {k: {"payload": v} for k, v in snap.documents.items()}
    return rows


def rows_snapshot(rows: Rows) -> Snapshot:
    snap = Snapshot()
    snap.config = {k: r["value"] for k, r in rows["config"].items()}
    snap.providers = {k: r["payload"] for k, r in sorted(rows["provider"].items())}
    snap.kbs = {k: KbEntry(r["kb_type"], r["payload"], r["global_payload"]) for k, r in rows["kb"].items()}
    snap.files = {k: FileEntry(r["kb_type"], r["payload"]) for k, r in rows["file"].items()}
    ordered = sorted(rows["task"].items(), key=lambda kv: kv[1]["position"])
    snap.tasks = {k: r["payload"] for k, r in ordered}
    snap.documents = {k: r["payload"] for k, r in rows["doc"].items()}
    return snap


def read_rows(conn: psycopg.Connection) -> Rows:
    """Every row of every state table (call inside a transaction for one consistent view)."""
    rows: Rows = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for kind, (table, pk, cols) in TABLES.items():
            cur.execute(f"SELECT {', '.join(pk + cols)} FROM {table}")
            out: dict[Any, dict[str, Any]] = {}
            for record in cur:
                key = tuple(record[c] for c in pk) if len(pk) > 1 else record[pk[0]]
                out[key] = {c: record[c] for c in cols}
            rows[kind] = out
    return rows


def key_label(kind: str, key: Any) -> str:
    if kind == "provider":
        return f"provider {key[0]}/{key[1]}"
    return f"{kind} {key}"
