"""Subagents changed on one replica are used by every replica and the worker (row 10).

Yuxi-Know 0.6.1 caches the subagents' specs per process
(``yuxi/services/subagent_service.py``: ``get_subagent_specs`` fills a module-level
cache that only ``clear_specs_cache``, called after this process's own writes,
empties): a subagent created, changed or disabled through replica A stays as it
was on B and in the worker until they restart. Here every ``clear_specs_cache``
also advances ``yuxi_k8s.subagent_change_seq``, and ``get_subagent_specs`` empties
the cache first when that counter moved since this process last filled it: one
short query per call, the next agent built anywhere uses the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from yuxi_k8s.app.integration.counters import ChangeCounter
from yuxi_k8s.state.errors import error_line
from yuxi_k8s.state.models import SUBAGENT_CHANGE_SEQUENCE

log = logging.getLogger("yuxi_k8s.app.subagents")

REQUIRED_ATTRIBUTES = ("get_subagent_specs", "clear_specs_cache", "_subagent_specs_cache")


def missing_attributes(module: Any) -> list[str]:
    return [f"subagent_service.{n}" for n in REQUIRED_ATTRIBUTES if not hasattr(module, n)]


def install(module: Any, engine: Engine) -> None:
    """Patch the application's subagent service module (its functions call each other by name)."""
    counter = ChangeCounter(engine, SUBAGENT_CHANGE_SEQUENCE)
    original_get: Callable[..., Any] = module.get_subagent_specs
    original_clear: Callable[[], None] = module.clear_specs_cache
    seen = {"value": counter.current()}

    def clear_specs_cache() -> None:
        original_clear()
        try:
            counter.advance()
        except Exception as exc:  # the write is committed; other replicas then see it after a restart
            log.warning("could not tell other replicas that subagents changed: %s", error_line(exc))

    async def get_subagent_specs(db: Any = None) -> list[dict[str, Any]]:
        current = await asyncio.to_thread(counter.current)
        if current != seen["value"]:
            original_clear()  # another process changed a subagent: read them again
            seen["value"] = current
        return await original_get(db)  # type: ignore[no-any-return]

    module.clear_specs_cache = clear_specs_cache
    module.get_subagent_specs = get_subagent_specs
