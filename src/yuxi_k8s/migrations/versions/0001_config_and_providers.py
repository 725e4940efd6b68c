"""Configuration keys, model providers, fencing tokens and the change sequence.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")
NEXT_REV = sa.text("nextval('state_rev_seq')")


def upgrade() -> None:
    op.execute("CREATE SEQUENCE state_rev_seq AS bigint")
    op.create_table(
        "system_config",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", JSONB, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("1")),
        sa.Column("rev", sa.BigInteger, nullable=False, server_default=NEXT_REV),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_by", sa.Text),
        sa.PrimaryKeyConstraint("key", name="pk_system_config"),
    )
    op.create_table(
        "model_providers",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("1")),
        sa.Column("rev", sa.BigInteger, nullable=False, server_default=NEXT_REV),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_by", sa.Text),
        sa.PrimaryKeyConstraint("scope", "name", name="pk_model_providers"),
    )
    op.create_table(
        "fencing_tokens",
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("resource", name="pk_fencing_tokens"),
    )


def downgrade() -> None:
    op.drop_table("fencing_tokens")
    op.drop_table("model_providers")
    op.drop_table("system_config")
    op.execute("DROP SEQUENCE state_rev_seq")
