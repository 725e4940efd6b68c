"""The reference API: Yuxi-Know's deployment contract on top of the state library, nothing more.

It answers where the real API answers (port 5050, ``/api/system/health``,
``/api/system/config``), so the manifests, probes, NetworkPolicies and the
state layer can be proven on a cluster before the heavy real image goes in.
Every response names the pod that answered: header ``X-Served-By`` and a
``served_by`` field.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from yuxi_k8s import __version__
from yuxi_k8s.state import (
    ConflictError,
    DistributedConfig,
    NotFoundError,
    Settings,
    StateUnavailableError,
    health,
)

log = logging.getLogger("yuxi_k8s.server")

SERVED_BY = "served_by"  # the field every JSON body carries; also refused as a config key


def pod_name() -> str:
    """The pod's name: the downward API's POD_NAME, else the hostname Kubernetes sets to it."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class ServerState:
    """What the handlers share: the settings, the config store (opened lazily), and drain status."""

    def __init__(self, settings: Settings, pod: str) -> None:
        self.settings = settings
        self.pod = pod
        self.draining = False
        self.in_flight = 0
        self._config: DistributedConfig | None = None
        self._open_lock = threading.Lock()
        self.last_open_error: str | None = None

    def config(self) -> DistributedConfig:
        """The store; opened on first use so the server starts (and is live) while the database is down."""
        if self._config is not None:
            return self._config
        with self._open_lock:
            if self._config is None:
                try:
                    self._config = DistributedConfig.open(self.settings)
                    self.last_open_error = None
                except StateUnavailableError as exc:
                    self.last_open_error = str(exc)
                    raise
        return self._config

    def close(self) -> None:
        if self._config is not None:
            self._config.close()
            self._config = None


