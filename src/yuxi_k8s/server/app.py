"""The reference API: Yuxi-Know's deployment contract on top of the state library, nothing more.

It answers where the real API answers (port 5050, ``/api/system/health``,
``/api/system/config``), so the manifests, probes, NetworkPolicies and the
state layer can be proven on a cluster before the heavy real image goes in.
Every response names the pod that answered: header ``X-Served-By`` and a
``served_by`` field.

Writes are refused unless a bearer token is configured (from a Secret: a file
or an environment variable, :class:`WriteAccess`) and presented, or anonymous
writes are enabled explicitly. Request bodies are capped (413 beyond), parsed
strictly (NaN, duplicate keys, deep nesting: 400 with the reason) and checked
before anything is stored; a bulk update writes all its keys or none.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    FencingError,
    NotFoundError,
    SchemaError,
    Settings,
    StateError,
    StateUnavailableError,
    health,
    open_config,
)
from yuxi_k8s.state.values import loads

log = logging.getLogger("yuxi_k8s.server")

SERVED_BY = "served_by"  # the field every JSON body carries; also refused as a config key
MAX_BODY_BYTES = 1024 * 1024
TOKEN_ENV = "YUXI_K8S_SERVER_TOKEN"
TOKEN_FILE_ENV = "YUXI_K8S_SERVER_TOKEN_FILE"
ANONYMOUS_ENV = "YUXI_K8S_SERVER_ANONYMOUS_WRITES"
_TRUE = {"1", "true", "yes", "on"}


def pod_name() -> str:
    """The pod's name: the downward API's POD_NAME, else the hostname Kubernetes sets to it."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class WriteAccess:
    """Who may write: the holder of a bearer token (from a Secret), or anyone if enabled explicitly.

    The token file is read on every write, so a rotated Secret takes effect without a restart.
    """

    token: str | None = None
    token_file: Path | None = None
    anonymous: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WriteAccess:
        env = os.environ if env is None else env
        token_file = env.get(TOKEN_FILE_ENV)
        return cls(
            token=env.get(TOKEN_ENV) or None,
            token_file=Path(token_file) if token_file else None,
            anonymous=(env.get(ANONYMOUS_ENV) or "").strip().lower() in _TRUE,
        )

    @property
    def describe(self) -> str:
        if self.token_file is not None:
            return f"bearer token from {self.token_file}"
        if self.token:
            return f"bearer token from ${TOKEN_ENV}"
        return "anyone (anonymous writes enabled)" if self.anonymous else "nobody (no token configured)"

    def _expected(self) -> str | None:
        if self.token_file is not None:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                reason = f"cannot read the token file ({exc.strerror})"
                raise HttpError(503, f"writes unavailable: {reason}") from None
            if not token:
                raise HttpError(503, "writes unavailable: the token file is empty")
            return token
        return self.token

    def check(self, request: Request) -> None:
        """Raise HttpError (401/403/503) unless *request* may write."""
        expected = self._expected()
        if expected is None:
            if self.anonymous:
                return
            raise HttpError(
                403,
                f"writes are disabled: configure a token (${TOKEN_FILE_ENV} or ${TOKEN_ENV}, from a "
                f"Secret) or enable anonymous writes explicitly (${ANONYMOUS_ENV}=true)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise HttpError(401, "a write needs 'Authorization: Bearer <token>'")


class ServerState:
    """What the handlers share: settings, write access, the config store (opened lazily), drain status."""

    def __init__(
        self, settings: Settings, pod: str, access: WriteAccess, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.settings = settings
        self.pod = pod
        self.access = access
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self.in_flight = 0
        self._config: DistributedConfig | None = None
        self._open_lock = threading.Lock()

    def config(self) -> DistributedConfig:
        """The store; opened on first use so the server starts (and is live) while the database is down."""
        if self._config is not None:
            return self._config
        with self._open_lock:
            if self._config is None:
                self._config = open_config(self.settings)
        return self._config

    def close(self) -> None:
        if self._config is not None:
            self._config.close()
            self._config = None


def _json(state: ServerState, body: dict[str, Any], status: int = 200, **kw: Any) -> JSONResponse:
    return JSONResponse({**body, SERVED_BY: state.pod}, status_code=status, **kw)


def _error(state: ServerState, status: int, detail: str) -> JSONResponse:
    return _json(state, {"detail": detail}, status)


Handler = Callable[[Request], Awaitable[Response]]

# The state library's errors as HTTP, most specific first. Messages are one line, without values.
_STATUS: list[tuple[type[Exception], int]] = [
    (StateUnavailableError, 503),
    (SchemaError, 503),
    (NotFoundError, 404),
    (ConflictError, 409),
    (FencingError, 409),
    (ValueError, 400),  # InvalidValueError and malformed request fields
]


def _guarded(state: ServerState, handler: Handler) -> Handler:
    """Map errors to HTTP: 400 refused input, 401/403 writes, 404, 409 stale write, 413, 503 outage.
    Anything else is a 500 with a one-line detail; the traceback goes to the log only."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError as exc:
            return _error(state, exc.status, exc.detail)
        except Exception as exc:
            for kind, status in _STATUS:
                if isinstance(exc, kind):
                    return _error(state, status, str(exc))
            if isinstance(exc, StateError):
                return _error(state, 500, str(exc))
            log.exception("%s %s failed", request.method, request.url.path)
            return _error(state, 500, f"internal error ({type(exc).__name__}); see the server's log")

    return wrapped


async def _body(state: ServerState, request: Request) -> dict[str, Any]:
    """The JSON object of the request, at most ``max_body_bytes`` (413), parsed strictly (400)."""
    limit = state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    data = loads(b"".join(chunks), "request body")
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


def _expected_version(request: Request, body: dict[str, Any] | None = None) -> int | None:
    """Optimistic concurrency: the version the client read, from the body, ?expected_version= or If-Match."""
    raw = (body or {}).get("expected_version")
    if raw is None:
        raw = request.query_params.get("expected_version") or request.headers.get("if-match")
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw).strip('"'))
    except ValueError:
        raise ValueError("expected_version must be an integer") from None


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
            state,
            {
                "status": "ok",
                "message": "yuxi-k8s reference server is alive",
                "version": __version__,
                "in_flight": max(0, state.in_flight - 1),  # other requests being served now
            },
        )

    async def ready(request: Request) -> Response:
        if state.draining:
            return _json(state, {"status": "draining", "checks": {}}, 503)
        ok, checks = await run_in_threadpool(health.readiness, state.settings)
        config: dict[str, Any] = {"mode": state.settings.mode}
        try:
            cfg = await run_in_threadpool(state.config)
            # Database mode: the cache is trusted only while its change feed is proven alive.
            config["ok"] = cfg.healthy
            if not cfg.healthy:
                config["error"] = "change feed not alive: cached settings are not trusted"
        except StateError as exc:
            config.update(ok=False, error=str(exc))
        checks["config"] = config
        ok = ok and config["ok"]
        return _json(state, {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    async def get_config(request: Request) -> Response:
        items = await run_in_threadpool(lambda: state.config().items())
        return _json(state, items)

    async def set_config(request: Request) -> Response:
        state.access.check(request)
        body = await _body(state, request)
        key = _check_key(body.get("key"))
        if "value" not in body:
            raise ValueError("body must have 'key' and 'value'")
        expected = _expected_version(request, body)
        version = await run_in_threadpool(
            lambda: state.config().set(key, body["value"], expected_version=expected, updated_by=state.pod)
        )
        items = await run_in_threadpool(lambda: state.config().items())
        return _json(state, items, headers={"X-Config-Version": str(version)})

    async def update_config(request: Request) -> Response:
        """Several keys at once, like the real API's: every item checked first, then all or none written."""
        state.access.check(request)
        body = await _body(state, request)
        for key in body:
            _check_key(key)

        def apply() -> dict[str, Any]:
            cfg = state.config()
            cfg.set_many(body, updated_by=state.pod)
            return cfg.items()

        return _json(state, await run_in_threadpool(apply))

    async def get_config_key(request: Request) -> Response:
        key = request.path_params["key"]
        versioned = await run_in_threadpool(lambda: state.config().get_versioned(key))
        if versioned is None:
            return _error(state, 404, f"config key {key!r} is not set")
        return _json(state, {"key": key, "value": versioned.value, "version": versioned.version})

    async def delete_config_key(request: Request) -> Response:
        state.access.check(request)
        key = request.path_params["key"]
        expected = _expected_version(request)
        await run_in_threadpool(lambda: state.config().delete(key, expected_version=expected))
        return _json(state, {"key": key, "deleted": True})

    def route(path: str, endpoint: Handler, methods: list[str]) -> Route:
        return Route(path, _guarded(state, endpoint), methods=methods)

    return [
        route("/api/system/health", health_endpoint, ["GET"]),
        route("/api/system/ready", ready, ["GET"]),
        route("/api/system/config", get_config, ["GET"]),
        route("/api/system/config", set_config, ["POST"]),
        route("/api/system/config/update", update_config, ["POST"]),
        route("/api/system/config/{key}", get_config_key, ["GET"]),
        route("/api/system/config/{key}", delete_config_key, ["DELETE"]),
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
    settings: Settings | None = None,
    pod: str | None = None,
    *,
    access: WriteAccess | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    wrap_sigterm: bool = False,
) -> Starlette:
    """The ASGI app; ``app.state.server`` is the :class:`ServerState` (the runner flips ``draining``).

    *access* defaults to :meth:`WriteAccess.from_env`. *wrap_sigterm* installs
    :func:`drain_on_sigterm` at start-up (after uvicorn set its handlers).
    """
    state = ServerState(
        settings or Settings.from_env(), pod or pod_name(), access or WriteAccess.from_env(), max_body_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if wrap_sigterm and threading.current_thread() is threading.main_thread():
            drain_on_sigterm(state, shutdown_delay_from_env())
        try:
            await run_in_threadpool(state.config)
        except StateError as exc:  # stay live, report not ready, retry on /ready
            log.warning("state not reachable at start-up (will retry): %s", exc)
        yield
        await run_in_threadpool(state.close)

    app = Starlette(routes=build_routes(state), lifespan=lifespan)
    app.state.server = state
    app.add_middleware(ServedByMiddleware, state=state)
    return app
