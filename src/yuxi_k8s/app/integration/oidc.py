"""SSO across replicas: the OIDC login's state and one-time login codes in Redis, not in a replica.

Yuxi-Know 0.6.1 (``yuxi/services/oidc_service.py``, ``OIDCUtils``) keeps both in
class dictionaries of the process: the ``state`` made when the browser is sent
to the identity provider (5 minutes) and the one-time code the callback hands
to the web page to exchange for the token (1 minute). Behind a Service the
callback, or the exchange, usually reaches another replica, which knows neither,
and the login fails. Here the four methods that make and consume them use
Redis (``REDIS_URL``, the app's; keys ``yuxi-k8s:oidc:state:<state>`` and
``yuxi-k8s:oidc:code:<code>``) with the app's own lifetimes as TTL, and consume
with ``GETDEL``: each is used once, by whichever replica gets it first.

The app calls these methods synchronously inside its request handlers, so a
Redis round trip (sub-millisecond in a cluster, at most the client timeout)
runs on the event loop. When Redis cannot be reached the login fails with the
app's own error (500 on the login URL; "session expired" on the callback)
and the reason is logged: there is no per-replica fallback that would
half-work.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import redis

from yuxi_k8s.state.errors import error_line

log = logging.getLogger("yuxi_k8s.app.oidc")

KEY_PREFIX = "yuxi-k8s:oidc:"
REQUIRED_OIDC_ATTRIBUTES = (
    "generate_state",
    "verify_state",
    "generate_login_code",
    "consume_login_code",
    "_state_ttl_seconds",
    "_login_code_ttl_seconds",
)


class SharedTokens:
    """Short-lived single-use tokens with a JSON payload, in Redis."""

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def issue(self, kind: str, payload: Any, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        try:
            key = f"{self.prefix}{kind}:{token}"
            self.client.set(key, json.dumps(payload), ex=max(1, int(ttl_s)), nx=True)
        except redis.RedisError as exc:
            log.error("OIDC %s not stored: Redis unreachable (%s)", kind, error_line(exc))
            raise
        return token

    def take(self, kind: str, token: str) -> Any | None:
        """The payload, once; None when unknown, expired or already taken."""
        if not token:
            return None
        try:
            raw = self.client.getdel(f"{self.prefix}{kind}:{token}")
        except redis.RedisError as exc:
            log.error("OIDC %s not checked: Redis unreachable (%s)", kind, error_line(exc))
            return None
        return None if raw is None else json.loads(raw)


def missing_attributes(oidc_utils_cls: Any) -> list[str]:
    return [f"OIDCUtils.{n}" for n in REQUIRED_OIDC_ATTRIBUTES if not hasattr(oidc_utils_cls, n)]


def install(oidc_utils_cls: Any, tokens: SharedTokens) -> None:
    """Patch the app's OIDCUtils class: state and login codes through *tokens*."""

    def generate_state(cls: Any, redirect_path: str = "/") -> str:
        return tokens.issue("state", {"redirect_path": redirect_path}, cls._state_ttl_seconds)

    def verify_state(cls: Any, state: str) -> dict[str, Any] | None:
        data = tokens.take("state", state)
        return None if data is None else {"redirect_path": data["redirect_path"]}

    def generate_login_code(cls: Any, payload: dict[str, Any]) -> str:
        return tokens.issue("code", payload, cls._login_code_ttl_seconds)

    def consume_login_code(cls: Any, code: str) -> dict[str, Any] | None:
        data = tokens.take("code", code)
        return data if isinstance(data, dict) else None

    oidc_utils_cls.generate_state = classmethod(generate_state)
    oidc_utils_cls.verify_state = classmethod(verify_state)
    oidc_utils_cls.generate_login_code = classmethod(generate_login_code)
    oidc_utils_cls.consume_login_code = classmethod(consume_login_code)
