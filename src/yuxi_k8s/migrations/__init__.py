"""The kit's schema: Alembic revisions run from code, one revision check, and the name guard.

No alembic.ini is needed: the package finds its own scripts, so ``yuxi-k8s db
upgrade`` works from an installed wheel (inside the api image) as well as from
the repository. Everything the kit creates lives in the schema :data:`SCHEMA`,
Alembic's version table included; :func:`guard` refuses to go on when anything
could make a kit object and an application table meet (a database user named
like the schema, the schema on the search path, a foreign table in the schema,
a kit table named like one the application owns). :func:`require_head` is the
one check every reader of the schema uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from yuxi_k8s.state.errors import SchemaError
from yuxi_k8s.state.models import SCHEMA, table_names

SCRIPT_LOCATION = Path(__file__).resolve().parent
MIGRATION_LOCK = "select pg_advisory_xact_lock(hashtext('yuxi-k8s:alembic'))"
VERSION_TABLE = f"{SCHEMA}.alembic_version"
# Revisions of kit releases that kept their tables in the public schema.
LEGACY_REVISIONS = ("0001", "0002", "0003")
# Tables of those releases for records the application keeps itself since its 0.5.0: kept
# (renamed legacy_<name>, in the kit's schema), never used. Each is recognised by a column the
# application's table of the same name does not have.
LEGACY_RECORD_TABLES = {"knowledge_bases": "global_payload", "kb_files": "payload", "tasks": "position",
                        "documents": "payload"}  # fmt: skip


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_status(current: str | None) -> str:
    """``head``, ``behind`` (run db upgrade), ``empty``, or ``ahead``: a revision this code
    does not know, written by a newer release. Migrations are additive (expand, then
    contract in a later release), so an older replica keeps working during a rolling upgrade."""
    if current is None:
        return "empty"
    script = ScriptDirectory.from_config(alembic_config())
    if current == script.get_current_head():
        return "head"
    try:
        known = script.get_revision(current)
    except Exception:  # alembic raises for an unknown id
        known = None
    return "behind" if known is not None else "ahead"


def _rows(conn: Any, sql: str) -> Sequence[Any]:
    """Rows of a parameterless query on a SQLAlchemy or a psycopg connection."""
    if isinstance(conn, Connection):
        return conn.execute(text(sql)).fetchall()
    return conn.execute(sql).fetchall()  # type: ignore[no-any-return]


def read_revision(conn: Any) -> str | None:
    """The kit's schema revision, or None when the kit's schema holds none."""
    if _rows(conn, f"SELECT to_regclass('{VERSION_TABLE}')")[0][0] is None:
        return None
    rows = _rows(conn, f"SELECT version_num FROM {VERSION_TABLE}")
    return rows[0][0] if rows else None


def require_head(conn: Any, where: str) -> str:
    """The revision, if the schema is at this code's head (or ahead: additive); else SchemaError."""
    current = read_revision(conn)
    if schema_status(current) in ("empty", "behind"):
        raise SchemaError(
            f"{where}: the kit's schema {SCHEMA} is at {current or 'nothing'}, this version needs "
            f"{head_revision()}: run `yuxi-k8s db upgrade`"
        )
    return current or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return read_revision(conn)


def owned_names() -> frozenset[str]:
    """Every table name the application (or a library it runs) owns, from the pinned contract."""
    from yuxi_k8s.app.contract import load

    return load().owned_tables


def guard(conn: Any) -> None:
    """Refuse (SchemaError, one line) anything that would let kit objects touch the application's."""
    if SCHEMA == "public":
        raise SchemaError("the kit's schema must not be public, where the application keeps its tables")
    clash = sorted(set(table_names()) & owned_names())
    if clash:
        raise SchemaError(f"kit tables {', '.join(clash)} are named like tables the application owns")
    current_user, session_user = _rows(conn, "SELECT current_user, session_user")[0]
    if SCHEMA in (current_user, session_user):
        raise SchemaError(
            f"the database user is named {SCHEMA}, like the kit's schema: PostgreSQL's default search "
            f'path ("$user", public) would put the application\'s tables into it; use another user name'
        )
    search_path = str(_rows(conn, "SHOW search_path")[0][0])
    if SCHEMA in [p.strip().strip('"') for p in search_path.split(",")]:
        raise SchemaError(
            f"the search path ({search_path}) includes {SCHEMA}: the application's tables could land in "
            "the kit's schema; remove it from the role's or database's search_path"
        )
    present = {r[0] for r in _rows(conn, f"SELECT tablename FROM pg_tables WHERE schemaname = '{SCHEMA}'")}
    known = set(table_names()) | {"alembic_version"} | {f"legacy_{t}" for t in LEGACY_RECORD_TABLES}
    foreign = sorted(present - known)
    if foreign:
        raise SchemaError(
            f"schema {SCHEMA} holds tables the kit did not create ({', '.join(foreign[:5])}); "
            "another tool uses the name"
        )


