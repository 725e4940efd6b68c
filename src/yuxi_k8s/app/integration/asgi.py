"""The ASGI application uvicorn serves in database mode: the app's own, behind a readiness route.

``GET /api/system/ready`` answers 200 while the settings store is live (change
feed proven alive, replica lease renewed) and 503 otherwise, so a replica that
can no longer see other replicas' settings leaves the Service instead of serving
stale ones. Everything else goes to ``server.main:app`` unchanged (in database mode its
login limit counts in Redis, :mod:`.login_limit`: the class is in ``server.main``,
which only this import may load, after the settings are bound), and a settings save the
application could not use is answered 422 with one line (:class:`SettingsRefusedError`;
the app's routes would let it become a 500). With
``YUXI_K8S_TEST_HOOKS=1`` (the kit's end-to-end tier only; a validate rule keeps
it out of staging and prod) :mod:`.testhooks` adds its routes.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from yuxi_k8s.app.integration import login_limit, runtime
from yuxi_k8s.app.integration.app_redis import app_redis_url
from yuxi_k8s.app.integration.settings_binding import SettingsRefusedError
from yuxi_k8s.state import StateError

log = logging.getLogger("yuxi_k8s.app")

READY_PATH = "/api/system/ready"
TEST_HOOKS_ENV = "YUXI_K8S_TEST_HOOKS"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class WithReadiness:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.inner(scope, self._startup_in_turn(receive), self._after_lifespan(send))
            return
        if scope["type"] == "http" and scope["path"] == READY_PATH and scope["method"] in ("GET", "HEAD"):
            ok, detail = runtime.readiness()
            body = json.dumps({"status": "ready" if ok else "not ready", **detail}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200 if ok else 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        if scope["type"] == "http" and runtime.ACTIVE is not None:
            await catch_up(runtime.ACTIVE)
        await self.inner(scope, receive, send)

    @staticmethod
    def _startup_in_turn(receive: Receive) -> Receive:
        """The app's start-up (its DDL and seeds) waits for the cluster-wide start-up lock."""

        async def forward() -> MutableMapping[str, Any]:
            message = await receive()
            active = runtime.ACTIVE
            if message["type"] == "lifespan.startup" and active is not None:
                await asyncio.to_thread(active.startup_lock.acquire)
            return message

        return forward

    @staticmethod
    def _after_lifespan(send: Send) -> Send:
        """Let the next replica start once this one's start-up answered; give up the lease and
        the store once the app's own shutdown (the task drain) is done: uvicorn re-raises SIGTERM
        after that, so nothing later in the process would run."""

        async def forward(message: MutableMapping[str, Any]) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                active = runtime.ACTIVE
                if active is not None:
                    await asyncio.to_thread(active.startup_lock.release)
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                active = runtime.ACTIVE
                if active is not None:
                    await asyncio.to_thread(active.close)
            await send(message)

        return forward


async def catch_up(active: runtime.Runtime) -> None:
    """Read your writes across replicas: a request that starts after another replica acknowledged
    a settings save sees it (one query when nothing changed). Unreachable store: the request goes
    on with what this replica holds, and readiness reports the store."""
    try:
        await asyncio.to_thread(active.catch_up)
    except StateError as exc:
        log.warning("could not catch up with the settings store: %s", exc)


async def refused(_request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse  # the application's own framework

    return JSONResponse({"detail": str(exc)}, status_code=422)


def build() -> WithReadiness:
    server_main = importlib.import_module("server.main")
    inner = server_main.app
    if runtime.ACTIVE is not None:  # database mode: one login limit for all replicas
        login_limit.install(server_main, app_redis_url())
        inner.add_exception_handler(SettingsRefusedError, refused)
    if os.environ.get(TEST_HOOKS_ENV) == "1":
        from yuxi_k8s.app.integration import testhooks

        testhooks.install(inner)
    return WithReadiness(inner)


app = build()
