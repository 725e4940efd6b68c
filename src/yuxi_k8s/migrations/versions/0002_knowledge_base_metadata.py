"""Knowledge bases and their files (one row each), tasks and small documents.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.text("now()")
NEXT_REV = sa.text("nextval('state_rev_seq')")


def _bookkeeping() -> list[sa.Column]:
    return [
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("1")),
        sa.Column("rev", sa.BigInteger, nullable=False, server_default=NEXT_REV),
    ]


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("db_id", sa.Text, nullable=False),
        sa.Column("kb_type", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("payload", JSONB),
        sa.Column("global_payload", JSONB),
        *_bookkeeping(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("db_id", name="pk_knowledge_bases"),
    )
    op.create_index("ix_knowledge_bases_kb_type", "knowledge_bases", ["kb_type"])
    op.create_table(
        "kb_files",
        sa.Column("file_id", sa.Text, nullable=False),
        sa.Column("database_id", sa.Text),
        sa.Column("kb_type", sa.Text, nullable=False),
        sa.Column("status", sa.Text),
        sa.Column("filename", sa.Text),
        sa.Column("payload", JSONB, nullable=False),
        *_bookkeeping(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("file_id", name="pk_kb_files"),
    )
    # Serves lookups by database_id alone too (leading column): one index less to maintain.
    op.create_index("ix_kb_files_database_id_status", "kb_files", ["database_id", "status"])
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.Text),
        sa.Column("payload", JSONB, nullable=False),
        *_bookkeeping(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_table(
        "documents",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=True),
        *_bookkeeping(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("name", name="pk_documents"),
    )


def downgrade() -> None:
    op.drop_table("documents")
    op.drop_index("ix_tasks_status", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_kb_files_database_id_status", table_name="kb_files")
    op.drop_table("kb_files")
    op.drop_index("ix_knowledge_bases_kb_type", table_name="knowledge_bases")
    op.drop_table("knowledge_bases")
