"""One application start-up at a time across replicas (row 20 of the per-process state).

Every api process of Yuxi-Know 0.6.1 runs its start-up in the ASGI lifespan
(``server/utils/lifespan.py``): it creates and alters its tables, seeds built-in
rows and sets up the LangGraph checkpointer's tables. Pods started together run
that DDL at once and PostgreSQL answers one of them with a deadlock or a unique
violation: that pod exits and restarts (seen in the app tier, two processes of
the application alone). ``yuxi-k8s-app`` holds a PostgreSQL advisory lock from
the lifespan's start-up event to its answer, so the start-ups run one after the
other; the lock goes with the connection if the process dies.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("yuxi_k8s.app.startup")

# The kit's advisory lock keys are fixed 64-bit numbers (see also knowledge.LOCK_KEY).
LOCK_KEY = 0x59555849_53545254
POLL_S = 0.25


class StartupLock:
    """Held by this process while the application's start-up runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._guard = threading.Lock()

    def acquire(self) -> None:
        """Poll with try-lock, never wait inside a statement: the start-up being waited for runs
        ``CREATE INDEX CONCURRENTLY`` (the checkpointer's set-up), which waits for every running
        statement's snapshot, so a blocking ``pg_advisory_lock`` here would wait forever."""
        with self._guard:
            if self._conn is not None:
                return
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            said = False
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar_one():
                if not said:
                    log.info("waiting for another replica's start-up to finish (its tables and seeds first)")
                    said = True
                time.sleep(POLL_S)
            self._conn = conn

    def release(self) -> None:
        with self._guard:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        finally:
            conn.close()
