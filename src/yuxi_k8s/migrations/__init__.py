"""Alembic environment and versions for the state schema, run from code.

No alembic.ini is needed: the package finds its own scripts, so
``yuxi-k8s db upgrade`` works from an installed wheel (the migrate Job's image)
as well as from the repository.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_status(current: str | None) -> str:
    """``head``, ``behind`` (run db upgrade), ``empty``, or ``ahead``: a revision this code
    does not know, written by a newer release. Migrations are additive (expand, then
    contract in a later release), so an older replica keeps working during a rolling upgrade."""
    if current is None:
        return "empty"
    script = ScriptDirectory.from_config(alembic_config())
    if current == script.get_current_head():
        return "head"
    try:
        known = script.get_revision(current)
    except Exception:  # alembic raises for an unknown id
        known = None
    return "behind" if known is not None else "ahead"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)
