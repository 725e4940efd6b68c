"""migrate-config, export-config and diff, as functions (the CLI and the benchmarks call them).

migrate-config runs in ONE transaction under a PostgreSQL advisory lock: parse
every file first (a malformed one stops it before anything is written), compare
with the database, write only what differs (COPY for new rows, executemany for
changed ones), read everything back and compare, notify every replica to
reload, then commit. Killed at any point, it leaves the database as it was.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.copy import QueuedLibpqWriter

from .. import migrations
from ..state import jsonio
from ..state.fileio import fsync_dir
from ..state.layout import (
    BASE_TOML,
    GLOBAL_METADATA,
    FormatError,
    Snapshot,
    dump_json,
    kb_type_of_path,
    read_saves,
    render_saves,
)
from ..state.models import NOTIFY_CHANNEL
from ..state.settings import describe_database_url, libpq_url
from .plan import KindPlan, Plan, canonical, make_plan
from .rows import JSON_COLUMNS, TABLES, Rows, key_label, read_rows, rows_snapshot, snapshot_rows

MIGRATE_LOCK_KEY = "yuxi-k8s:migrate-config"
# Test hook: seconds to sleep after verifying and before COMMIT (the kill-midway test).
PAUSE_ENV = "YUXI_K8S_TEST_PAUSE_BEFORE_COMMIT"


class TransferError(Exception):
    """One line for the user; nothing was written."""


@dataclass
class MigrateResult:
    plan: Plan
    committed: bool
    seconds: float
    empty_source: bool = False
    unchanged_since: SyncPoint | None = None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def connect(url: str, timeout_s: float = 5.0) -> psycopg.Connection:
    try:
        conn = psycopg.connect(libpq_url(url), connect_timeout=max(1, int(timeout_s)))
        jsonio.use_for(conn)
        return conn
    except psycopg.Error as exc:
        raise TransferError(f"database {describe_database_url(url)}: {_one_line(exc)}") from None


def require_head(conn: psycopg.Connection, url: str) -> None:
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT version_num FROM alembic_version"
                if conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0]  # type: ignore[index]
                else "SELECT NULL"
            ).fetchone()
    except psycopg.Error as exc:
        raise TransferError(f"database {describe_database_url(url)}: {_one_line(exc)}") from None
    current = row[0] if row else None
    head = migrations.head_revision()
    if migrations.schema_status(current) != "head":  # import/export need exactly the tables we know
        raise TransferError(
            f"database {describe_database_url(url)} schema is at {current or 'nothing'}, needs {head}: "
            "run `yuxi-k8s db upgrade` first"
        )


def read_tree(saves_dir: Path) -> Snapshot:
    try:
        snap = read_saves(saves_dir)
    except FormatError as exc:
        raise TransferError(str(exc)) from None
    if is_empty(snap) and any((saves_dir / "saves" / rel).is_file() for rel in (BASE_TOML, GLOBAL_METADATA)):
        raise TransferError(f"{saves_dir}: no Yuxi-Know state here; did you mean {saves_dir / 'saves'}?")
    return snap


def is_empty(snap: Snapshot) -> bool:
    """No managed file at all: a fresh install (the migrate Job must pass), or a wrong path."""
    return not snap.documents and not snap.config


# --- writing rows ------------------------------------------------------------------


def _stage_name(kind: str) -> str:
    return f"stage_{TABLES[kind][0]}"


def _cast(column: str, source: str) -> str:
    return f"{source}.{column}"


def _stage_type(column: str) -> str:
    return "jsonb" if column in JSON_COLUMNS else "integer" if column == "position" else "text"


def stage_rows(conn: psycopg.Connection, kind: str, p: KindPlan) -> None:
    """COPY the rows to write into a temp table, where PostgreSQL parses the JSON once."""
    _, pk, cols = TABLES[kind]
    defs = ", ".join(f"{c} {_stage_type(c)}" for c in pk + cols)
    stage = _stage_name(kind)
    conn.execute(f"CREATE TEMP TABLE {stage} (op char(1) NOT NULL, {defs}) ON COMMIT DROP")
    sql = f"COPY {stage} (op, {', '.join(pk + cols)}) FROM STDIN"
    # A writer thread sends while this one encodes: the server parses JSON in parallel.
    with conn.cursor() as cur, cur.copy(sql, writer=QueuedLibpqWriter(cur)) as copy:
        for chunk in copy_text_chunks(p, cols):
            copy.write(chunk)


def _copy_field(value: Any) -> str:
    """One field of COPY's text format: NULL is \\N; backslash, tab, newline, CR are escaped."""
    if value is None:
        return "\\N"
    text = value if type(value) is str else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_text_chunks(p: KindPlan, cols: tuple[str, ...], chunk_rows: int = 2000) -> Iterator[str]:
    """COPY text for the planned rows, in chunks: the hot loop of a 100k-record import.

    Built by hand rather than with ``write_row`` (a third of the import's Python time);
    the verification afterwards compares every written row, so an escaping slip cannot pass.
    """
    json_cols = [c in JSON_COLUMNS for c in cols]
    dumps, field = jsonio.dumps, _copy_field
    lines: list[str] = []
    for op, rows in (("i", p.insert), ("u", p.update)):
        for key, row in rows.items():
            fields = [op, *map(field, key)] if isinstance(key, tuple) else [op, field(key)]
            for column, is_json in zip(cols, json_cols, strict=True):
                value = row[column]
                fields.append(field(dumps(value) if is_json and value is not None else value))
            lines.append("\t".join(fields))
            if len(lines) >= chunk_rows:
                yield "\n".join(lines) + "\n"
                lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def write_staged(conn: psycopg.Connection, kind: str, p: KindPlan) -> None:
    """New rows in one INSERT ... SELECT (version 1, rev from the sequence), changed rows in one UPDATE."""
    table, pk, cols = TABLES[kind]
    stage = _stage_name(kind)
    names = ", ".join(pk + cols)
    values = ", ".join([*(f"s.{c}" for c in pk), *(_cast(c, "s") for c in cols)])
    inserted = conn.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM {stage} s WHERE s.op = 'i'")
    sets = ", ".join(f"{c} = {_cast(c, 's')}" for c in cols if c != "position")
    bump = "version = t.version + 1, rev = nextval('state_rev_seq'), updated_at = now()"
    match = " AND ".join(f"t.{c} = s.{c}" for c in pk)
    updated = conn.execute(f"UPDATE {table} t SET {sets}, {bump} FROM {stage} s WHERE s.op = 'u' AND {match}")
    if inserted.rowcount != len(p.insert) or updated.rowcount != len(p.update):
        raise TransferError(f"{table}: wrote {inserted.rowcount}+{updated.rowcount} rows, planned "
                            f"{len(p.insert)}+{len(p.update)}; nothing written")  # fmt: skip


