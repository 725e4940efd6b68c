"""Cluster-wide locks for the patched application: PostgreSQL session-level advisory locks.

:func:`advisory_lock` holds one on a connection of the kit's engine (a blocking call);
:func:`held_in_thread` takes such a lock from the event loop, in a worker thread, with one
waiter per process and lock (the others await *local*), so waiting never fills the loop's
thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager

from sqlalchemy import Engine, text


@contextlib.contextmanager
def advisory_lock(engine: Engine, key: int, name: str | None = None) -> Iterator[None]:
    """The lock *key* (64-bit), or with *name* the lock (*key* as a 32-bit class, hashtext(*name*))."""
    args = "(:k)" if name is None else "(:k, hashtext(:n))"
    params = {"k": key, "n": name}
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_lock{args}"), params)
        try:
            yield
        finally:
            conn.execute(text(f"SELECT pg_advisory_unlock{args}"), params)
            conn.commit()


@contextlib.asynccontextmanager
async def held_in_thread(local: asyncio.Lock, lock: AbstractContextManager[None]) -> AsyncIterator[None]:
    async with local:
        stack = contextlib.ExitStack()
        await asyncio.to_thread(stack.enter_context, lock)
        try:
            yield
        finally:
            await asyncio.to_thread(stack.close)
