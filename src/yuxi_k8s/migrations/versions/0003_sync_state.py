"""Where files and database were last in sync, so the migrate Job of every rollout
does not re-import stale saves/ files over changes made in database mode.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per content digest ever imported or exported: files whose digest is here are a
    # copy of some earlier state (the original import, a backup export), not new edits.
    op.create_table(
        "sync_state",
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("digest", name="pk_sync_state"),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