def apply_plan(conn: psycopg.Connection, plan: Plan) -> None:
    for kind, p in plan.kinds.items():
        if p.insert or p.update:
            stage_rows(conn, kind, p)
            write_staged(conn, kind, p)


def verify(conn: psycopg.Connection, plan: Plan, sample: int = 10_000) -> None:
    """Read back what was written and compare, twice over.

    In the database, every written row against its staged copy (JSONB equality is
    type-aware: true is not 1): the INSERT/UPDATE wrote what was planned. In Python,
    the rows of each kind (a deterministic sample of *sample* for larger kinds)
    against the records parsed from the files: the encoding lost nothing.
    """
    for kind, p in plan.kinds.items():
        if not (p.insert or p.update):
            continue
        table, pk, cols = TABLES[kind]
        stage = _stage_name(kind)
        join = " AND ".join(f"t.{c} = s.{c}" for c in pk)
        differs = " OR ".join(f"t.{c} IS DISTINCT FROM {_cast(c, 's')}" for c in cols)
        bad = conn.execute(
            f"SELECT {', '.join('s.' + c for c in pk)} FROM {stage} s LEFT JOIN {table} t ON {join} "
            f"WHERE t.{pk[0]} IS NULL OR {differs} LIMIT 1"
        ).fetchone()
        if bad is not None:
            key = tuple(bad) if len(pk) > 1 else bad[0]
            raise TransferError(
                f"verification failed for {key_label(kind, key)}: database differs after writing"
            )
        written = {**p.insert, **p.update}
        keys = list(written)
        if len(keys) > sample:
            step = len(keys) / sample
            keys = [keys[int(i * step)] for i in range(sample)]
        where = " AND ".join(f"{c} = ANY(%s)" for c in pk[:1])
        params = [[k[0] if isinstance(k, tuple) else k for k in keys]]
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(pk + cols)} FROM {table} WHERE {where}", params)
            got = {}
            for record in cur:
                key = tuple(record[: len(pk)]) if len(pk) > 1 else record[0]
                got[key] = dict(zip(cols, record[len(pk) :], strict=True))
        for key in keys:
            if key not in got or canonical(got[key]) != canonical(written[key]):
                raise TransferError(
                    f"verification failed for {key_label(kind, key)}: database differs after writing"
                )


