"""Chat answers in flight across a rollout (per-process state, row 17): the runs API's two gaps.

**The api: a run's events read from after the client's cursor, not from it.**

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

**The worker: a stop drains the runs in progress.** arq's default on SIGTERM cancels every job
at once, and the app's ``process_agent_run`` takes the cancel as the user's: the run ends
``cancelled`` with an ``interrupted`` event, the answer cut (no retry: the job returned). Here the
worker's settings get ``job_completion_wait`` (arq's own drain): on SIGTERM it stops taking jobs,
lets the runs it has finish for up to ``YUXI_K8S_WORKER_DRAIN_S`` seconds (default 270: the
worker Deployment's grace period of 300 s less 30), then cancels what is left as before.
``YUXI_K8S_WORKER_DRAIN_S=0`` keeps the app's behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

REQUIRED_ATTRIBUTES = ("list_run_stream_events",)
WORKER_ATTRIBUTES = ("WorkerSettings",)
DRAIN_ENV = "YUXI_K8S_WORKER_DRAIN_S"
DEFAULT_DRAIN_S = 270  # components/worker: terminationGracePeriodSeconds 300, less 30 s
FROM_START = frozenset({"", "0", "0-0"})  # the app's own "from the first event"
_PATCHED = "__yuxi_k8s_exclusive__"


def missing_attributes(module: Any) -> list[str]:
    return [f"agent_run_service.{n}" for n in REQUIRED_ATTRIBUTES if not hasattr(module, n)]


def missing_worker_attributes(module: Any) -> list[str]:
    import inspect

    from arq.worker import Worker

    missing = [f"run_worker.{n}" for n in WORKER_ATTRIBUTES if not hasattr(module, n)]
    if "job_completion_wait" not in inspect.signature(Worker).parameters:
        missing.append("arq Worker(job_completion_wait=...) (arq 0.26+)")
    return missing


def drain_seconds(env: Mapping[str, str]) -> int:
    """``YUXI_K8S_WORKER_DRAIN_S`` (default :data:`DEFAULT_DRAIN_S`); ValueError in one line."""
    raw = env.get(DRAIN_ENV, "").strip()
    if not raw:
        return DEFAULT_DRAIN_S
    if not raw.isdigit():
        raise ValueError(f"{DRAIN_ENV} must be a whole number of seconds (0 for none), got {raw!r}")
    return int(raw)


def install_worker_drain(module: Any, seconds: int) -> None:
    """Give ``yuxi.services.run_worker.WorkerSettings`` arq's ``job_completion_wait`` (0: unchanged)."""
    if seconds > 0:
        module.WorkerSettings.job_completion_wait = seconds


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
