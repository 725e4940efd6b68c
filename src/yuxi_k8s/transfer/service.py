"""migrate-config, export-config and diff, as functions (the CLI and the benchmarks call them).

migrate-config runs in ONE transaction under a PostgreSQL advisory lock: parse
both settings files first (a malformed one, or a value the application cannot
use, stops it before anything is written), compare with the database, write
only what differs, read it back and compare, notify every replica to reload,
then commit. Killed at any point, it leaves the database as it was.

Sync points: every import and export records a digest of the files' content.
The migrate Job runs on every rollout; when saves/ still holds a tree the
database was already in sync with, it imports nothing, so edits made since in
database mode are kept (``--force`` re-imports anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .. import migrations
from ..state.app_settings import check_provider, check_setting
from ..state.errors import InvalidValueError, StateError, error_line
from ..state.models import CHANGE_SEQUENCE, NOTIFY_CHANNEL, SCHEMA
from ..state.saves import BASE_TOML, MANAGED_FILES, PROVIDER_FILES, Snapshot, read_saves, write_saves
from ..state.settings import describe_database_url, libpq_url
from ..state.values import canonical, dumps
from .plan import Plan, Rows, make_plan, rows_snapshot, snapshot_rows

MIGRATE_LOCK_KEY = "yuxi-k8s:migrate-config"
# Test hook: seconds to sleep after verifying and before COMMIT (the kill-midway test).
PAUSE_ENV = "YUXI_K8S_TEST_PAUSE_BEFORE_COMMIT"
CONFIG = f"{SCHEMA}.config_entries"
PROVIDERS = f"{SCHEMA}.config_providers"
SYNC_POINTS = f"{SCHEMA}.sync_points"


class TransferError(Exception):
    """One line for the user; nothing was written (unless the message says what was)."""


@dataclass
class SyncPoint:
    digest: str
    rev: int
    direction: str
    synced_at: datetime


@dataclass
class MigrateResult:
    plan: Plan
    committed: bool
    seconds: float
    empty_source: bool = False
    unchanged_since: SyncPoint | None = None


def connect(url: str, timeout_s: float = 5.0) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(libpq_url(url), connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as exc:
        raise TransferError(f"database {describe_database_url(url)}: {error_line(exc)}") from None


def require_head(conn: psycopg.Connection[Any], url: str) -> None:
    try:
        with conn.transaction():
            migrations.require_head(conn, f"database {describe_database_url(url)}")
    except StateError as exc:
        raise TransferError(str(exc)) from None
    except psycopg.Error as exc:
        raise TransferError(f"database {describe_database_url(url)}: {error_line(exc)}") from None


def read_tree(saves_dir: Path) -> Snapshot:
    try:
        snap = read_saves(saves_dir)
    except StateError as exc:
        raise TransferError(str(exc)) from None
    if snap.empty and (saves_dir / "saves" / BASE_TOML).is_file():
        raise TransferError(f"{saves_dir}: no Yuxi-Know settings here; did you mean {saves_dir / 'saves'}?")
    return snap


def check_usable(saves_dir: Path, rows: Rows) -> None:
    """Every row the application can use (:mod:`..state.app_settings`): a setting of another
    type would stop every replica at start, a provider's ``env`` naming another variable would
    send that variable to the provider's server. The first one found stops the import."""
    where = BASE_TOML
    try:
        for key, value in rows["config"].items():
            check_setting(key, value)
        for (scope, name), record in rows["provider"].items():
            where = PROVIDER_FILES[scope]
            check_provider(scope, name, record)
    except InvalidValueError as exc:
        raise TransferError(f"{saves_dir / where}: {exc}; nothing written") from None


def read_rows(conn: psycopg.Connection[Any]) -> Rows:
    config = dict(conn.execute(f"SELECT key, value FROM {CONFIG}").fetchall())
    providers = {
        (s, n): p for s, n, p in conn.execute(f"SELECT scope, name, payload FROM {PROVIDERS}").fetchall()
    }
    return {"config": config, "provider": providers}