def _json(state: ServerState, body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({**body, SERVED_BY: state.pod}, status_code=status)


def _error(state: ServerState, status: int, detail: str) -> JSONResponse:
    return _json(state, {"detail": detail}, status)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(state: ServerState, handler: Handler) -> Handler:
    """Map the state library's errors to HTTP: 503 unavailable, 404 missing, 409 stale write."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except StateUnavailableError as exc:
            return _error(state, 503, f"state unavailable: {exc}")
        except NotFoundError as exc:
            return _error(state, 404, str(exc) or "not found")
        except ConflictError as exc:
            return _error(state, 409, str(exc) or "version conflict")
        except ValueError as exc:
            return _error(state, 400, str(exc))

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError as exc:
        raise ValueError("request body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


def _expected_version(request: Request, body: dict[str, Any] | None = None) -> int | None:
    """Optimistic concurrency: the version the client read, from the body, ?version= or If-Match."""
    raw = (body or {}).get("expected_version")
    if raw is None:
        raw = request.query_params.get("expected_version") or request.headers.get("if-match")
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw).strip('"'))
    except ValueError as exc:
        raise ValueError(f"expected_version must be an integer, got {raw!r}") from exc


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    if key == SERVED_BY:
        raise ValueError(f"{SERVED_BY!r} is reserved for the answering pod's name")
    return key


def build_routes(state: ServerState) -> list[Route]:
    async def health_endpoint(request: Request) -> Response:
        # Liveness: checks nothing, like the real API, so a database outage never restarts pods.
        return _json(
            state, {"status": "ok", "message": "yuxi-k8s reference server is alive", "version": __version__}
        )

    async def ready(request: Request) -> Response:
        if state.draining:
            return _json(state, {"status": "draining", "checks": {}}, 503)
        ok, checks = await run_in_threadpool(health.readiness, state.settings)
        try:
            await run_in_threadpool(state.config)
            checks["config"] = {"ok": True, "mode": state.settings.mode}
        except StateUnavailableError as exc:
            ok = False
            checks["config"] = {"ok": False, "mode": state.settings.mode, "error": str(exc)}
        return _json(state, {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    async def get_config(request: Request) -> Response:
        items = await run_in_threadpool(lambda: state.config().items())
        return _json(state, items)

    async def set_config(request: Request) -> Response:
        body = await _body(request)
        key = _check_key(body.get("key"))
        if "value" not in body:
            raise ValueError("body must have 'key' and 'value'")
        expected = _expected_version(request, body)
        version = await run_in_threadpool(
            lambda: state.config().set(key, body["value"], expected_version=expected, updated_by=state.pod)
        )
        items = await run_in_threadpool(lambda: state.config().items())
        return JSONResponse({**items, SERVED_BY: state.pod}, headers={"X-Config-Version": str(version)})

    async def update_config(request: Request) -> Response:
        body = await _body(request)
        for key in body:
            _check_key(key)

        def apply() -> dict[str, Any]:
            cfg = state.config()
            for key, value in body.items():
                cfg.set(key, value, updated_by=state.pod)
            return cfg.items()

        return _json(state, await run_in_threadpool(apply))

    async def get_config_key(request: Request) -> Response:
        key = request.path_params["key"]
        versioned = await run_in_threadpool(lambda: state.config().get_versioned(key))
        if versioned is None:
            return _error(state, 404, f"config key {key!r} is not set")
        return _json(state, {"key": key, "value": versioned.value, "version": versioned.version})

    async def delete_config_key(request: Request) -> Response:
        key = request.path_params["key"]
        expected = _expected_version(request)
        await run_in_threadpool(lambda: state.config().delete(key, expected_version=expected))
        return _json(state, {"key": key, "deleted": True})

    async def list_databases(request: Request) -> Response:
        kb_type = request.query_params.get("kb_type")
        kbs = await run_in_threadpool(lambda: state.config().list_kbs(kb_type))
        return _json(state, {"databases": kbs})

    async def list_files(request: Request) -> Response:
        db_id = request.path_params["db_id"]
        files = await run_in_threadpool(lambda: state.config().list_files(db_id))
        return _json(state, {"db_id": db_id, "files": files})

    def route(path: str, endpoint: Handler, methods: list[str]) -> Route:
        return Route(path, _guarded(state, endpoint), methods=methods)

    def record_routes(
        path: str,
        id_param: str,
        noun: str,
        *,
        get: Callable[[DistributedConfig, str], dict[str, Any] | None],
        put: Callable[[DistributedConfig, str, dict[str, Any], int | None], int],
        delete: Callable[[DistributedConfig, str], None],
    ) -> list[Route]:
        """GET (404 when absent), PUT (optimistic version) and DELETE of one kind of record by its id."""

        async def get_record(request: Request) -> Response:
            record_id = request.path_params[id_param]
            record = await run_in_threadpool(lambda: get(state.config(), record_id))
            if record is None:
                return _error(state, 404, f"{noun} {record_id!r} not found")
            return _json(state, {id_param: record_id, "record": record})

        async def put_record(request: Request) -> Response:
            record_id = request.path_params[id_param]
            body = await _body(request)
            expected = _expected_version(request)
            version = await run_in_threadpool(lambda: put(state.config(), record_id, body, expected))
            return _json(state, {id_param: record_id, "version": version})

        async def delete_record(request: Request) -> Response:
            record_id = request.path_params[id_param]
            await run_in_threadpool(lambda: delete(state.config(), record_id))
            return _json(state, {id_param: record_id, "deleted": True})

        return [
            route(path, get_record, ["GET"]),
            route(path, put_record, ["PUT"]),
            route(path, delete_record, ["DELETE"]),
        ]

    return [
        route("/api/system/health", health_endpoint, ["GET"]),
        route("/api/system/ready", ready, ["GET"]),
        route("/api/system/config", get_config, ["GET"]),
        route("/api/system/config", set_config, ["POST"]),
        route("/api/system/config/update", update_config, ["POST"]),
        route("/api/system/config/{key}", get_config_key, ["GET"]),
        route("/api/system/config/{key}", delete_config_key, ["DELETE"]),
        route("/api/knowledge/databases", list_databases, ["GET"]),
        *record_routes(
            "/api/knowledge/databases/{db_id}",
            "db_id",
            "knowledge base",
            get=lambda cfg, db_id: cfg.get_kb(db_id),
            put=lambda cfg, db_id, body, expected: cfg.put_kb(db_id, body, expected_version=expected),
            delete=lambda cfg, db_id: cfg.delete_kb(db_id),
        ),
        route("/api/knowledge/databases/{db_id}/files", list_files, ["GET"]),
        *record_routes(
            "/api/knowledge/files/{file_id}",
            "file_id",
            "file",
            get=lambda cfg, file_id: cfg.get_file(file_id),
            put=lambda cfg, file_id, body, expected: cfg.put_file(file_id, body, expected_version=expected),
            delete=lambda cfg, file_id: cfg.delete_file(file_id),
        ),
    ]


class ServedByMiddleware:
    """Pure ASGI middleware: names the pod in a header and counts requests in flight."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.header = (b"x-served-by", state.pod.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], self.header]
            await send(message)

        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            self.state.in_flight -= 1


def shutdown_delay_from_env() -> float:
    return float(os.environ.get("SHUTDOWN_DELAY_SECONDS") or 3.0)


def drain_on_sigterm(state: ServerState, delay: float) -> None:
    """Wrap the running server's SIGTERM handler: first report not ready, then stop after *delay*.

    Used when the app runs under a plain ``uvicorn server.main:app`` (the manifests'
    command); ``yuxi-k8s serve`` does the same in its own server class.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if state.draining:  # a second SIGTERM: stop now
            previous(sig, frame)
            return
        state.draining = True
        # uvicorn's own logger: under the plain uvicorn CLI only its loggers are configured.
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.info("SIGTERM: not ready now, serving %.1fs more, then draining", delay)
        timer = threading.Timer(delay, previous, args=(sig, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)


def create_app(
    settings: Settings | None = None, pod: str | None = None, *, wrap_sigterm: bool = False
) -> Starlette:
    """The ASGI app; ``app.state.server`` is the :class:`ServerState` (the runner flips ``draining``).

    *wrap_sigterm* installs :func:`drain_on_sigterm` at start-up (after uvicorn set its handlers).
    """
    state = ServerState(settings or Settings.from_env(), pod or pod_name())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if wrap_sigterm and threading.current_thread() is threading.main_thread():
            drain_on_sigterm(state, shutdown_delay_from_env())
        try:
            await run_in_threadpool(state.config)
        except StateUnavailableError as exc:  # stay live, report not ready, retry on /ready
            log.warning("state not reachable at start-up (will retry): %s", exc)
        yield
        await run_in_threadpool(state.close)

    app = Starlette(routes=build_routes(state), lifespan=lifespan)
    app.state.server = state
    app.add_middleware(ServedByMiddleware, state=state)
    return app
