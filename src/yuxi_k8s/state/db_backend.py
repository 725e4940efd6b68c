"""Database mode: rows in the kit's schema, a local cache, and LISTEN/NOTIFY to keep every replica fresh.

Writes go straight to PostgreSQL with optimistic concurrency (``UPDATE ... WHERE
version = :expected``) and, in the same transaction, ``pg_notify`` naming what
changed and its ``rev`` (from one sequence). A listener thread per replica holds
its own connection, LISTENs, and re-reads each changed row by key; ``rev`` keeps
an older row from overwriting a newer one in the cache. After a lost connection
it reconnects, LISTENs again and reloads everything, so nothing is missed.

Reads come from the cache, which is trusted only while the change feed is known
alive: the listener proves it with a round trip (``SELECT 1``) every
``heartbeat_s`` when nothing arrives, and reads raise StateUnavailableError once
the last proof is older than ``stale_read_grace_s`` (5 s by default). That holds
whatever stalls the feed: a dropped connection, a server restart, or a hung
backend that keeps the TCP connection open (TCP keepalives and
``tcp_user_timeout`` end such a connection eventually; the bound on stale reads
does not wait for that). Never empty data, never an unbounded stale view.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from .. import migrations
from .config import RELOAD, DistributedConfig, StateView, Versioned, check_config_key, provider_key
from .errors import ConflictError, FencingError, StateError, StateUnavailableError, error_line
from .models import CHANGE_SEQUENCE, NOTIFY_CHANNEL, SCHEMA
from .settings import Settings, describe_database_url, libpq_url
from .values import dumps

log = logging.getLogger(__name__)

CONFIG_TABLE = f"{SCHEMA}.config_entries"
PROVIDER_TABLE = f"{SCHEMA}.config_providers"
FENCING_TABLE = f"{SCHEMA}.fencing_tokens"
# libpq options that end a connection whose peer went silent, for the listener and the pool.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "tcp_user_timeout": 15000}  # fmt: skip

# application_name of every listener connection (followed by the replica's instance id).
LISTENER_APPLICATION = "yuxi-k8s listener"

_IMMUTABLE = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def unavailable(url: str, exc: BaseException) -> StateUnavailableError:
    return StateUnavailableError(f"database {describe_database_url(url)} unavailable: {error_line(exc)}")


def make_engine(url: str, connect_timeout_s: float = 5.0, **kwargs: Any) -> Any:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=kwargs.pop("pool_size", 5),
        max_overflow=kwargs.pop("max_overflow", 5),
        connect_args={"connect_timeout": max(1, int(connect_timeout_s)), **KEEPALIVES},
        json_serializer=dumps,
        **kwargs,
    )


class _Cache:
    """Every row, by key, with (value, version, rev); deleted keys keep their tombstone rev."""

    def __init__(self) -> None:
        self.config: dict[str, tuple[Any, int, int]] = {}
        self.providers: dict[tuple[str, str], tuple[dict[str, Any], int, int]] = {}
        self.deleted: dict[tuple[str, Any], int] = {}

    def table(self, kind: str) -> dict[Any, Any]:
        return self.config if kind == "config" else self.providers

    def rev_of(self, kind: str, key: Any) -> int:
        entry = self.table(kind).get(key)
        return entry[2] if entry is not None else self.deleted.get((kind, key), 0)

    def put(self, kind: str, key: Any, entry: tuple[Any, int, int]) -> bool:
        if self.rev_of(kind, key) >= entry[2]:
            return False
        self.table(kind)[key] = entry
        self.deleted.pop((kind, key), None)
        return True

    def remove(self, kind: str, key: Any, rev: int) -> bool:
        if self.rev_of(kind, key) >= rev:
            return False
        old = self.table(kind).pop(key, None)
        self.deleted[(kind, key)] = rev
        return old is not None


def _change_key(kind: str, key: Any) -> str:
    return str(key) if kind == "config" else provider_key(*key)


_SELECT = {
    "config": f"SELECT key, value, version, rev FROM {CONFIG_TABLE}",
    "provider": f"SELECT scope, name, payload, version, rev FROM {PROVIDER_TABLE}",
}


class DatabaseConfig(DistributedConfig):
    def __init__(self, settings: Settings, *, start_listener: bool = True) -> None:
        super().__init__(settings)
        if not settings.database_url:
            raise StateError("database mode needs a database URL")
        self.url = settings.database_url
        # Names this object's writes in the change feed, so it does not announce them to itself.
        # Per object, not per Settings: two stores opened from one Settings are two replicas.
        self.replica_id = f"{settings.instance_id}/{uuid.uuid4().hex[:6]}"
        self.engine = make_engine(self.url, settings.connect_timeout_s)
        self._cache = _Cache()
        self._cache_lock = threading.RLock()
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._first_attempt = threading.Event()  # set when the first load succeeded or failed
        self._last_alive: float | None = None  # monotonic time of the last proof the feed is alive
        self._listener_error: str | None = "not loaded yet"
        self._listener: threading.Thread | None = None
        self._seen_seq = 0  # the change counter when the cache was last reloaded by catch_up()
        self._check_schema()
        if start_listener:
            self._listener = threading.Thread(
                target=self._listen_forever, name="yuxi-state-listener", daemon=True
            )
            self._listener.start()
            self._first_attempt.wait(settings.connect_timeout_s + 60)
            if not self._ready.is_set():
                reason = self._listener_error
                self.close()
                raise StateUnavailableError(
                    f"database {describe_database_url(self.url)}: initial load failed: {reason}"
                )

    # --- plumbing -----------------------------------------------------------------
    def _check_schema(self) -> None:
        where = f"database {describe_database_url(self.url)}"
        try:
            with self.engine.connect() as conn:
                migrations.require_head(conn, where)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise unavailable(self.url, exc) from None
        except StateError:
            self.engine.dispose()
            raise

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
                raise unavailable(self.url, exc) from None
            raise StateError(f"database {describe_database_url(self.url)}: {error_line(exc)}") from None
        except (OSError, SATimeoutError) as exc:  # SATimeoutError: no pooled connection came free
            raise unavailable(self.url, exc) from None

    def _fresh(self) -> None:
        """Raise when the cache can no longer be trusted (change feed not proven alive recently)."""
        alive = self._last_alive
        if alive is None or time.monotonic() - alive > self.settings.stale_read_grace_s:
            raise StateUnavailableError(
                f"database {describe_database_url(self.url)}: change feed not alive "
                f"({self._listener_error or 'no answer to the heartbeat'}); cached state is no longer trusted"
            )

    def _notify(self, conn: Connection, kind: str, key: Any, rev: int, op: str = "put") -> None:
        body = json.dumps({"k": kind, "id": key, "rev": rev, "op": op, "src": self.replica_id})
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": body})

    def _write(
        self, conn: Connection, kind: str, pk: dict[str, Any], cols: dict[str, Any], expected: int | None
    ) -> tuple[int, int]:
        """Insert or update one row with the version rule; returns (version, rev) and notifies."""
        table = CONFIG_TABLE if kind == "config" else PROVIDER_TABLE
        params = {**{k: Jsonb(v, dumps) if k in ("value", "payload") else v for k, v in cols.items()}, **pk}
        where_pk = " AND ".join(f"{c} = :{c}" for c in pk)
        if expected is None or expected == 0:
            names = [*pk, *cols]
            if expected == 0:
                on_conflict = "DO NOTHING"
            else:
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
                on_conflict = (
                    f"DO UPDATE SET {sets}, version = {table}.version + 1, rev = EXCLUDED.rev, "
                    "updated_at = now()"
                )
            sql = (
                f"INSERT INTO {table} ({', '.join(names)}, version, rev) "
                f"VALUES ({', '.join(':' + n for n in names)}, 1, nextval('{CHANGE_SEQUENCE}')) "
                f"ON CONFLICT ({', '.join(pk)}) {on_conflict} RETURNING version, rev"
            )
        else:
            sets = ", ".join(f"{c} = :{c}" for c in cols)
            sql = (
                f"UPDATE {table} SET {sets}, version = version + 1, rev = nextval('{CHANGE_SEQUENCE}'), "
                f"updated_at = now() WHERE {where_pk} AND version = :expected RETURNING version, rev"
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
        table = CONFIG_TABLE if kind == "config" else PROVIDER_TABLE
        where_pk = " AND ".join(f"{c} = :{c}" for c in pk)
        key = tuple(pk.values()) if len(pk) > 1 else next(iter(pk.values()))
        if expected is not None:
            actual = conn.execute(
                text(f"SELECT version FROM {table} WHERE {where_pk} FOR UPDATE"), pk
            ).scalar()
            if actual != expected and not (expected == 0 and actual is None):
                raise ConflictError(_change_key(kind, key), expected, actual)
        deleted = conn.execute(text(f"DELETE FROM {table} WHERE {where_pk} RETURNING version"), pk).first()
        if deleted is None:
            return None
        rev = int(conn.execute(text(f"SELECT nextval('{CHANGE_SEQUENCE}')")).scalar_one())
        self._notify(conn, kind, key, rev, op="delete")
        return rev

    def _check_fence(self, conn: Connection, fence: tuple[str, int] | None) -> None:
        if fence is None:
            return
        resource, token = fence
        ok = conn.execute(
            text(
                f"INSERT INTO {FENCING_TABLE} (resource, token) VALUES (:r, :t) "
                "ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now() "
                f"WHERE {FENCING_TABLE}.token <= EXCLUDED.token RETURNING token"
            ),
            {"r": resource, "t": token},
        ).first()
        if ok is None:
            raise FencingError(
                f"fencing token {token} for {resource} is stale: a newer lock holder wrote first"
            )

    # --- reads ---------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        self._fresh()
        # The hot path: a key in the cache was checked when it was written.
        entry = self._cache.config.get(key) if type(key) is str else None
        if entry is None:
            check_config_key(key)  # absent, or not a key at all: refuse what set() would refuse
            return default
        return _copy(entry[0])

    def _get_versioned(self, key: str) -> Versioned | None:
        self._fresh()
        entry = self._cache.config.get(key)
        return None if entry is None else Versioned(_copy(entry[0]), entry[1])

    def snapshot(self) -> StateView:
        self._fresh()
        with self._cache_lock:
            return StateView(
                config={k: Versioned(_copy(e[0]), e[1]) for k, e in self._cache.config.items()},
                providers={k: Versioned(copy.deepcopy(e[0]), e[1]) for k, e in self._cache.providers.items()},
            )

    # --- writes --------------------------------------------------------------------
    def _set(
        self,
        key: str,
        value: Any,
        expected: int | None,
        updated_by: str | None,
        fence: tuple[str, int] | None,
    ) -> int:
        with self._tx() as conn:
            self._check_fence(conn, fence)
            version, rev = self._write(
                conn, "config", {"key": key}, {"value": value, "updated_by": updated_by}, expected
            )
        with self._cache_lock:
            self._cache.put("config", key, (copy.deepcopy(value), version, rev))
        return version

    def _set_many(self, items: dict[str, Any], updated_by: str | None) -> dict[str, int]:
        written: dict[str, tuple[int, int]] = {}
        with self._tx() as conn:
            for key, value in items.items():
                written[key] = self._write(
                    conn, "config", {"key": key}, {"value": value, "updated_by": updated_by}, None
                )
        with self._cache_lock:
            for key, (version, rev) in written.items():
                self._cache.put("config", key, (copy.deepcopy(items[key]), version, rev))
        return {key: version for key, (version, _) in written.items()}

    def _delete(self, key: str, expected: int | None) -> None:
        with self._tx() as conn:
            rev = self._remove(conn, "config", {"key": key}, expected)
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("config", key, rev)

    def _put_provider(
        self, scope: str, name: str, record: dict[str, Any], expected: int | None, updated_by: str | None
    ) -> int:
        pk = {"scope": scope, "name": name}
        with self._tx() as conn:
            version, rev = self._write(
                conn, "provider", pk, {"payload": record, "updated_by": updated_by}, expected
            )
        with self._cache_lock:
            self._cache.put("provider", (scope, name), (copy.deepcopy(record), version, rev))
        return version

    def _delete_provider(self, scope: str, name: str, expected: int | None) -> None:
        with self._tx() as conn:
            rev = self._remove(conn, "provider", {"scope": scope, "name": name}, expected)
        if rev is not None:
            with self._cache_lock:
                self._cache.remove("provider", (scope, name), rev)

    # --- the change feed -------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        alive = self._last_alive
        return alive is not None and time.monotonic() - alive <= 2.5 * self.settings.heartbeat_s

    def catch_up(self) -> bool:
        """Read your writes across replicas: make the cache hold every change committed before
        this call started, without waiting for the change feed (one round trip when nothing is
        new; a reload when the database's change counter moved past what this cache has seen).
        Returns whether the cache was reloaded."""
        with self._tx() as conn:
            last = int(conn.execute(text(f"SELECT last_value FROM {CHANGE_SEQUENCE}")).scalar_one())
        if last <= self._seen_seq:
            return False
        try:
            with psycopg.connect(libpq_url(self.url), autocommit=True, **KEEPALIVES) as conn:  # type: ignore[arg-type]
                self._reload(conn)
        except psycopg.Error as exc:
            raise unavailable(self.url, exc) from None
        self._seen_seq = max(self._seen_seq, last)
        return True

    def wait_fresh(self, timeout: float = 10.0) -> bool:
        """Wait until the change feed is connected, proven alive and the cache loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy:
                return True
            self._closing.wait(0.02)
        return False

    def _connect_listener(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            libpq_url(self.url),
            autocommit=True,
            connect_timeout=max(1, int(self.settings.connect_timeout_s)),
            # Named, so an operator (or a test) finds each replica's listener in pg_stat_activity.
            application_name=f"{LISTENER_APPLICATION} {self.replica_id}"[:63],
            **KEEPALIVES,  # type: ignore[arg-type]
        )

    def _listen_forever(self) -> None:
        delay = 0.1
        started = time.monotonic()
        while not self._closing.is_set():
            try:
                with self._connect_listener() as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._reload(conn)  # after LISTEN: a change made meanwhile is heard, not lost
                    self._alive()
                    self._listener_error = None
                    self._ready.set()
                    self._first_attempt.set()
                    delay = 0.1
                    self._pump(conn)
            except (psycopg.Error, OSError) as exc:
                if self._closing.is_set():
                    break
                self._listener_error = error_line(exc)
                log.warning("state change feed lost (%s); reconnecting", self._listener_error)
                if time.monotonic() - started > self.settings.connect_timeout_s:
                    self._first_attempt.set()  # open() gives up; later losses just keep retrying
                self._closing.wait(delay)
                delay = min(delay * 2, 1.0)
            except Exception as exc:  # a bug: fail closed rather than serve a cache nobody updates
                self._listener_error = f"listener crashed: {exc!r}"
                self._first_attempt.set()
                log.exception("state change feed crashed")
                self._closing.wait(1.0)

    def _alive(self) -> None:
        self._last_alive = time.monotonic()

    def _pump(self, conn: psycopg.Connection[Any]) -> None:
        last_proof = time.monotonic()
        while not self._closing.is_set():
            batch = list(conn.notifies(timeout=0.25, stop_after=1))
            if batch:
                batch += list(conn.notifies(timeout=0.001))  # drain what arrived with it
                self._apply(conn, batch)
            elif time.monotonic() - last_proof < self.settings.heartbeat_s:
                continue
            else:
                conn.execute("SELECT 1")  # a round trip: the server answers, the feed is alive
            last_proof = time.monotonic()
            self._alive()

    def _apply(self, conn: psycopg.Connection[Any], batch: list[Any]) -> None:
        wanted: dict[str, dict[Any, int]] = {}
        sources: dict[tuple[str, Any], str] = {}
        for note in batch:
            try:
                body = json.loads(note.payload)
            except ValueError:
                continue
            kind = body.get("k")
            if kind == "all":
                self._reload(conn, emit=body.get("src") != self.replica_id)
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
                    if self._cache.put(kind, key, entry) and sources.get((kind, key)) != self.replica_id:
                        changed.append(_change_key(kind, key))
                for key, rev in keys.items():
                    removed = key not in rows and self._cache.remove(kind, key, rev)
                    if removed and sources.get((kind, key)) != self.replica_id:
                        changed.append(_change_key(kind, key))
        for key in changed:
            self._emit(key)

    @staticmethod
    def _rows(cur: Any, kind: str) -> dict[Any, tuple[Any, int, int]]:
        out: dict[Any, tuple[Any, int, int]] = {}
        for row in cur.fetchall():
            if kind == "config":
                out[row[0]] = (row[1], row[2], row[3])
            else:
                out[(row[0], row[1])] = (row[2], row[3], row[4])
        return out

    def _fetch(
        self, conn: psycopg.Connection[Any], kind: str, keys: list[Any]
    ) -> dict[Any, tuple[Any, int, int]]:
        with conn.cursor() as cur:
            if kind == "provider":
                cur.execute(
                    _SELECT[kind] + " WHERE (scope, name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([k[0] for k in keys], [k[1] for k in keys]),
                )
            else:
                cur.execute(_SELECT[kind] + " WHERE key = ANY(%s)", (keys,))
            return self._rows(cur, kind)

    def _reload(self, conn: psycopg.Connection[Any], emit: bool = True) -> None:
        fresh = _Cache()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for kind, sql in _SELECT.items():
                cur.execute(sql)
                for key, entry in self._rows(cur, kind).items():
                    fresh.put(kind, key, entry)
        with self._cache_lock:
            old, self._cache = self._cache, fresh
        if emit and self._ready.is_set():
            self._emit_differences(old, fresh)

    def _emit_differences(self, old: _Cache, new: _Cache) -> None:
        changed = 0
        for kind in _SELECT:
            before, after = old.table(kind), new.table(kind)
            for key in before.keys() | after.keys():
                a, b = before.get(key), after.get(key)
                if (a and a[2]) != (b and b[2]):
                    self._emit(_change_key(kind, key))
                    changed += 1
        if changed:
            self._emit(RELOAD)

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=3)
        self.engine.dispose()
        super().close()


__all__ = ["LISTENER_APPLICATION", "DatabaseConfig", "make_engine", "unavailable"]
