"""Caches of the application across replicas: change counters, and who processes which file.

The application caches every knowledge base and file in each process and writes
that cache back, and caches its subagents' specs. The kit counts each write to
those tables (``kb_change_seq``, ``subagent_change_seq``), so a replica knows
when its cache is stale, and records which replica is parsing or indexing a file
(``kb_processing``), so another replica does not declare that file interrupted. A
cancel or delete of a task asked of another replica than the one running it is
queued for that owner (``task_requests``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from yuxi_k8s.migrations import SCHEMA

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("kb_change_seq", schema=SCHEMA)))
    op.execute(sa.schema.CreateSequence(sa.Sequence("subagent_change_seq", schema=SCHEMA)))
    op.create_table(
        "kb_processing",
        sa.Column("file_id", sa.Text, nullable=False),
        sa.Column("replica_id", sa.Text, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("file_id", name="pk_kb_processing"),
        schema=SCHEMA,
    )
    op.create_index("ix_kb_processing_replica_id", "kb_processing", ["replica_id"], schema=SCHEMA)
    op.create_table(
        "task_requests",
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("task_id", "action", name="pk_task_requests"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("task_requests", schema=SCHEMA)
    op.drop_index("ix_kb_processing_replica_id", table_name="kb_processing", schema=SCHEMA)
    op.drop_table("kb_processing", schema=SCHEMA)
    op.execute(sa.schema.DropSequence(sa.Sequence("subagent_change_seq", schema=SCHEMA)))
    op.execute(sa.schema.DropSequence(sa.Sequence("kb_change_seq", schema=SCHEMA)))
