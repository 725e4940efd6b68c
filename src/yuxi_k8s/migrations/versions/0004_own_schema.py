"""The kit's state in a schema of its own: settings, model providers, fencing tokens, sync points.

Earlier kit releases (revisions 0001-0003) kept these in the public schema beside
the application's tables; ``yuxi_k8s.migrations.adopt_legacy`` moves such a
database here and stamps this revision instead of running it.

Revision ID: 0004
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from yuxi_k8s.migrations import SCHEMA

revision = "0004"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")
NEXT = sa.text(f"nextval('{SCHEMA}.change_seq')")


def _bookkeeping() -> list[sa.Column]:
    return [
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("1")),
        sa.Column("rev", sa.BigInteger, nullable=False, server_default=NEXT),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_by", sa.Text),
    ]


def upgrade() -> None:
    op.execute(f"CREATE SEQUENCE {SCHEMA}.change_seq AS bigint")
    op.create_table(
        "config_entries",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", JSONB, nullable=True),
        *_bookkeeping(),
        sa.PrimaryKeyConstraint("key", name="pk_config_entries"),
        schema=SCHEMA,
    )
    op.create_table(
        "config_providers",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        *_bookkeeping(),
        sa.PrimaryKeyConstraint("scope", "name", name="pk_config_providers"),
        schema=SCHEMA,
    )
    op.create_table(
        "fencing_tokens",
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("resource", name="pk_fencing_tokens"),
        schema=SCHEMA,
    )
    op.create_table(
        "sync_points",
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("digest", name="pk_sync_points"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("sync_points", "fencing_tokens", "config_providers", "config_entries"):
        op.drop_table(table, schema=SCHEMA)
    op.execute(f"DROP SEQUENCE {SCHEMA}.change_seq")
