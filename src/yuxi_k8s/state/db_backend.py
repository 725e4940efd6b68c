"""Database mode: PostgreSQL rows, a local cache, and LISTEN/NOTIFY to keep every replica's cache fresh.

Writes go straight to PostgreSQL with optimistic concurrency (``UPDATE ... WHERE
version = :expected``) and, in the same transaction, ``pg_notify`` naming what
changed and its ``rev`` (from one sequence). A listener thread per replica holds
its own connection, LISTENs, and re-reads each changed row by key; ``rev`` keeps
an older row from overwriting a newer one in the cache. After a lost connection
it reconnects, LISTENs again and reloads everything, so nothing is missed.

Reads come from the cache. When the listener's connection is lost, reads keep
answering for ``settings.stale_read_grace_s`` (default 5 s, enough for a
PostgreSQL restart) and then raise StateUnavailableError until the reload is done:
never empty data, never an unbounded stale view.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from .. import migrations
from . import jsonio, layout
from .config import DistributedConfig, Versioned, check_config_key, check_scope, provider_key
from .errors import ConflictError, FencingError, NotFoundError, StateUnavailableError
from .file_backend import _check_document
from .layout import KbEntry
from .models import NOTIFY_CHANNEL
from .settings import Settings, describe_database_url, libpq_url

log = logging.getLogger(__name__)

_IMMUTABLE = (str, int, float, bool, type(None))
_MISSING = object()


def _copy(value: Any) -> Any:
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def _text(value: Any) -> str | None:
    """A filter column is text even when a record holds a number there."""
    return None if value is None else value if isinstance(value, str) else str(value)


def make_engine(url: str, connect_timeout_s: float = 5.0, **kwargs: Any) -> Any:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=kwargs.pop("pool_size", 5),
        max_overflow=kwargs.pop("max_overflow", 5),
        connect_args={"connect_timeout": max(1, int(connect_timeout_s))},
        **kwargs,
    )


def unavailable(url: str, exc: BaseException) -> StateUnavailableError:
    reason = (
        str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if str(exc).strip()
        else type(exc).__name__
    )
    return StateUnavailableError(f"database {describe_database_url(url)} unavailable: {reason}")


# Tables: primary-key columns and the data columns a write sets.
_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "config": (("key",), ("value", "updated_by")),
    "provider": (("scope", "name"), ("payload", "updated_by")),
    "kb": (("db_id",), ("kb_type", "name", "payload", "global_payload")),
    "file": (("file_id",), ("database_id", "kb_type", "status", "filename", "payload")),
    "task": (("task_id",), ("status", "payload")),
    "doc": (("name",), ("payload",)),
}
TABLE_NAMES = {
    "config": "system_config",
    "provider": "model_providers",
    "kb": "knowledge_bases",
    "file": "kb_files",
    "task": "tasks",
    "doc": "documents",
}
_JSON_COLUMNS = {"value", "payload", "global_payload"}
_HAS_UPDATED_BY = {"config", "provider"}


def _param(column: str, value: Any) -> Any:
    return Jsonb(value) if (column in _JSON_COLUMNS and value is not None) or column == "value" else value


class _Cache:
    """Every row, by kind and key, with (value..., version, rev). Replaced whole on reload."""

    def __init__(self) -> None:
        self.config: dict[str, tuple[Any, int, int]] = {}
        self.providers: dict[tuple[str, str], tuple[dict[str, Any], int, int]] = {}
        self.kbs: dict[str, tuple[KbEntry, int, int]] = {}
        self.files: dict[str, tuple[dict[str, Any], str, int, int]] = {}  # payload, kb_type, version, rev
        self.files_by_db: dict[str | None, set[str]] = {}
        self.tasks: dict[str, tuple[dict[str, Any], int, int, int]] = {}  # payload, position, version, rev
        self.docs: dict[str, tuple[Any, int, int]] = {}
        self.deleted: dict[tuple[str, Any], int] = {}  # tombstone revs
        self._tables: dict[str, dict[Any, Any]] = {
            "config": self.config,
            "provider": self.providers,
            "kb": self.kbs,
            "file": self.files,
            "task": self.tasks,
            "doc": self.docs,
        }

    def table(self, kind: str) -> dict[Any, Any]:
        return self._tables[kind]

    def rev_of(self, kind: str, key: Any) -> int:
        entry = self.table(kind).get(key)
        if entry is not None:
            return entry[-1]
        return self.deleted.get((kind, key), 0)

    def put(self, kind: str, key: Any, entry: tuple[Any, ...]) -> bool:
        if self.rev_of(kind, key) >= entry[-1]:
            return False
        if kind == "file":
            old = self.files.get(key)
            if old is not None:
                self.files_by_db.get(old[0].get("database_id"), set()).discard(key)
            self.files_by_db.setdefault(entry[0].get("database_id"), set()).add(key)
        self.table(kind)[key] = entry
        self.deleted.pop((kind, key), None)
        return True

    def remove(self, kind: str, key: Any, rev: int) -> bool:
        if self.rev_of(kind, key) >= rev:
            return False
        old = self.table(kind).pop(key, None)
        if kind == "file" and old is not None:
            self.files_by_db.get(old[0].get("database_id"), set()).discard(key)
        self.deleted[(kind, key)] = rev
        return old is not None


def _row_entry(kind: str, row: Any) -> tuple[Any, tuple[Any, ...]]:
    """(cache key, cache entry) of a fetched row."""
    if kind == "config":
        return row.key, (row.value, row.version, row.rev)
    if kind == "provider":
        return (row.scope, row.name), (row.payload, row.version, row.rev)
    if kind == "kb":
        return row.db_id, (KbEntry(row.kb_type, row.payload, row.global_payload), row.version, row.rev)
    if kind == "file":
        return row.file_id, (row.payload, row.kb_type, row.version, row.rev)
    if kind == "task":
        return row.task_id, (row.payload, row.position, row.version, row.rev)
    return row.name, (row.payload, row.version, row.rev)


_SELECT = {
    "config": "SELECT key, value, version, rev FROM system_config",
    "provider": "SELECT scope, name, payload, version, rev FROM model_providers",
    "kb": "SELECT db_id, kb_type, payload, global_payload, version, rev FROM knowledge_bases",
    "file": "SELECT file_id, kb_type, payload, version, rev FROM kb_files",
    "task": "SELECT task_id, position, payload, version, rev FROM tasks",
    "doc": "SELECT name, payload, version, rev FROM documents",
}


def _change_key(kind: str, key: Any) -> str:
    if kind == "config":
        return str(key)
    if kind == "provider":
        return provider_key(*key)
    return f"{kind}:{key}"


class DatabaseConfig(DistributedConfig):
    def __init__(self, settings: Settings, *, start_listener: bool = True) -> None:
        super().__init__(settings)
        assert settings.database_url
        self.url = settings.database_url
        self.engine = make_engine(self.url, settings.connect_timeout_s)
        self._cache = _Cache()
        self._cache_lock = threading.RLock()
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._first_attempt = threading.Event()  # set when the first load succeeded or failed
        self._stale_since: float | None = time.monotonic()  # stale until the first load
        self._listener_error: str | None = "not loaded yet"
        self._listener: threading.Thread | None = None
        self._check_schema()
        if start_listener:
            self._listener = threading.Thread(
                target=self._listen_forever, name="yuxi-state-listener", daemon=True
            )
            self._listener.start()
            # Fail fast on an error, but let a large first load (100k files) take its time.
            self._first_attempt.wait(settings.connect_timeout_s + 600)
            if not self._ready.is_set():
                reason = self._listener_error
                self.close()
                raise StateUnavailableError(
                    f"database {describe_database_url(self.url)}: initial load failed: {reason}"
                )

    # --- plumbing -----------------------------------------------------------------
    def _check_schema(self) -> None:
        try:
            current = migrations.current_revision(self.engine)
        except (SQLAlchemyError, OSError) as exc:
            self.engine.dispose()
            raise unavailable(self.url, exc) from exc
        status = migrations.schema_status(current)
        if status == "ahead":
            head = migrations.head_revision()
            log.warning(
                "database schema %s is newer than this code's %s; assuming additive changes", current, head
            )
        elif status != "head":
            self.engine.dispose()
            raise StateUnavailableError(
                f"database {describe_database_url(self.url)} schema is at {current or 'nothing'}, "
                f"this version needs {migrations.head_revision()}: run `yuxi-k8s db upgrade`"
            )

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            # A deadlock or serialization failure is an OperationalError too, but the server is
            # fine: let it through as it is (retryable) rather than call the database unavailable.
            retryable = isinstance(exc.orig, psycopg.errors.TransactionRollback)
            if exc.connection_invalidated or (
                isinstance(exc.orig, psycopg.OperationalError) and not retryable
            ):
                raise unavailable(self.url, exc) from exc
            raise
        except (OSError, SATimeoutError) as exc:  # SATimeoutError: no pooled connection came free
            raise unavailable(self.url, exc) from exc

    def _fresh(self) -> None:
        """Raise when the cache can no longer be trusted (change feed lost past the grace)."""
        since = self._stale_since
        if since is None:
            return
        if not self._ready.is_set() or time.monotonic() - since > self.settings.stale_read_grace_s:
            raise StateUnavailableError(
                f"database {describe_database_url(self.url)} unreachable "
                f"({self._listener_error}); cached state is no longer trusted"
            )

    def _notify(self, conn: Connection, kind: str, key: Any, rev: int, op: str = "put") -> None:
        body = json.dumps({"k": kind, "id": key, "rev": rev, "op": op, "src": self.settings.instance_id})
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": body})

    def _write(
        self,
        conn: Connection,
        kind: str,
        pk: dict[str, Any],
        cols: dict[str, Any],
        expected: int | None,
        *,
        insert_only: dict[str, Any] | None = None,
    ) -> tuple[int, int]:
        """Insert or update one row with the version rule; returns (version, rev) and notifies."""
        table = TABLE_NAMES[kind]
        stamp = "updated_at = now()"
        params = {**{k: _param(k, v) for k, v in cols.items()}, **pk, **(insert_only or {})}
        where_pk = " AND ".join(f"{c} = :{c}" for c in pk)
        if expected is None or expected == 0:
            names = [*pk, *cols, *(insert_only or {})]
            values = ", ".join(f":{n}" for n in names)
            if expected == 0:
                on_conflict = "DO NOTHING"
            else:
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
                on_conflict = (
                    f"DO UPDATE SET {sets}, version = {table}.version + 1, rev = EXCLUDED.rev, {stamp}"
                )
            sql = (
                f"INSERT INTO {table} ({', '.join(names)}, version, rev) "
                f"VALUES ({values}, 1, nextval('state_rev_seq')) "
                f"ON CONFLICT ({', '.join(pk)}) {on_conflict} RETURNING version, rev"
            )
        else:
            sets = ", ".join(f"{c} = :{c}" for c in cols)
            sql = (
                f"UPDATE {table} SET {sets}, version = version + 1, rev = nextval('state_rev_seq'), {stamp} "
                f"WHERE {where_pk} AND version = :expected RETURNING version, rev"
            )
            params["expected"] = expected
        row = conn.execute(text(sql), params).first()
        key = tuple(pk.values()) if len(pk) > 1 else next(iter(pk.values()))
        if row is None:
            actual = conn.execute(text(f"SELECT version FROM {table} WHERE {where_pk}"), pk).scalar()
            raise ConflictError(_change_key(kind, key), expected, actual)
        self._notify(conn, kind, key, row.rev)
        return row.version, row.rev

    def _remove(self, conn: Connection, kind: str, pk: dict[str, Any], expected: int | None) -> int | None:
        """Delete one row; returns the tombstone rev, or None when there was nothing to delete."""
        table = TABLE_NAMES[kind]
        where_pk = " AND ".join(f"{c} = :{c}" for c in pk)
        key = tuple(pk.values()) if len(pk) > 1 else next(iter(pk.values()))
        if expected is not None:
            actual = conn.execute(
                text(f"SELECT version FROM {table} WHERE {where_pk} FOR UPDATE"), pk
            ).scalar()
            if actual != expected:
                raise ConflictError(_change_key(kind, key), expected, actual)
        deleted = conn.execute(text(f"DELETE FROM {table} WHERE {where_pk} RETURNING version"), pk).first()
        if deleted is None:
            return None
        rev = int(conn.execute(text("SELECT nextval('state_rev_seq')")).scalar_one())
        self._notify(conn, kind, key, rev, op="delete")
        return rev

    def _check_fence(self, conn: Connection, fence: tuple[str, int] | None) -> None:
        if fence is None:
            return
        resource, token = fence
        ok = conn.execute(
            text(
                "INSERT INTO fencing_tokens (resource, token) VALUES (:r, :t) "
                "ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now() "
                "WHERE fencing_tokens.token <= EXCLUDED.token "
                "RETURNING token"
            ),
            {"r": resource, "t": token},
        ).first()
        if ok is None:
            raise FencingError(
                f"fencing token {token} for {resource} is stale: a newer lock holder wrote first"
            )

    # --- config keys ----------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        if self._stale_since is not None:
            self._fresh()
        entry = self._cache.config.get(key, _MISSING)
        if entry is _MISSING:
            if key == "model_names":
                return self.list_providers("model_names")
            return default
        return _copy(entry[0])  # type: ignore[index]

    def get_versioned(self, key: str) -> Versioned | None:
        self._fresh()
        if key == "model_names":
            return Versioned(self.list_providers("model_names"), 0)
        entry = self._cache.config.get(key)
        return None if entry is None else Versioned(_copy(entry[0]), entry[1])

    def items(self) -> dict[str, Any]:
        self._fresh()
        return {k: _copy(v[0]) for k, v in list(self._cache.config.items())}

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
        with self._tx() as conn:
            self._check_fence(conn, fence)
            cols = {"value": value, "updated_by": updated_by}
            version, rev = self._write(conn, "config", {"key": key}, cols, expected_version)
        with self._cache_lock:
            self._cache.put("config", key, (copy.deepcopy(value), version, rev))
        return version

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        check_config_key(key)
        with self._tx() as conn:
            rev = self._remove(conn, "config", {"key": key}, expected_version)
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("config", key, rev)

    # --- providers ------------------------------------------------------------------
    def get_provider_versioned(self, name: str, *, scope: str = "model_names") -> Versioned | None:
        self._fresh()
        entry = self._cache.providers.get((check_scope(scope), name))
        return None if entry is None else Versioned(copy.deepcopy(entry[0]), entry[1])

    def list_providers(self, scope: str = "model_names") -> dict[str, dict[str, Any]]:
        self._fresh()
        check_scope(scope)
        return {n: copy.deepcopy(e[0]) for (s, n), e in sorted(self._cache.providers.items()) if s == scope}

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
        pk = {"scope": check_scope(scope), "name": name}
        with self._tx() as conn:
            version, rev = self._write(
                conn, "provider", pk, {"payload": record, "updated_by": updated_by}, expected_version
            )
        with self._cache_lock:
            self._cache.put("provider", (scope, name), (copy.deepcopy(record), version, rev))
        return version

    def delete_provider(
        self, name: str, *, scope: str = "model_names", expected_version: int | None = None
    ) -> None:
        with self._tx() as conn:
            rev = self._remove(
                conn, "provider", {"scope": check_scope(scope), "name": name}, expected_version
            )
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("provider", (scope, name), rev)

    # --- knowledge bases -------------------------------------------------------------
    def get_kb_versioned(self, db_id: str) -> Versioned | None:
        self._fresh()
        entry = self._cache.kbs.get(db_id)
        return None if entry is None else Versioned(copy.deepcopy(entry[0].merged()), entry[1])

    def list_kbs(self, kb_type: str | None = None) -> dict[str, dict[str, Any]]:
        self._fresh()
        return {
            k: copy.deepcopy(e[0].merged())
            for k, e in list(self._cache.kbs.items())
            if kb_type is None or e[0].kb_type == kb_type
        }

    def put_kb(self, db_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        if not isinstance(record, dict):
            raise ValueError("a knowledge base record is a dict")
        with self._tx() as conn:
            row = conn.execute(
                text(
                    "SELECT kb_type, payload, global_payload FROM knowledge_bases WHERE db_id = :d FOR UPDATE"
                ),
                {"d": db_id},
            ).first()
            previous = KbEntry(row.kb_type, row.payload, row.global_payload) if row else None
            entry = layout.split_kb(record, previous)
            cols = {
                "kb_type": entry.kb_type,
                "name": _text(record.get("name")),
                "payload": entry.payload,
                "global_payload": entry.global_payload,
            }
            version, rev = self._write(conn, "kb", {"db_id": db_id}, cols, expected_version)
        with self._cache_lock:
            self._cache.put("kb", db_id, (copy.deepcopy(entry), version, rev))
        return version

    def delete_kb(
        self, db_id: str, *, expected_version: int | None = None, delete_files: bool = True
    ) -> None:
        with self._tx() as conn:
            rev = self._remove(conn, "kb", {"db_id": db_id}, expected_version)
            gone: list[tuple[str, int]] = []
            if rev is not None and delete_files:
                ids = conn.execute(
                    text("DELETE FROM kb_files WHERE database_id = :d RETURNING file_id"), {"d": db_id}
                )
                for (file_id,) in ids.all():
                    file_rev = int(conn.execute(text("SELECT nextval('state_rev_seq')")).scalar_one())
                    self._notify(conn, "file", file_id, file_rev, op="delete")
                    gone.append((file_id, file_rev))
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("kb", db_id, rev)
                for file_id, file_rev in gone:
                    self._cache.remove("file", file_id, file_rev)

    # --- files ---------------------------------------------------------------------
    def get_file_versioned(self, file_id: str) -> Versioned | None:
        self._fresh()
        entry = self._cache.files.get(file_id)
        return None if entry is None else Versioned(copy.deepcopy(entry[0]), entry[2])

    def list_files(self, db_id: str | None = None) -> dict[str, dict[str, Any]]:
        self._fresh()
        files = self._cache.files
        if db_id is None:
            return {k: copy.deepcopy(e[0]) for k, e in list(files.items())}
        ids = list(self._cache.files_by_db.get(db_id, ()))
        return {k: copy.deepcopy(files[k][0]) for k in ids if k in files}

    def put_file(self, file_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        if not isinstance(record, dict):
            raise ValueError("a file record is a dict")
        db_id = record.get("database_id")
        with self._tx() as conn:
            kb_type = conn.execute(
                text("SELECT kb_type FROM knowledge_bases WHERE db_id = :d"), {"d": db_id}
            ).scalar()
            if kb_type is None:
                kb_type = (
                    record.get("kb_type")
                    or conn.execute(
                        text("SELECT kb_type FROM kb_files WHERE file_id = :f"), {"f": file_id}
                    ).scalar()
                )
            if kb_type is None:
                raise NotFoundError(f"knowledge base {db_id!r} of file {file_id} not found")
            cols = {
                "database_id": _text(db_id),
                "kb_type": kb_type,
                "status": _text(record.get("status")),
                "filename": _text(record.get("filename")),
                "payload": record,
            }
            version, rev = self._write(conn, "file", {"file_id": file_id}, cols, expected_version)
        with self._cache_lock:
            self._cache.put("file", file_id, (copy.deepcopy(record), kb_type, version, rev))
        return version

    def delete_file(self, file_id: str, *, expected_version: int | None = None) -> None:
        with self._tx() as conn:
            rev = self._remove(conn, "file", {"file_id": file_id}, expected_version)
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("file", file_id, rev)

    # --- tasks and documents ------------------------------------------------------------
    def list_tasks(self) -> list[dict[str, Any]]:
        self._fresh()
        entries = sorted(self._cache.tasks.values(), key=lambda e: e[1])
        return [copy.deepcopy(e[0]) for e in entries]

    def put_task(self, task_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int:
        record = {**record, "id": task_id}
        with self._tx() as conn:
            position = conn.execute(text("SELECT coalesce(max(position), 0) + 1 FROM tasks")).scalar_one()
            cols = {"status": _text(record.get("status")), "payload": record}
            version, rev = self._write(
                conn, "task", {"task_id": task_id}, cols, expected_version, insert_only={"position": position}
            )
            position = conn.execute(
                text("SELECT position FROM tasks WHERE task_id = :t"), {"t": task_id}
            ).scalar_one()
        with self._cache_lock:
            self._cache.put("task", task_id, (copy.deepcopy(record), position, version, rev))
        return version

    def get_document(self, name: str) -> Versioned | None:
        _check_document(name)
        self._fresh()
        entry = self._cache.docs.get(name)
        return None if entry is None else Versioned(copy.deepcopy(entry[0]), entry[1])

    def put_document(self, name: str, value: Any, *, expected_version: int | None = None) -> int:
        _check_document(name)
        with self._tx() as conn:
            version, rev = self._write(conn, "doc", {"name": name}, {"payload": value}, expected_version)
        with self._cache_lock:
            self._cache.put("doc", name, (copy.deepcopy(value), version, rev))
        return version

    # --- the change feed -------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._stale_since is None

    def wait_fresh(self, timeout: float = 10.0) -> bool:
        """Wait until the change feed is connected and the cache loaded (tests, readiness)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stale_since is None:
                return True
            time.sleep(0.02)
        return False

    def _listen_forever(self) -> None:
        delay = 0.1
        dsn = libpq_url(self.url)
        started = time.monotonic()
        while not self._closing.is_set():
            try:
                with psycopg.connect(
                    dsn, autocommit=True, connect_timeout=max(1, int(self.settings.connect_timeout_s))
                ) as conn:
                    jsonio.use_for(conn)
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._reload(conn)  # after LISTEN: a change made meanwhile is heard, not lost
                    self._stale_since = None
                    self._listener_error = None
                    self._ready.set()
                    self._first_attempt.set()
                    delay = 0.1
                    self._pump(conn)
            except (psycopg.Error, OSError) as exc:
                if self._closing.is_set():
                    break
                self._listener_error = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                if self._stale_since is None:
                    self._stale_since = time.monotonic()
                    log.warning("state change feed lost (%s); reconnecting", self._listener_error)
                if time.monotonic() - started > self.settings.connect_timeout_s:
                    self._first_attempt.set()  # open() gives up; later losses just keep retrying
                self._closing.wait(delay)
                delay = min(delay * 2, 1.0)
            except Exception as exc:  # a bug: fail closed rather than serve a cache nobody updates
                self._listener_error = f"listener crashed: {exc!r}"
                self._stale_since = self._stale_since or time.monotonic()
                self._first_attempt.set()
                log.exception("state change feed crashed")
                self._closing.wait(1.0)

    def _pump(self, conn: psycopg.Connection) -> None:
        idle_since = time.monotonic()
        while not self._closing.is_set():
            batch = list(conn.notifies(timeout=0.25, stop_after=1))
            if not batch:
                if time.monotonic() - idle_since > 2.0:
                    conn.execute("SELECT 1")  # a heartbeat: notice a dead server within seconds
                    idle_since = time.monotonic()
                continue
            batch += list(conn.notifies(timeout=0.001))  # drain what arrived with it
            self._apply(conn, batch)
            idle_since = time.monotonic()

    def _apply(self, conn: psycopg.Connection, batch: list[Any]) -> None:
        wanted: dict[str, dict[Any, int]] = {}
        sources: dict[tuple[str, Any], str] = {}
        for note in batch:
            try:
                body = json.loads(note.payload)
            except ValueError:
                continue
            kind = body.get("k")
            if kind == "all":
                self._reload(conn, emit=body.get("src") != self.settings.instance_id)
                return
            if kind not in _SELECT:
                continue
            key = tuple(body["id"]) if kind == "provider" else body["id"]
            rev = int(body.get("rev") or 0)
            if self._cache.rev_of(kind, key) >= rev:
                continue  # already applied (our own write, or an older change)
            wanted.setdefault(kind, {})[key] = max(rev, wanted.get(kind, {}).get(key, 0))
            sources[(kind, key)] = body.get("src", "")
        changed: list[str] = []
        for kind, keys in wanted.items():
            rows = self._fetch(conn, kind, list(keys))
            with self._cache_lock:
                for key, entry in rows.items():
                    if (
                        self._cache.put(kind, key, entry)
                        and sources.get((kind, key)) != self.settings.instance_id
                    ):
                        changed.append(_change_key(kind, key))
                for key, rev in keys.items():
                    removed = key not in rows and self._cache.remove(kind, key, rev)
                    if removed and sources.get((kind, key)) != self.settings.instance_id:
                        changed.append(_change_key(kind, key))
        for key in changed:
            self._emit(key)

    def _fetch(self, conn: psycopg.Connection, kind: str, keys: list[Any]) -> dict[Any, tuple[Any, ...]]:
        from psycopg.rows import namedtuple_row

        with conn.cursor(row_factory=namedtuple_row) as cur:
            if kind == "provider":
                scopes = [k[0] for k in keys]
                names = [k[1] for k in keys]
                cur.execute(
                    _SELECT[kind] + " WHERE (scope, name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    (scopes, names),
                )
            else:
                pk = _TABLES[kind][0][0]
                cur.execute(_SELECT[kind] + f" WHERE {pk} = ANY(%s)", (keys,))
            return dict(_row_entry(kind, row) for row in cur.fetchall())

    def _reload(self, conn: psycopg.Connection, emit: bool = True) -> None:
        from psycopg.rows import namedtuple_row

        fresh = _Cache()
        with conn.transaction(), conn.cursor(row_factory=namedtuple_row) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for kind, sql in _SELECT.items():
                cur.execute(sql)
                for row in cur:
                    key, entry = _row_entry(kind, row)
                    fresh.put(kind, key, entry)
        with self._cache_lock:
            old, self._cache = self._cache, fresh
        if emit and self._ready.is_set():
            self._emit_differences(old, fresh)

    def _emit_differences(self, old: _Cache, new: _Cache) -> None:
        for kind in _SELECT:
            before, after = old.table(kind), new.table(kind)
            for key in before.keys() | after.keys():
                a, b = before.get(key), after.get(key)
                if (a and a[-1]) != (b and b[-1]):
                    self._emit(_change_key(kind, key))

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=3)
        self.engine.dispose()