def _columns(conn: Connection, schema: str, table: str) -> set[str]:
    rows = conn.execute(
        text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"
        ),
        {"s": schema, "t": table},
    )
    return {r[0] for r in rows}


def adopt_legacy(conn: Connection) -> list[str]:
    """Move the tables of kit releases that used the public schema into :data:`SCHEMA`.

    Runs inside the upgrade's transaction (all or nothing). Recognised by a kit revision in
    ``public.alembic_version`` and the kit's columns; the application's tables are never
    touched. Returns what was moved, for the log.
    """
    if read_revision(conn) is not None:
        return []
    if conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is None:
        return []
    legacy = conn.execute(text("SELECT version_num FROM public.alembic_version")).scalars().all()
    if not legacy or any(r not in LEGACY_REVISIONS for r in legacy):
        return []
    if "rev" not in _columns(conn, "public", "system_config"):
        return []
    moved: list[str] = []

    def move(kind: str, name: str, new_name: str) -> None:
        conn.execute(text(f'ALTER {kind} public."{name}" SET SCHEMA "{SCHEMA}"'))
        if new_name != name:
            conn.execute(text(f'ALTER {kind} "{SCHEMA}"."{name}" RENAME TO "{new_name}"'))
        moved.append(f"public.{name} -> {SCHEMA}.{new_name}")

    # Column defaults name the sequence by its oid, so they follow the move and the rename.
    move("SEQUENCE", "state_rev_seq", "change_seq")
    move("TABLE", "system_config", "config_entries")
    if "scope" in _columns(conn, "public", "model_providers"):
        move("TABLE", "model_providers", "config_providers")
    else:  # none, or the application's own (0.6.2 adds one): the kit starts its providers afresh
        conn.execute(
            text(
                f'CREATE TABLE "{SCHEMA}".config_providers (scope text NOT NULL, name text NOT NULL, '
                "payload jsonb NOT NULL, version bigint NOT NULL DEFAULT 1, "
                f"rev bigint NOT NULL DEFAULT nextval('{SCHEMA}.change_seq'), "
                "updated_at timestamptz NOT NULL DEFAULT now(), updated_by text, "
                "CONSTRAINT pk_config_providers PRIMARY KEY (scope, name))"
            )
        )
    move("TABLE", "fencing_tokens", "fencing_tokens")
    if "direction" in _columns(conn, "public", "sync_state"):
        move("TABLE", "sync_state", "sync_points")
    else:  # kit revision 0001/0002 had none yet
        conn.execute(
            text(
                f'CREATE TABLE "{SCHEMA}".sync_points (digest text PRIMARY KEY, rev bigint NOT NULL, '
                "direction text NOT NULL, synced_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    for table, marker in LEGACY_RECORD_TABLES.items():
        if marker in _columns(conn, "public", table) and "rev" in _columns(conn, "public", table):
            move("TABLE", table, f"legacy_{table}")
            # Kept as data, never written again: without its default on the change sequence, the
            # copy does not hold the sequence (a downgrade of 0004 drops it).
            conn.execute(text(f'ALTER TABLE "{SCHEMA}"."legacy_{table}" ALTER COLUMN rev DROP DEFAULT'))
    conn.execute(
        text(
            f'CREATE TABLE "{SCHEMA}".alembic_version (version_num varchar(32) NOT NULL, '
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
    )
    conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('0004')"))
    conn.execute(text("DELETE FROM public.alembic_version WHERE version_num = ANY(:r)"), {"r": list(legacy)})
    if not conn.execute(text("SELECT count(*) FROM public.alembic_version")).scalar():
        conn.execute(text("DROP TABLE public.alembic_version"))
        moved.append("public.alembic_version dropped (it held only the kit's revision)")
    return moved


def upgrade(engine: Engine, revision: str = "head") -> list[str]:
    """Upgrade to *revision*; returns what was adopted from an older kit's public tables."""
    from alembic import command

    cfg = alembic_config(engine)
    command.upgrade(cfg, revision)
    return list(cfg.attributes.get("adopted") or [])


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)
