"""Speaking to the real application's HTTP API in the app-tier tests: the admin's token, JSON calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from yuxi_k8s.app import localrun
from yuxi_k8s.app.localrun import Server

# The `servers` fixture (tests/app/conftest.py): start(name, kit=True, **env) -> a ready replica.
StartServer = Callable[..., Server]

ADMIN = {"user_id": "admin", "password": "Admin-pass-123"}


def admin_headers(server: Server) -> dict[str, str]:
    """Make the first admin if the site has none, log in, return the bearer header."""
    return localrun.admin_headers(server, ADMIN["user_id"], ADMIN["password"])


def call(server: Server, method: str, path: str, auth: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=auth, timeout=60, **kw)
