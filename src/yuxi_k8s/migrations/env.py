"""Alembic environment: runs on the engine handed over in ``config.attributes``.

All pending revisions run in ONE transaction (PostgreSQL has transactional DDL),
so a process killed mid-upgrade leaves the schema as it was. An advisory lock
makes two concurrent upgrades (two migrate Jobs) run one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from yuxi_k8s.state.models import metadata

MIGRATION_LOCK = "select pg_advisory_xact_lock(hashtext('yuxi-k8s:alembic'))"

engine = context.config.attributes.get("engine")
if engine is None:
    raise RuntimeError(
        "run migrations through yuxi_k8s.migrations (yuxi-k8s db upgrade), not the alembic CLI"
    )

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
    with context.begin_transaction():
        connection.execute(text(MIGRATION_LOCK))
        context.run_migrations()
