"""The login rate limit for the whole site, in Redis, keyed on the address the kit's nginx saw.

Yuxi-Know 0.6.1 (``server/main.py``, ``LoginRateLimitMiddleware``) allows 10
``POST /api/auth/token`` a minute per client, counted in the memory of each
process and keyed on the *first* ``X-Forwarded-For`` entry, which the client
writes: with N replicas the limit is N x 10, and a client that sends a new
header each time is never limited.

Here the middleware's ``dispatch`` counts in Redis instead: one counter per
client, ``yuxi-k8s:login-attempts:<address>``, made by the first attempt with the
window as its TTL (one Lua script, so a counter never outlives its window), a
request refused (429, ``Retry-After``) once the counter passes the app's
maximum, and the counter deleted by a successful login, as the app does. The
app's own numbers (``RATE_LIMIT_MAX_ATTEMPTS``, ``RATE_LIMIT_WINDOW_SECONDS``,
``RATE_LIMIT_ENDPOINTS``) are used unchanged.

The client address is the *last* ``X-Forwarded-For`` entry (the one the nearest
proxy wrote), else the peer address. The kit's nginx replaces the header with
the address it saw (``proxy_set_header X-Forwarded-For $remote_addr``), and only
the web pods may reach the api (NetworkPolicy), so the header holds exactly the
address nginx trusts: a client's own header neither resets nor dodges the limit.
Behind an ingress or gateway that address is the proxy's unless nginx restores
the client's (``real-ip.conf``; docs/database-mode.md, "Client addresses").

When Redis cannot be reached the app's own per-process limit applies (logged).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from yuxi_k8s.state.errors import error_line

log = logging.getLogger("yuxi_k8s.app.login_limit")

KEY_PREFIX = "yuxi-k8s:login-attempts:"
REQUIRED_SERVER_ATTRIBUTES = (
    "LoginRateLimitMiddleware",
    "RATE_LIMIT_MAX_ATTEMPTS",
    "RATE_LIMIT_WINDOW_SECONDS",
    "RATE_LIMIT_ENDPOINTS",
)
REDIS_TIMEOUT_S = 2.0
# One attempt: the counter, made with the window as TTL by the first attempt; its TTL back.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


def client_address(headers: Any, peer: str | None) -> str:
    """The last X-Forwarded-For entry (what the nearest proxy saw), else the peer's address."""
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return peer or "unknown"


class SharedAttempts:
    """Login attempts per client in Redis (redis.asyncio, made on first use in the server's loop)."""

    def __init__(self, redis_url: str, window_s: int, prefix: str = KEY_PREFIX) -> None:
        self.redis_url = redis_url
        self.window_s = window_s
        self.prefix = prefix
        self._client: Any = None
        self._warned_at = 0.0

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(
                self.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        return self._client

    async def hit(self, client: str) -> tuple[int, int]:
        """Count one attempt; (attempts in this window, seconds left in it)."""
        count, ttl = await self._redis().eval(_HIT, 1, self.prefix + client, self.window_s)
        return int(count), max(1, int(ttl))

    async def forget(self, client: str) -> None:
        await self._redis().delete(self.prefix + client)

    def warn_unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute, not once a login
            self._warned_at = now
            log.warning("login limit: Redis unreachable, each replica counts alone (%s)", error_line(exc))


def missing_attributes(server_main: Any) -> list[str]:
    missing = [f"server.main.{n}" for n in REQUIRED_SERVER_ATTRIBUTES if not hasattr(server_main, n)]
    middleware = getattr(server_main, "LoginRateLimitMiddleware", None)
    if middleware is not None and not hasattr(middleware, "dispatch"):
        missing.append("server.main.LoginRateLimitMiddleware.dispatch")
    return missing


class LoginLimitError(RuntimeError):
    """The application lacks what the shared login limit patches; nothing was changed."""


def install(server_main: Any, redis_url: str) -> SharedAttempts:
    """Patch the app's login-limit middleware class (before its first request builds the stack)."""
    import redis

    if missing := missing_attributes(server_main):
        raise LoginLimitError(f"this Yuxi-Know lacks what the login limit patches: {', '.join(missing)}")
    from fastapi.responses import JSONResponse

    middleware = server_main.LoginRateLimitMiddleware
    limit = int(server_main.RATE_LIMIT_MAX_ATTEMPTS)
    endpoints = set(server_main.RATE_LIMIT_ENDPOINTS)
    attempts = SharedAttempts(redis_url, int(server_main.RATE_LIMIT_WINDOW_SECONDS))
    per_process = middleware.dispatch

    async def dispatch(self: Any, request: Any, call_next: Any) -> Any:
        if ((request.url.path.rstrip("/") or "/"), request.method.upper()) not in endpoints:
            return await call_next(request)
        client = client_address(request.headers, request.client.host if request.client else None)
        try:
            count, retry_after = await attempts.hit(client)
        except (redis.RedisError, OSError) as exc:
            attempts.warn_unreachable(exc)
            return await per_process(self, request, call_next)
        if count > limit:
            return JSONResponse(
                status_code=429,
                content={"detail": f"Too many login attempts; try again in {retry_after} s"},
                headers={"Retry-After": str(retry_after)},
            )
        response = await call_next(request)
        if response.status_code < 400:
            try:
                await attempts.forget(client)
            except (redis.RedisError, OSError) as exc:
                attempts.warn_unreachable(exc)
        return response

    middleware.dispatch = dispatch
    return attempts
