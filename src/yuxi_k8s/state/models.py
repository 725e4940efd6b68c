"""The state schema: one row per config key, provider, knowledge base, file, task and document.

Every table carries ``version`` (per row, for optimistic concurrency: a write
names the version it read) and ``rev`` (from one database-wide sequence, so a
replica's cache can order the changes it hears about and never applies an
older row over a newer one). Alembic (``yuxi_k8s.migrations``) creates it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Index, Integer, MetaData, Sequence, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NOTIFY_CHANNEL = "yuxi_state"
REV_SEQUENCE = Sequence("state_rev_seq", metadata=None)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, Any: JSONB}


def _version() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, server_default=text("1"))


def _rev() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, server_default=text("nextval('state_rev_seq')"))


def _updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class SystemConfig(Base):
    """A top-level key of base.toml (model providers live in their own table)."""

    __tablename__ = "system_config"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB(none_as_null=False), nullable=True)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _updated_at()
    updated_by: Mapped[str | None] = mapped_column(Text)


class ModelProvider(Base):
    """One ``[model_names.<name>]`` table: scope ``model_names`` (base.toml) or ``custom``."""

    __tablename__ = "model_providers"
    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _updated_at()
    updated_by: Mapped[str | None] = mapped_column(Text)


class FencingToken(Base):
    """Highest fencing token seen per locked resource; older tokens are refused."""

    __tablename__ = "fencing_tokens"
    resource: Mapped[str] = mapped_column(Text, primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = _updated_at()


class KnowledgeBase(Base):
    """A knowledge base. ``payload`` is its entry in metadata_<type>.json and
    ``global_payload`` its entry in global_metadata.json (either may be absent)."""

    __tablename__ = "knowledge_bases"
    db_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kb_type: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    name: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    global_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    created_at: Mapped[datetime] = _updated_at()
    updated_at: Mapped[datetime] = _updated_at()


class KbFile(Base):
    """A file of a knowledge base: its entry in metadata_<type>.json ``files``.

    No foreign key to knowledge_bases: real metadata holds files whose base was
    deleted, and the application does not enforce it either; import must keep them.
    """

    __tablename__ = "kb_files"
    __table_args__ = (Index("ix_kb_files_database_id_status", "database_id", "status"),)
    file_id: Mapped[str] = mapped_column(Text, primary_key=True)
    database_id: Mapped[str | None] = mapped_column(Text)  # indexed by (database_id, status)
    kb_type: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    created_at: Mapped[datetime] = _updated_at()
    updated_at: Mapped[datetime] = _updated_at()


class Task(Base):
    """A task of tasks/tasks.json; ``position`` keeps the file's order."""

    __tablename__ = "tasks"
    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str | None] = mapped_column(Text, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _updated_at()


class Document(Base):
    """A small JSON document kept whole: graph_info.json, and the top-level keys of
    the metadata files besides their records (updated_at, benchmarks, unknown keys)."""

    __tablename__ = "documents"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    payload: Mapped[Any] = mapped_column(JSONB(none_as_null=False), nullable=True)
    version: Mapped[int] = _version()
    rev: Mapped[int] = _rev()
    updated_at: Mapped[datetime] = _updated_at()


class SyncState(Base):
    """Content digests of saves/ trees that were equal to the database (each import and export),
    with the change sequence then: migrate-config skips files whose digest is here."""

    __tablename__ = "sync_state"
    digest: Mapped[str] = mapped_column(Text, primary_key=True)
    rev: Mapped[int] = mapped_column(BigInteger, nullable=False)
    direction: Mapped[str] = mapped_column(Text, nullable=False)
    synced_at: Mapped[datetime] = _updated_at()
