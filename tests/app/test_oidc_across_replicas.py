"""SSO across replicas (per-process state, row 8): an OIDC login whose steps land on different replicas.

The application alone keeps the login's ``state`` and the one-time login code in
the memory of the replica that made them; with ``yuxi-k8s-app`` they are in
Redis, so the authorize step on A, the callback on B and the code exchange on A
complete one login, and each is good once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from tests.app import oidc_idp
from tests.app.servers import Servers
from tests.services_fixtures import LoopbackServices
from yuxi_k8s.app.integration.oidc import KEY_PREFIX
from yuxi_k8s.app.localrun import AppRunner, Server

CLIENT_ID, CLIENT_SECRET = "yuxi-know", "stand-in-client-secret"
USER = {"sub": "sso-0001", "preferred_username": "sso.alice", "email": "alice@example.test", "name": "Alice"}
# Where the provider sends the browser back: the site's own address; the test plays the browser.
REDIRECT_URI = "https://yuxi.example.test/api/auth/oidc/callback"


@pytest.fixture
def idp() -> Iterator[oidc_idp.StandInIdp]:
    with oidc_idp.serve(CLIENT_ID, CLIENT_SECRET, USER) as provider:
        yield provider


@pytest.fixture
def servers(
    app_runner: AppRunner,
    kit_db: str,
    loopback_services: LoopbackServices,
    idp: oidc_idp.StandInIdp,
    tmp_path: Path,
) -> Iterator[Servers]:
    env = {
        "OIDC_ENABLED": "true",
        "OIDC_ISSUER_URL": idp.url,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": REDIRECT_URI,
    }
    started = Servers(app_runner, kit_db, loopback_services.redis_url, tmp_path, **env)
    yield started
    started.stop()


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _authorize(a: Server, idp: oidc_idp.StandInIdp) -> dict[str, str]:
    """The browser asks A for the login URL and signs in at the provider: the callback's query."""
    reply = httpx.get(a.url + "/api/auth/oidc/login-url", params={"redirect_path": "/agent"}, timeout=30)
    assert reply.status_code == 200, reply.text
    login_url = reply.json()["login_url"]
    assert login_url.startswith(idp.url + "/authorize?"), login_url
    back = httpx.get(login_url, timeout=10, follow_redirects=False)
    assert back.status_code == 302, back.text
    assert back.headers["location"].startswith(REDIRECT_URI + "?")
    return _query(back.headers["location"])


def _callback(server: Server, query: dict[str, str]) -> dict[str, str]:
    """The provider's redirect reaches *server*; where the app sends the browser next."""
    reply = httpx.get(
        server.url + "/api/auth/oidc/callback", params=query, timeout=60, follow_redirects=False
    )
    assert reply.status_code == 302, reply.text
    target = urlsplit(reply.headers["location"])
    return {"path": target.path, **_query(reply.headers["location"])}


def test_a_login_started_on_a_completes_through_b_and_its_code_is_exchanged_on_a(
    servers: Servers, idp: oidc_idp.StandInIdp, loopback_services: LoopbackServices
) -> None:
    a = servers.start("a")
    b = servers.start("b")

    query = _authorize(a, idp)
    state_key = f"{KEY_PREFIX}state:{query['state']}"
    client = redis.Redis.from_url(loopback_services.redis_url)
    ttl = client.ttl(state_key)
    assert 0 < ttl <= 300, f"state {state_key} TTL {ttl}"  # the app's 5 minutes

    landed = _callback(b, query)
    assert landed["path"] == "/auth/oidc/callback", landed  # not /login?oidc_error=...
    assert "code" in landed, landed
    assert not client.exists(state_key)  # consumed
    code_ttl = client.ttl(f"{KEY_PREFIX}code:{landed['code']}")
    assert 0 < code_ttl <= 60, f"login code TTL {code_ttl}"  # the app's 1 minute

    exchanged = httpx.post(a.url + "/api/auth/oidc/exchange-code", json={"code": landed["code"]}, timeout=30)
    assert exchanged.status_code == 200, exchanged.text
    login: dict[str, Any] = exchanged.json()
    assert login["user_id_login"] == f"oidc:{USER['sub']}", login
    me = httpx.get(b.url + "/api/auth/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert me.status_code == 200, me.text

    # Each is good once, whichever replica tries again.
    again = httpx.post(b.url + "/api/auth/oidc/exchange-code", json={"code": landed["code"]}, timeout=30)
    assert again.status_code == 400, again.text
    replayed = _callback(a, query)
    assert replayed["path"] == "/login" and "oidc_error" in replayed, replayed
    assert idp.calls.count("POST /token") == 1  # the replayed state never reached the provider


def test_the_application_alone_fails_a_login_whose_callback_lands_on_another_replica(
    servers: Servers, idp: oidc_idp.StandInIdp
) -> None:
    """The baseline on the same code: the state made on A is unknown to B."""
    a = servers.start("a", kit=False)
    b = servers.start("b", kit=False)
    landed = _callback(b, _authorize(a, idp))
    assert landed["path"] == "/login" and "oidc_error" in landed, landed
    assert "POST /token" not in idp.calls
