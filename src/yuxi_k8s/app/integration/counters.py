"""Change counters in the kit's schema: how a replica knows that its copy of something is stale.

A writer advances the counter after its write is committed; a reader compares the
counter with the value it saw when it last loaded, and reloads when it moved. Both
are one short query on the kit's engine (PostgreSQL sequences are not transactional,
so a reader sees an advance at once).
"""

from __future__ import annotations

from sqlalchemy import Engine, text


class ChangeCounter:
    def __init__(self, engine: Engine, sequence: str) -> None:
        self.engine = engine
        self.sequence = sequence

    def current(self) -> int:
        with self.engine.connect() as conn:
            last, called = conn.execute(text(f"SELECT last_value, is_called FROM {self.sequence}")).one()
        return int(last) if called else 0

    def advance(self) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(text(f"SELECT nextval('{self.sequence}')")).scalar_one())