def _advisory_lock(conn: psycopg.Connection, wait_s: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        got = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (MIGRATE_LOCK_KEY,)).fetchone()
        if got and got[0]:
            return
        if not told:
            say(f"another migrate-config is running; waiting up to {wait_s:g}s for it to finish")
            told = True
        if time.monotonic() >= deadline:
            raise TransferError(
                f"another migrate-config still holds the lock after {wait_s:g}s; nothing written"
            )
        time.sleep(0.2)


def digest_rows(rows: Rows) -> str:
    """Content digest of a snapshot's rows: equal digests, equal state (formatting aside)."""
    h = hashlib.sha256()
    for kind in TABLES:
        table = rows.get(kind, {})
        h.update(kind.encode())
        for key in sorted(table):
            h.update(canonical(key))
            h.update(canonical(table[key]))
    return h.hexdigest()


@dataclass
class SyncPoint:
    digest: str
    rev: int
    direction: str
    synced_at: Any


def read_sync(conn: psycopg.Connection, digest: str | None = None) -> SyncPoint | None:
    """The sync point with this digest, or (no digest) the latest one."""
    columns = "SELECT digest, rev, direction, synced_at FROM sync_state"
    if digest is None:
        row = conn.execute(f"{columns} ORDER BY synced_at DESC LIMIT 1").fetchone()
    else:
        row = conn.execute(f"{columns} WHERE digest = %s", (digest,)).fetchone()
    return SyncPoint(*row) if row else None


