"""The kit's tables, all in a schema of its own (:data:`SCHEMA`), never beside the application's.

Settings are one row per top-level key of the application's ``base.toml``;
model providers one row per ``[model_names.<name>]`` table, scope ``model_names``
(``base.toml``) or ``custom`` (``custom_providers.toml``). Every row carries
``version`` (per row, for optimistic concurrency: a write names the version it
read) and ``rev`` (from one sequence, so a replica's cache orders the changes it
hears about and never applies an older row over a newer one). Alembic
(:mod:`yuxi_k8s.migrations`) creates them; this module only describes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, MetaData, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "yuxi_k8s"
CHANGE_SEQUENCE = f"{SCHEMA}.change_seq"
NOTIFY_CHANNEL = "yuxi_k8s_state"

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    },
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, Any: JSONB}


def _version() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, server_default=text("1"))


def _rev() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, server_default=text(f"nextval('{CHANGE_SEQUENCE}')"))


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ConfigEntry(Base):
    """A top-level key of base.toml other than ``model_names``."""

    __tablename__ = "config_entries"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB(none_as_null=False), nullable=True)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _now()
    updated_by: Mapped[str | None] = mapped_column(Text)


class ConfigProvider(Base):
    """One ``[model_names.<name>]`` table: scope ``model_names`` (base.toml) or ``custom``."""

    __tablename__ = "config_providers"
    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _now()
    updated_by: Mapped[str | None] = mapped_column(Text)


class FencingToken(Base):
    """Highest fencing token seen per locked resource; older tokens are refused."""

    __tablename__ = "fencing_tokens"
    resource: Mapped[str] = mapped_column(Text, primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = _now()


class SyncPoint(Base):
    """Content digests of saves/ trees that were equal to the database (each import and export),
    with the change sequence then: migrate-config skips files whose digest is here."""

    __tablename__ = "sync_points"
    digest: Mapped[str] = mapped_column(Text, primary_key=True)
    rev: Mapped[int] = mapped_column(BigInteger, nullable=False)
    direction: Mapped[str] = mapped_column(Text, nullable=False)
    synced_at: Mapped[datetime] = _now()


class Replica(Base):
    """A running api/worker process and its lease: alive while ``lease_until`` is in the future."""

    __tablename__ = "replicas"
    replica_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    started_at: Mapped[datetime] = _now()
    heartbeat_at: Mapped[datetime] = _now()
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TaskOwner(Base):
    """Which replica runs a task of the application's ``tasks`` table (by its id; no foreign key
    into the application's schema, which the kit never alters)."""

    __tablename__ = "task_owners"
    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    replica_id: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    claimed_at: Mapped[datetime] = _now()


class KnowledgeFileClaim(Base):
    """Which replica is parsing or indexing a file of the application's ``knowledge_files`` (by its
    id, no foreign key): another replica leaves the file's intermediate status alone while the
    claimant's lease lives."""

    __tablename__ = "kb_processing"
    file_id: Mapped[str] = mapped_column(Text, primary_key=True)
    replica_id: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    claimed_at: Mapped[datetime] = _now()


class TaskRequest(Base):
    """A cancel or delete of a running task asked of a replica that does not run it, for its owner."""

    __tablename__ = "task_requests"
    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    action: Mapped[str] = mapped_column(Text, primary_key=True)
    requested_at: Mapped[datetime] = _now()


class LightRagChange(Base):
    """How often a LightRAG knowledge base's stores (JSON files under ``saves/``) were written, by
    the application's knowledge-base id (no foreign key): a replica whose LightRAG instance read
    them at a lower count reloads them (:mod:`yuxi_k8s.app.integration.lightrag_stores`)."""

    __tablename__ = "lightrag_changes"
    db_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    changed_at: Mapped[datetime] = _now()


# Advanced after every write to the application's knowledge-base tables (yuxi_k8s.app.integration.knowledge)
# and subagents (.subagents): a replica whose cache saw a lower value reloads.
KB_CHANGE_SEQUENCE = f"{SCHEMA}.kb_change_seq"
SUBAGENT_CHANGE_SEQUENCE = f"{SCHEMA}.subagent_change_seq"


def table_names() -> list[str]:
    """Every table the kit creates (without the schema), for the name guard."""
    return sorted(t.name for t in metadata.sorted_tables)
