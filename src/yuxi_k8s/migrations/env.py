"""Alembic environment: runs on the engine handed over in ``config.attributes``.

Everything lives in the kit's schema, the version table too, so the kit never
creates a table beside the application's. All pending revisions run in ONE
transaction (PostgreSQL has transactional DDL), so a process killed mid-upgrade
leaves the schema as it was; an advisory lock makes two concurrent upgrades
(two migrate Jobs) run one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from yuxi_k8s.migrations import MIGRATION_LOCK, SCHEMA, adopt_legacy, guard
from yuxi_k8s.state.models import metadata

engine = context.config.attributes.get("engine")
if engine is None:
    raise RuntimeError(
        "run migrations through yuxi_k8s.migrations (yuxi-k8s db upgrade), not the alembic CLI"
    )

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transaction_per_migration=False,
        version_table_schema=SCHEMA,
        include_schemas=True,
    )
    with context.begin_transaction():
        connection.execute(text(MIGRATION_LOCK))
        guard(connection)
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        context.config.attributes["adopted"] = adopt_legacy(connection)
        context.run_migrations()
