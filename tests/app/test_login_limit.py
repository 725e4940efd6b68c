"""The login limit for the whole site (per-process state, row 9), on two processes of the real API.

The application alone counts failed logins in each process, keyed on the first
``X-Forwarded-For`` entry, which the client writes. With ``yuxi-k8s-app`` the
count is in Redis, per client address; the kit's nginx puts the address it saw
into ``X-Forwarded-For``, replacing the client's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.app.kit_nginx import KitNginx
from tests.app.servers import Servers
from tests.services_fixtures import LoopbackServices
from tests.support import require
from yuxi_k8s.app.integration.login_limit import KEY_PREFIX
from yuxi_k8s.app.localrun import AppRunner

LIMIT = 10  # the app's RATE_LIMIT_MAX_ATTEMPTS a minute


@pytest.fixture
def servers(
    app_runner: AppRunner, kit_db: str, loopback_services: LoopbackServices, tmp_path: Path
) -> Iterator[Servers]:
    started = Servers(app_runner, kit_db, loopback_services.redis_url, tmp_path)
    yield started
    started.stop()


def _login(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A failed login: a user that does not exist (no account gets locked on the way)."""
    form = {"username": f"nobody-{secrets.token_hex(3)}", "password": "wrong-password"}
    return httpx.post(url + "/api/auth/token", data=form, headers=headers or {}, timeout=30)


def _address() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"  # documentation range, new each run


def test_ten_failed_logins_split_over_two_replicas_refuse_the_eleventh_on_either(servers: Servers) -> None:
    a = servers.start("a")
    b = servers.start("b")
    client = {"X-Forwarded-For": _address()}  # what the kit's nginx sends: the address it saw
    for attempt in range(LIMIT):
        reply = _login((a, b)[attempt % 2].url, client)
        assert reply.status_code == 401, f"attempt {attempt + 1}: {reply.status_code} {reply.text}"
    for server in (a, b):
        refused = _login(server.url, client)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    other = _login(b.url, {"X-Forwarded-For": _address()})  # another client is not limited
    assert other.status_code == 401, other.text


def test_through_the_kits_nginx_a_forged_forwarded_for_neither_resets_nor_dodges_the_limit(
    servers: Servers, loopback_services: LoopbackServices, tmp_path: Path
) -> None:
    from yuxi_k8s.app import images, source

    web_tree = images.image_tree(source.resolve(), "web")
    require((web_tree / "usr/sbin/nginx").exists(), f"nginx in the web image tree {web_tree}")
    a = servers.start("a")
    b = servers.start("b")
    # nginx and this test talk over loopback: the one client address is 127.0.0.1 (a fresh count).
    redis.Redis.from_url(loopback_services.redis_url).delete(f"{KEY_PREFIX}127.0.0.1")
    nginx = KitNginx(web_tree, tmp_path / "nginx", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    try:
        nginx.wait_ready()
        # One client on 127.0.0.1 that writes a new X-Forwarded-For each time, as if from many.
        for attempt in range(LIMIT):
            reply = _login(nginx.url, {"X-Forwarded-For": _address()})
            assert reply.status_code == 401, f"attempt {attempt + 1}: {reply.status_code} {reply.text}"
        for _ in range(2):  # round robin: the next two reach both replicas
            refused = _login(nginx.url, {"X-Forwarded-For": _address()})
            assert refused.status_code == 429, refused.text
    finally:
        nginx.stop()
    served_by = {s.log.name: s.log.read_text().count("/api/auth/token") for s in (a, b)}
    assert all(served_by.values()), f"nginx spread the logins over both replicas: {served_by}"


def test_the_application_alone_counts_per_process_and_believes_the_clients_header(servers: Servers) -> None:
    """The baseline on the same code: what the kit changes (the 11th passes; a new header resets)."""
    a = servers.start("a", kit=False)
    b = servers.start("b", kit=False)
    client = {"X-Forwarded-For": _address()}
    for attempt in range(LIMIT):
        assert _login((a, b)[attempt % 2].url, client).status_code == 401, attempt
    assert _login(a.url, client).status_code == 401  # 6 of 10 on A: its own count is not full
    for _ in range(LIMIT - 6):
        _login(a.url, client)
    assert _login(a.url, client).status_code == 429  # A's count is full now...
    forged = {"X-Forwarded-For": f"{_address()}, {client['X-Forwarded-For']}"}
    assert _login(a.url, forged).status_code == 401  # ...and a new first entry starts a new one