def digest_rows(rows: Rows) -> str:
    """A digest of the content (not of the file bytes: formatting does not count)."""
    body = {
        "config": sorted((k, canonical(v).decode()) for k, v in rows["config"].items()),
        "provider": sorted((list(k), canonical(v).decode()) for k, v in rows["provider"].items()),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def current_rev(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"SELECT last_value, is_called FROM {CHANGE_SEQUENCE}").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def read_sync(conn: psycopg.Connection[Any], digest: str | None = None) -> SyncPoint | None:
    params: tuple[str, ...] = ()
    if digest is None:
        sql = f"SELECT * FROM {SYNC_POINTS} ORDER BY synced_at DESC LIMIT 1"
    else:
        sql, params = f"SELECT * FROM {SYNC_POINTS} WHERE digest = %s", (digest,)
    row = conn.execute(sql, params).fetchone()
    return None if row is None else SyncPoint(row[0], int(row[1]), row[2], row[3])


@dataclass(frozen=True)
class Unsynced:
    """The store holds changes made after the settings files were last in sync with it."""

    rev: int
    last_sync: SyncPoint | None

    def describe(self) -> str:
        if self.last_sync is None:
            return f"the kit's store is at change {self.rev} and was never exported to the files"
        last = self.last_sync
        return (
            f"the kit's store is at change {self.rev}, the files were last in sync at change "
            f"{last.rev} ({last.direction} at {last.synced_at:%Y-%m-%d %H:%M:%S %Z})"
        )


def unsynced_changes(url: str) -> Unsynced | None:
    """What a replica starting in file mode would miss: changes to the store after the last import
    or export; None when the files hold everything (or the kit's schema is not there at all)."""
    with connect(url) as conn:
        try:
            if migrations.read_revision(conn) is None:
                return None  # file mode from the start: no store to lose
            rev, last = current_rev(conn), read_sync(conn)
        except psycopg.Error as exc:
            raise TransferError(f"database {describe_database_url(url)}: {error_line(exc)}") from None
    if rev > (last.rev if last is not None else 0):
        return Unsynced(rev, last)
    return None


def record_sync(conn: psycopg.Connection[Any], digest: str, rev: int, direction: str) -> None:
    conn.execute(
        f"INSERT INTO {SYNC_POINTS} (digest, rev, direction) VALUES (%s, %s, %s) "
        "ON CONFLICT (digest) DO UPDATE SET rev = EXCLUDED.rev, direction = EXCLUDED.direction, "
        "synced_at = now()",
        (digest, rev, direction),
    )


def _advisory_lock(conn: psycopg.Connection[Any], wait_s: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + wait_s
    told = False
    while not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (MIGRATE_LOCK_KEY,)).fetchone()[
        0
    ]:  # type: ignore[index]
        if time.monotonic() >= deadline:
            raise TransferError(f"another migrate-config holds the lock; gave up after {wait_s:g}s")
        if not told:
            say("waiting for another migrate-config to finish ...")
            told = True
        time.sleep(0.2)


def apply_plan(conn: psycopg.Connection[Any], plan: Plan) -> None:
    """Write the plan: one batch per statement (psycopg pipelines executemany: no round trip per row)."""
    bump = f"version = version + 1, rev = nextval('{CHANGE_SEQUENCE}'), updated_at = now(), updated_by = %s"
    by = "migrate-config"
    config, providers = plan.kinds["config"], plan.kinds["provider"]
    batches: list[tuple[str, list[tuple[Any, ...]]]] = [
        (
            f"INSERT INTO {CONFIG} (key, value, updated_by) VALUES (%s, %s, %s)",
            [(k, Jsonb(v, dumps), by) for k, v in config.insert.items()],
        ),
        (
            f"UPDATE {CONFIG} SET value = %s, {bump} WHERE key = %s",
            [(Jsonb(v, dumps), by, k) for k, v in config.update.items()],
        ),
        (
            f"INSERT INTO {PROVIDERS} (scope, name, payload, updated_by) VALUES (%s, %s, %s, %s)",
            [(s, n, Jsonb(r, dumps), by) for (s, n), r in providers.insert.items()],
        ),
        (
            f"UPDATE {PROVIDERS} SET payload = %s, {bump} WHERE scope = %s AND name = %s",
            [(Jsonb(r, dumps), by, s, n) for (s, n), r in providers.update.items()],
        ),
    ]
    with conn.cursor() as cur:
        for sql, rows in batches:
            if rows:
                cur.executemany(sql, rows)


def verify(conn: psycopg.Connection[Any], wanted: Rows) -> None:
    """Read back what was written; any row that does not equal its file stops the import."""
    current = read_rows(conn)
    for kind, rows in wanted.items():
        for key, value in rows.items():
            if canonical(current[kind].get(key)) != canonical(value):
                raise TransferError(
                    f"verification failed for {kind} {key}: the database holds something else"
                )


class _Rollback(Exception):
    """Leave the transaction, rolling back: nothing was written."""

    def __init__(self, plan: Plan, unchanged_since: SyncPoint | None = None) -> None:
        super().__init__("rollback")
        self.plan = plan
        self.unchanged_since = unchanged_since


def migrate(
    saves_dir: Path,
    url: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    lock_wait_s: float = 300.0,
    say: Callable[[str], None] = lambda _: None,
) -> MigrateResult:
    started = time.monotonic()
    snap = read_tree(saves_dir)
    wanted = snapshot_rows(snap)
    check_usable(saves_dir, wanted)
    digest = digest_rows(wanted)
    with connect(url) as conn:
        require_head(conn, url)
        try:
            with conn.transaction():
                _advisory_lock(conn, lock_wait_s, say)
                sync = None if force else read_sync(conn, digest)
                if sync is not None and not snap.empty:
                    raise _Rollback(make_plan({}, {}), unchanged_since=sync)
                plan = make_plan(wanted, read_rows(conn))
                if dry_run or snap.empty:
                    raise _Rollback(plan)  # nothing to write: leave without changes
                if not plan.empty:
                    latest = read_sync(conn)
                    if latest is not None and current_rev(conn) > latest.rev:
                        say(
                            f"warning: the database changed since the last sync ({latest.direction} at "
                            f"{latest.synced_at:%Y-%m-%d %H:%M:%S %Z}) and so did the files; the files win "
                            f"for the {sum(len(p.update) for p in plan.kinds.values())} entries they define "
                            "differently"
                        )
                    apply_plan(conn, plan)
                    verify(conn, wanted)
                    conn.execute(
                        "SELECT pg_notify(%s, %s)",
                        (NOTIFY_CHANNEL, json.dumps({"k": "all", "src": "migrate-config"})),
                    )
                record_sync(conn, digest, current_rev(conn), "import")
                pause = float(os.environ.get(PAUSE_ENV) or 0)
                if pause:
                    print(f"{PAUSE_ENV}: pausing {pause:g}s before commit", file=sys.stderr, flush=True)
                    time.sleep(pause)
        except _Rollback as rb:
            return MigrateResult(
                rb.plan,
                False,
                time.monotonic() - started,
                empty_source=snap.empty,
                unchanged_since=rb.unchanged_since,
            )
        except psycopg.Error as exc:
            raise TransferError(
                f"database {describe_database_url(url)}: {error_line(exc)}; nothing written"
            ) from None
    return MigrateResult(plan, not plan.empty, time.monotonic() - started)


def read_database_at(url: str) -> tuple[Rows, int]:
    """Every row in one consistent snapshot, and the change sequence's value when read."""
    with connect(url) as conn:
        require_head(conn, url)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return read_rows(conn), current_rev(conn)
        except psycopg.Error as exc:
            raise TransferError(f"database {describe_database_url(url)}: {error_line(exc)}") from None


def export(saves_dir: Path, url: str) -> list[str]:
    """Write the database as the application's settings files (all or none), then record the sync
    point: files and database are equal now, so the next migrate-config skips them unless edited."""
    rows, rev = read_database_at(url)
    if not rows["config"] and not rows["provider"]:
        raise TransferError(f"database {describe_database_url(url)} holds no settings; nothing to export")
    if not saves_dir.is_dir():
        raise TransferError(f"{saves_dir} is not a directory (the application's saves/ folder)")
    # A custom_providers.toml already there is rewritten too (emptied when the database has no
    # custom provider): a provider deleted in database mode must not come back in file mode.
    present = {rel for rel in MANAGED_FILES if rel == BASE_TOML or (saves_dir / rel).exists()}
    snap = rows_snapshot(rows, present=present)
    try:
        report = write_saves(saves_dir, snap)
    except StateError as exc:
        raise TransferError(str(exc)) from None
    with connect(url) as conn:
        try:
            with conn.transaction():
                record_sync(conn, digest_rows(snapshot_rows(read_tree(saves_dir))), rev, "export")
        except psycopg.Error as exc:
            written = ", ".join(report.written) or "none"
            raise TransferError(
                f"database {describe_database_url(url)}: files written ({written}), "
                f"sync point not recorded: {error_line(exc)}"
            ) from None
    return report.written


def diff(saves_dir: Path, url: str) -> Plan:
    """Files compared with the database: insert = only in files, only_in_db = only in the database."""
    wanted = snapshot_rows(read_tree(saves_dir))
    return make_plan(wanted, read_database_at(url)[0])
