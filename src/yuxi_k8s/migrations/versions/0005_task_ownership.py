"""Replicas with leases, and which replica owns each running task of the application.

A starting replica fails only the tasks whose owner's lease has run out, instead
of every running task in the table (what the application does on its own).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from yuxi_k8s.migrations import SCHEMA

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.Text, nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("replica_id", name="pk_replicas"),
        schema=SCHEMA,
    )
    op.create_table(
        "task_owners",
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("replica_id", sa.Text, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("task_id", name="pk_task_owners"),
        schema=SCHEMA,
    )
    op.create_index("ix_task_owners_replica_id", "task_owners", ["replica_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_task_owners_replica_id", table_name="task_owners", schema=SCHEMA)
    op.drop_table("task_owners", schema=SCHEMA)
    op.drop_table("replicas", schema=SCHEMA)
