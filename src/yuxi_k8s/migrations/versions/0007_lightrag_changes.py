"""LightRAG knowledge bases across replicas: a write count per knowledge base.

Yuxi-Know 0.6.1 keeps a LightRAG knowledge base's documents, chunks and their status in
JSON files under ``saves/`` that each process loads once and writes back whole. The kit
writes them under a cluster-wide lock per knowledge base and counts each write here
(``lightrag_changes``), so a replica whose copy is older reloads the files first.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from yuxi_k8s.migrations import SCHEMA

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lightrag_changes",
        sa.Column("db_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("db_id", name="pk_lightrag_changes"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("lightrag_changes", schema=SCHEMA)