def current_rev(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT last_value FROM state_rev_seq").fetchone()
    return int(row[0]) if row else 0


def record_sync(conn: psycopg.Connection, digest: str, rev: int, direction: str) -> None:
    conn.execute(
        "INSERT INTO sync_state (digest, rev, direction) VALUES (%s, %s, %s) "
        "ON CONFLICT (digest) DO UPDATE SET rev = EXCLUDED.rev, direction = EXCLUDED.direction, "
        "synced_at = now()",
        (digest, rev, direction),
    )


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are built.

    Parsing 100k records creates ~2M dicts and strings; each allocation burst would
    trigger full collections that walk them all again (a third of the import's time).
    Reference counting still frees everything; collection resumes afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def migrate(
    saves_dir: Path,
    url: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    lock_wait_s: float = 300.0,
    say: Callable[[str], None] = print,
) -> MigrateResult:
    """Import saves/ into the database, unless the files have not changed since files and
    database were last in sync (an import or an export): then the database, which may hold
    newer edits made in database mode, is left alone. *force* imports regardless."""
    with no_cyclic_gc():
        return _migrate(saves_dir, url, dry_run=dry_run, force=force, lock_wait_s=lock_wait_s, say=say)


def _migrate(
    saves_dir: Path, url: str, *, dry_run: bool, force: bool, lock_wait_s: float, say: Callable[[str], None]
) -> MigrateResult:
    started = time.monotonic()
    snap = read_tree(saves_dir)  # parse everything before touching the database
    wanted = snapshot_rows(snap)
    digest = digest_rows(wanted)
    with connect(url) as conn:
        require_head(conn, url)
        try:
            with conn.transaction():
                _advisory_lock(conn, lock_wait_s, say)
                sync = read_sync(conn, digest)
                if sync is not None and not force and not is_empty(snap):
                    # The rollout's migrate Job, files untouched since the last sync: the database
                    # may have newer edits; re-importing stale files would undo them.
                    raise _Rollback(make_plan({}, {}), unchanged_since=sync)
                plan = make_plan(wanted, read_rows(conn))
                if dry_run or is_empty(snap):
                    raise _Rollback(plan)  # nothing to write: leave without changes
                if plan.empty:  # already equal: only remember that files and database are in sync
                    record_sync(conn, digest, current_rev(conn), "import")
                else:
                    sync = read_sync(conn)  # the latest: did the database move on since?
                    if sync is not None and current_rev(conn) > sync.rev:
                        changed = sum(len(p.update) for p in plan.kinds.values())
                        say(
                            f"warning: the database changed since the last sync ({sync.direction} at "
                            f"{sync.synced_at:%Y-%m-%d %H:%M:%S %Z}) and so did the files; the files win "
                            f"for the {changed} record(s) they define differently"
                        )
                    apply_plan(conn, plan)
                    verify(conn, plan)
                    record_sync(conn, digest, current_rev(conn), "import")
                    conn.execute(
                        "SELECT pg_notify(%s, %s)",
                        (NOTIFY_CHANNEL, json.dumps({"k": "all", "src": "migrate-config"})),
                    )
                    pause = float(os.environ.get(PAUSE_ENV) or 0)
                    if pause:
                        print(f"{PAUSE_ENV}: pausing {pause:g}s before commit", file=sys.stderr, flush=True)
                        time.sleep(pause)
        except _Rollback as rb:
            return MigrateResult(
                rb.plan, False, time.monotonic() - started, empty_source=is_empty(snap),
                unchanged_since=rb.unchanged_since,
            )  # fmt: skip
        except psycopg.Error as exc:
            raise TransferError(
                f"database {describe_database_url(url)}: {_one_line(exc)}; nothing written"
            ) from None
    return MigrateResult(plan, not plan.empty, time.monotonic() - started)


class _Rollback(Exception):
    """Leave the transaction, rolling back: nothing was written."""

    def __init__(self, plan: Plan, unchanged_since: SyncPoint | None = None) -> None:
        super().__init__("rollback")
        self.plan = plan
        self.unchanged_since = unchanged_since


def read_database(url: str) -> Rows:
    return read_database_at(url)[0]


def read_database_at(url: str) -> tuple[Rows, int]:
    """Every row in one consistent snapshot, and the change sequence's value when read."""
    with connect(url) as conn:
        require_head(conn, url)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                rev = current_rev(conn)
                return read_rows(conn), rev
        except psycopg.Error as exc:
            raise TransferError(f"database {describe_database_url(url)}: {_one_line(exc)}") from None


# --- export -------------------------------------------------------------------------


def export_files(url: str) -> tuple[dict[str, str], int]:
    """The saves/ files the database holds, rendered (relative path -> text), and the rev read at."""
    rows, rev = read_database_at(url)
    files = render_saves(rows_snapshot(rows))
    if not files:
        raise TransferError(f"database {describe_database_url(url)} holds no state; nothing to export")
    return files, rev


def stale_type_files(saves_dir: Path, files: dict[str, str]) -> dict[str, str]:
    """metadata_<type>.json files on disk the database no longer has: emptied so they resurrect nothing."""
    kb_dir = saves_dir / "knowledge_base_data"
    out: dict[str, str] = {}
    if kb_dir.is_dir():
        for path in kb_dir.glob("*_data/metadata_*.json"):
            rel = path.relative_to(saves_dir).as_posix()
            kb_type = kb_type_of_path(rel)
            if kb_type and rel not in files:
                out[rel] = dump_json({"databases": {}, "files": {}, "kb_type": kb_type})
    return out


def write_tree(saves_dir: Path, files: dict[str, str]) -> list[str]:
    """Write every file to a temp dir inside *saves_dir* first, then rename each into place.

    A failure while writing leaves the tree untouched; renames within one file system
    do not fail halfway. Returns the relative paths whose content changed.
    """
    saves_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for rel, text in sorted(files.items()):
        target = saves_dir / rel
        try:
            if target.read_text(encoding="utf-8") == text:
                continue
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        changed.append(rel)
    if not changed:
        return []
    staging = Path(tempfile.mkdtemp(prefix=".yuxi-k8s-export-", dir=saves_dir))
    try:
        for rel in changed:
            tmp = staging / rel
            tmp.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(files[rel].encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, (saves_dir / rel).stat().st_mode & 0o7777)
        for rel in changed:
            target = saves_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
        for directory in {(saves_dir / rel).parent for rel in changed}:
            fsync_dir(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return changed


def export(saves_dir: Path, url: str) -> list[str]:
    """Write the database as saves/ files, then record the sync point: files and database are
    equal now, so the next migrate-config skips these files unless someone edits them."""
    with no_cyclic_gc():
        files, rev = export_files(url)
    files.update(stale_type_files(saves_dir, files))
    try:
        changed = write_tree(saves_dir, files)
    except OSError as exc:
        raise TransferError(f"cannot write under {saves_dir}: {exc.strerror or exc}") from None
    with no_cyclic_gc():
        digest = digest_rows(snapshot_rows(read_tree(saves_dir)))  # exactly as migrate-config will see them
    with connect(url) as conn:
        try:
            with conn.transaction():
                record_sync(conn, digest, rev, "export")
        except psycopg.Error as exc:
            raise TransferError(
                f"database {describe_database_url(url)}: files written, "
                f"sync point not recorded: {_one_line(exc)}"
            ) from None
    return changed


def diff(saves_dir: Path, url: str) -> Plan:
    """Files compared with the database: insert = only in files, only_in_db = only in the database."""
    with no_cyclic_gc():
        wanted = snapshot_rows(read_tree(saves_dir))
        return make_plan(wanted, read_database(url))
