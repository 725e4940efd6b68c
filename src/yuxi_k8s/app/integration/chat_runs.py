"""A run's events read from after the client's cursor, not from it (per-process state, row 17).

Yuxi-Know 0.6.1's runs API keeps a chat answer out of the api process: the worker appends the
run's events to the Redis stream ``run:events:<run id>`` and ``GET
/api/chat/runs/<id>/events?after_seq=<seq>`` polls it once a second on any replica
(``yuxi/services/agent_run_service.py``, ``stream_agent_run_events``). Its read,
``list_run_stream_events``, asks Redis for ``XRANGE <key> <seq> +``, which includes the event at
``<seq>`` itself. So the endpoint sends the last event again on every poll, and once the run has
ended it never sees "no new events", the condition for its ``close`` event: a finished run's
connection stays open, re-sending its last event every second, for ``RUN_SSE_MAX_CONNECTION_MINUTES``
(30). The web page skips the repeats (it compares seqs) but keeps the connection, and each one
keeps an api process polling PostgreSQL and Redis.

Here the api's ``list_run_stream_events`` asks from ``(<seq>`` (exclusive, Redis 6.2+): each event
is sent once, also to a client resuming from its last seq on another replica, and a finished run's
stream closes once read to its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

REQUIRED_ATTRIBUTES = ("list_run_stream_events",)
FROM_START = frozenset({"", "0", "0-0"})  # the app's own "from the first event"
_PATCHED = "__yuxi_k8s_exclusive__"


def missing_attributes(module: Any) -> list[str]:
    return [f"agent_run_service.{n}" for n in REQUIRED_ATTRIBUTES if not hasattr(module, n)]


def exclusive(cursor: str) -> str:
    """The XRANGE start after *cursor*: ``(<seq>``; the start of the stream stays as the app has it."""
    text = str(cursor or "").strip()
    return text if text in FROM_START or text.startswith("(") else f"({text}"


def install(module: Any) -> None:
    """Patch ``yuxi.services.agent_run_service`` (it calls ``list_run_stream_events`` by that name)."""
    original: Callable[..., Awaitable[list[dict[str, Any]]]] = module.list_run_stream_events
    if getattr(original, _PATCHED, False):
        return

    async def list_run_stream_events(run_id: str, *, after_seq: str = "0-0", limit: int = 200) -> Any:
        return await original(run_id, after_seq=exclusive(after_seq), limit=limit)

    setattr(list_run_stream_events, _PATCHED, True)
    module.list_run_stream_events = list_run_stream_events
