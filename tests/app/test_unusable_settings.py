"""Issue 20 items 13 and 14 replayed on two replicas of the real application (its HTTP API).

13: ``Config`` does not check a value on assignment, so ``POST /api/system/config`` stored
``sandbox_exec_timeout_seconds = [1]``; every replica starting afterwards stopped with a
TypeError (``int([1])``) and the running ones failed every later save. 14: a custom provider
whose ``env`` names a credential of the pods (``JWT_SECRET_KEY``, ``POSTGRES_PASSWORD``, ...)
was stored and pushed to every replica, and the application sends that variable's value as
the bearer key to the provider's ``base_url``. The baseline shows both on the application
alone; with ``yuxi-k8s-app`` the save is refused, a bad row already stored is skipped, and
every replica keeps serving and saving.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll
from yuxi_k8s.state.settings import libpq_url

KEY = "sandbox_exec_timeout_seconds"
SECRET = "e2e-shared-secret"  # app_env's JWT_SECRET_KEY


class _Capture(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        _Capture.seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def attacker() -> Iterator[str]:
    """A server of the admin's: records the Authorization header of every request it gets."""
    _Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _evil(base_url: str, env: str = "JWT_SECRET_KEY") -> dict[str, Any]:
    data = {
        "name": "Evil",
        "url": base_url,
        "base_url": base_url,
        "default": "m",
        "env": env,
        "models": ["m"],
    }
    return {"provider_id": "evil", "provider_data": data}


def _setting(server: Server, auth: dict[str, str]) -> Any:
    reply = call(server, "GET", "/api/system/config", auth)
    assert reply.status_code == 200, reply.text
    return reply.json()[KEY]


def _custom(server: Server, auth: dict[str, str]) -> dict[str, Any]:
    reply = call(server, "GET", "/api/system/custom-providers", auth)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["providers"])


def test_the_application_alone_stores_both_and_a_replica_started_afterwards_stops(
    servers: StartServer, tmp_path: Path, attacker: str
) -> None:
    """The failures the kit prevents, on the same code without yuxi-k8s-app."""
    a = servers("a", kit=False)
    auth = admin_headers(a)
    assert call(a, "POST", "/api/system/custom-providers", auth, json=_evil(attacker)).status_code == 200
    call(a, "POST", "/api/system/custom-providers/evil/test", auth, json={"model_name": "m"})
    assert f"Bearer {SECRET}" in _Capture.seen, "the app no longer sends the named variable: re-read chat.py"
    assert call(a, "POST", "/api/system/config", auth, json={"key": KEY, "value": [1]}).status_code == 200
    with pytest.raises(AssertionError, match="server exited"):
        servers("b", kit=False)  # its Config() stops at int([1])


def test_a_value_of_another_type_is_refused_and_both_replicas_keep_serving_and_saving(
    servers: StartServer,
) -> None:
    a, b = servers("a"), servers("b")
    auth = admin_headers(a)
    bad = call(a, "POST", "/api/system/config", auth, json={"key": KEY, "value": [1]})
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"] == (
        f"settings not saved: key {KEY}: the application's field is an integer (int), not a list"
    )
    batch = call(a, "POST", "/api/system/config/update", auth, json={"default_model": "x/y", KEY: "soon"})
    assert batch.status_code == 422, batch.text  # all or nothing: default_model not saved either
    for server in (a, b):
        assert _setting(server, auth) == 180
        assert call(server, "GET", "/api/system/config", auth).json()["default_model"] != "x/y"
    for i, (writer, reader) in enumerate(((a, b), (b, a))):  # later saves work on both
        ok = call(writer, "POST", "/api/system/config", auth, json={"key": KEY, "value": 200 + i})
        assert ok.status_code == 200, ok.text
        poll("the other replica to serve the save", lambda r=reader, v=200 + i: _setting(r, auth) == v, 10)
    servers("c")  # and a replica starting now starts


def test_a_bad_row_already_in_the_table_does_not_stop_a_starting_replica(
    servers: StartServer, kit_db: str
) -> None:
    evil = _evil("http://127.0.0.1:9/v1", "POSTGRES_PASSWORD")["provider_data"]
    with psycopg.connect(libpq_url(kit_db), autocommit=True) as conn:  # as an older kit, or a hand, left it
        conn.execute("INSERT INTO yuxi_k8s.config_entries (key, value) VALUES (%s, '\"soon\"')", (KEY,))
        conn.execute(
            "INSERT INTO yuxi_k8s.config_providers (scope, name, payload) VALUES ('custom', 'evil', %s)",
            (Jsonb({**evil, "custom": True}),),
        )
    a = servers("a")
    auth = admin_headers(a)
    assert _setting(a, auth) == 180 and "evil" not in _custom(a, auth)
    log = a.log.read_text()
    assert log.count(f"stored setting {KEY} (version 1) skipped, the replica goes on without it") == 1, log
    assert log.count("stored provider custom/evil (version 1) skipped") == 1
    ok = call(a, "POST", "/api/system/config", auth, json={"key": KEY, "value": 240})  # overwrites the row
    assert ok.status_code == 200, ok.text
    assert _setting(servers("b"), auth) == 240


def test_a_provider_naming_another_variable_is_refused_and_reaches_no_replica(
    servers: StartServer, kit_db: str, attacker: str
) -> None:
    a, b = servers("a"), servers("b")
    auth = admin_headers(a)
    for env in ("JWT_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_URL", "${MINIO_SECRET_KEY}"):
        reply = call(a, "POST", "/api/system/custom-providers", auth, json=_evil(attacker, env))
        # upstream's route answers every failure of add_custom_provider with a 500 of its own
        assert reply.status_code >= 400, reply.text
    assert "provider custom/evil: env must name a model-provider key variable" in a.log.read_text()
    good = _evil(attacker, "NO_API_KEY")
    assert call(a, "POST", "/api/system/custom-providers", auth, json=good).status_code == 200
    poll("B to list the provider", lambda: "evil" in _custom(b, auth), 10)
    edit = {**good["provider_data"], "env": "JWT_SECRET_KEY"}
    changed = call(b, "PUT", "/api/system/custom-providers/evil", auth, json=edit)
    assert changed.status_code >= 400, changed.text
    for server in (a, b):
        assert _custom(server, auth)["evil"]["env"] == "NO_API_KEY"
    call(b, "POST", "/api/system/custom-providers/evil/test", auth, json={"model_name": "m"})
    assert all(SECRET not in header for header in _Capture.seen), _Capture.seen
    with psycopg.connect(libpq_url(kit_db)) as conn:
        envs = [r[0] for r in conn.execute("SELECT payload->>'env' FROM yuxi_k8s.config_providers")]
    assert envs == ["NO_API_KEY"]
