"""The reference server on loopback against the real PostgreSQL and Redis (db tier, no cluster).

Each server runs as its own process (``yuxi-k8s serve``), exactly as in a pod, so
signals, readiness and cross-replica propagation are the real thing. Issue 12's
findings on the server are replayed here: item 2 (no auth, 0.0.0.0, no body limit),
item 3 (poisoned bodies), item 6 (a hung listener behind a ready pod), item 13
(a bulk update that half-applies).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services_fixtures import LoopbackServices
from tests.state import helpers
from yuxi_k8s.state.db_backend import LISTENER_APPLICATION

pytestmark = pytest.mark.db

TOKEN = "preflight-token-" + uuid.uuid4().hex


@dataclass
class RunningServer:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    token: str | None = TOKEN

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def _auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def post(
        self, path: str, json: Any = None, *, content: bytes | None = None, token: str | None = ""
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json", **self._auth(self.token if token == "" else token)}
        if content is None:
            return httpx.post(self.url + path, json=json, headers=headers, timeout=10)
        return httpx.post(self.url + path, content=content, headers=headers, timeout=10)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(self.url + path, headers=self._auth(self.token), timeout=5)

    def ready_status(self) -> int:
        return self.get("/api/system/ready").status_code


@pytest.fixture(scope="module")
def state_env(loopback_services: LoopbackServices) -> Iterator[dict[str, str]]:
    """The application's variables for a database of this module, schema at head."""
    base, redis_url = loopback_services.database_url, loopback_services.redis_url
    url = helpers.create_database(base, prefix="yuxi_srv")
    helpers.upgrade(url)
    yield helpers.cli_env(
        POSTGRES_URL=url, REDIS_URL=redis_url, CONFIG_MODE="database", YUXI_K8S_SERVER_TOKEN=TOKEN
    )
    helpers.drop_database(url)


StartServer = Callable[..., RunningServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    started: list[RunningServer] = []

    def start(env: dict[str, str], name: str, *args: str, shutdown_delay: float = 1.0) -> RunningServer:
        port = helpers.free_port()
        log = tmp_path / f"{name}.log"
        host = [] if "--host" in args or "--default-host" in args else ["--host", "127.0.0.1"]
        argv = [a for a in args if a != "--default-host"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "yuxi_k8s", "serve", *host, "--port", str(port),
             "--shutdown-delay", str(shutdown_delay), *argv],
            env={**env, "POD_NAME": name},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        server = RunningServer(name, f"http://127.0.0.1:{port}", proc, log, env.get("YUXI_K8S_SERVER_TOKEN"))
        started.append(server)

        def up() -> bool:
            assert proc.poll() is None, f"server {name} exited: {log.read_text()}"
            return server.get("/api/system/health").status_code == 200

        helpers.wait_until(up, 20, f"server {name} to answer")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(params=["database", "file"])
def mode_env(request: pytest.FixtureRequest, state_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    if request.param == "database":
        return state_env
    saves = tmp_path / "saves"
    saves.mkdir()  # the saves volume exists in a pod; a missing one is an outage (503)
    return {**state_env, "CONFIG_MODE": "file", "SAVE_DIR": str(saves)}


def test_health_is_liveness_only_and_names_the_pod(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    server = start_server({**state_env, "REDIS_URL": f"redis://127.0.0.1:{helpers.free_port()}/0"}, "api-a")
    resp = server.get("/api/system/health")
    body = resp.json()
    assert resp.status_code == 200
    assert body["status"] == "ok" and body["message"] and body["version"]
    assert resp.headers["x-served-by"] == "api-a" and body["served_by"] == "api-a"
    # Redis unreachable: live, but not ready, and the failing check is named.
    ready = server.get("/api/system/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False
    assert ready.headers["x-served-by"] == "api-a"


def test_ready_when_postgres_and_redis_answer(state_env: dict[str, str], start_server: StartServer) -> None:
    server = start_server(state_env, "api-a")
    ready = server.get("/api/system/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["postgres"]["ok"] and checks["postgres"]["schema"] == "head"
    assert checks["redis"]["ok"] and checks["config"] == {"ok": True, "mode": "database"}


def test_config_written_on_one_replica_is_read_on_another_within_one_second(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    a = start_server(state_env, "api-a")
    b = start_server(state_env, "api-b")
    key = f"e2e_local_{uuid.uuid4().hex[:8]}"
    assert b.get("/api/system/config").status_code == 200
    written = a.post("/api/system/config", {"key": key, "value": {"n": 1}})
    assert written.status_code == 200, written.text
    assert written.json()[key] == {"n": 1} and written.json()["served_by"] == "api-a"
    assert written.headers["x-config-version"] == "1"
    t0 = time.monotonic()
    helpers.wait_until(lambda: b.get("/api/system/config").json().get(key) == {"n": 1}, 1.0, "replica b")
    assert time.monotonic() - t0 < 1.0
    # Optimistic concurrency: a write naming a stale version is refused, not applied.
    version = b.get(f"/api/system/config/{key}").json()["version"]
    assert (
        a.post("/api/system/config", {"key": key, "value": 2, "expected_version": version}).status_code == 200
    )
    stale = b.post("/api/system/config", {"key": key, "value": 3, "expected_version": version})
    assert stale.status_code == 409 and "conflict on" in stale.json()["detail"]
    assert a.get(f"/api/system/config/{key}").json()["value"] == 2
    # Bulk update, shaped like the real API's /config/update.
    bulk = b.post("/api/system/config/update", {key: 4, f"{key}_b": "x"})
    assert bulk.status_code == 200 and bulk.json()[key] == 4 and bulk.json()[f"{key}_b"] == "x"
    assert a.delete(f"/api/system/config/{key}").status_code == 200
    assert a.delete(f"/api/system/config/{key}_b").status_code == 200
    assert a.get(f"/api/system/config/{key}").status_code == 404


def test_writes_need_the_token(state_env: dict[str, str], start_server: StartServer, tmp_path: Path) -> None:
    """Issue 12 item 2: POST/PUT/DELETE were open to anyone."""
    key = f"auth_{uuid.uuid4().hex[:8]}"
    closed = start_server({k: v for k, v in state_env.items() if k != "YUXI_K8S_SERVER_TOKEN"}, "no-token")
    refused = closed.post("/api/system/config", {"key": key, "value": 1}, token=None)
    assert refused.status_code == 403 and "writes are disabled" in refused.json()["detail"]
    assert closed.delete(f"/api/system/config/{key}").status_code == 403
    assert closed.get("/api/system/config").status_code == 200  # reads stay open

    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    guarded = start_server(state_env, "token-file", "--token-file", str(token_file))
    for token in (None, "wrong", TOKEN):  # the file wins over the variable
        resp = guarded.post("/api/system/config", {"key": key, "value": 1}, token=token)
        assert resp.status_code == 401 and "Bearer" in resp.json()["detail"]
    assert (
        guarded.post("/api/system/config", {"key": key, "value": 1}, token="first-token").status_code == 200
    )
    token_file.write_text("rotated-token\n")  # a rotated Secret: no restart needed
    assert (
        guarded.post("/api/system/config", {"key": key, "value": 2}, token="first-token").status_code == 401
    )
    assert (
        guarded.post("/api/system/config", {"key": key, "value": 2}, token="rotated-token").status_code == 200
    )

    open_env = {**{k: v for k, v in state_env.items() if k != "YUXI_K8S_SERVER_TOKEN"}}
    anonymous = start_server({**open_env, "YUXI_K8S_SERVER_ANONYMOUS_WRITES": "true"}, "anonymous")
    assert anonymous.post("/api/system/config", {"key": key, "value": 3}, token=None).status_code == 200


def test_bodies_are_capped(state_env: dict[str, str], start_server: StartServer) -> None:
    """Issue 12 item 2: a 100 MiB config POST was accepted and returned by every later GET."""
    server = start_server(state_env, "api-a")
    key = f"big_{uuid.uuid4().hex[:8]}"
    big = b'{"key": "' + key.encode() + b'", "value": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = server.post("/api/system/config", content=big)
    assert resp.status_code == 413 and "larger than 1048576 bytes" in resp.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"key": "' + key.encode() + b'", "value": "'
        for _ in range(64):
            yield b"y" * 32768
        yield b'"}'

    chunked = httpx.post(
        server.url + "/api/system/config",
        content=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert chunked.status_code == 413
    assert key not in server.get("/api/system/config").json()


POISON = [
    (b'{"key": "nanval", "value": NaN}', "NaN is not JSON"),
    (b'{"key": "infval", "value": 1e999}', "inf is not a JSON number"),
    (b'{"key": "nul\\u0000key", "value": 1}', "NUL"),
    (b'{"key": "nulval", "value": "a\\u0000b"}', "NUL character"),
    (b'{"key": "deep", "value": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 32 levels"),
    (b'{"key": "dup", "value": 1, "value": 2}', "appears twice"),
    (b'{"key": "nullval", "value": null}', "null has no TOML form"),
    (b'{"key": "model_names", "value": {}}', "put_provider"),
    (b"[1", "invalid JSON"),
    (b"[1]", "must be a JSON object"),
]


def test_poisoned_bodies_are_400_and_nothing_is_stored(
    mode_env: dict[str, str], start_server: StartServer
) -> None:
    """Issue 12 item 3: NaN was answered 400 but written (file mode), then every GET failed; NUL was
    written and later broke migrate-config; database mode answered 500 with a traceback."""
    server = start_server(mode_env, f"api-{mode_env['CONFIG_MODE']}")
    assert server.post("/api/system/config", {"key": "kept", "value": "before"}).status_code == 200
    before = server.get("/api/system/config").json()
    for body, reason in POISON:
        resp = server.post("/api/system/config", content=body)
        assert resp.status_code == 400, (body[:40], resp.text)
        detail = resp.json()["detail"]
        assert reason in detail and "Traceback" not in resp.text and "\n" not in detail
    after = server.get("/api/system/config")
    assert after.status_code == 200 and after.json() == before


def test_a_bulk_update_is_all_or_nothing(mode_env: dict[str, str], start_server: StartServer) -> None:
    """Issue 13: a body whose second item is invalid left the first written."""
    server = start_server(mode_env, f"api-{mode_env['CONFIG_MODE']}")
    key = f"bulk_{uuid.uuid4().hex[:8]}"
    assert server.post("/api/system/config/update", {key: "old"}).status_code == 200
    before = server.get("/api/system/config").json()
    for second in ('{"x": NaN}', '"a\\u0000"', "null", "[" * 40 + "]" * 40):
        body = f'{{"{key}": "new", "{key}_2": {second}}}'.encode()
        resp = server.post("/api/system/config/update", content=body)
        assert resp.status_code == 400, resp.text
    bad_key = server.post("/api/system/config/update", {key: "new", "served_by": 1})
    assert bad_key.status_code == 400 and "reserved" in bad_key.json()["detail"]
    assert server.get("/api/system/config").json() == before
    ok = server.post("/api/system/config/update", {key: "new", f"{key}_2": [1, 2]})
    assert ok.status_code == 200 and ok.json()[key] == "new" and ok.json()[f"{key}_2"] == [1, 2]


def test_file_mode_keeps_the_saves_layout(
    state_env: dict[str, str], start_server: StartServer, tmp_path: Path
) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    server = start_server({**state_env, "CONFIG_MODE": "file", "SAVE_DIR": str(saves)}, "api-file")
    assert server.post("/api/system/config", {"key": "default_model", "value": "x/y"}).status_code == 200
    assert server.get("/api/system/config").json()["default_model"] == "x/y"
    assert 'default_model = "x/y"' in (saves / "config" / "base.toml").read_text()
    checks = server.get("/api/system/ready").json()["checks"]
    assert checks["config"]["mode"] == "file" and checks["saves"]["ok"]


def test_a_hung_change_feed_makes_the_pod_not_ready(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    """Issue 12 item 6: with the listener's backend SIGSTOPped, /api/system/ready said 200."""
    base = os.environ["YUXI_TEST_DATABASE_URL"]
    with helpers.database(base, state_env["POSTGRES_URL"].rsplit("/", 1)[1]) as url:
        env = {**state_env, "POSTGRES_URL": url, "YUXI_K8S_STATE_STALE_READ_GRACE_S": "2"}
        server = start_server(env, "api-hung")
        assert server.ready_status() == 200
        rows = helpers.query(
            url,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE %s",
            (f"{LISTENER_APPLICATION} %",),
        )
        assert len(rows) == 1
        pid = int(rows[0][0])
        os.kill(pid, signal.SIGSTOP)
        try:
            helpers.wait_until(lambda: server.ready_status() == 503, 6, "the pod to report not ready")
            ready = server.get("/api/system/ready").json()
            assert ready["checks"]["config"]["ok"] is False
            assert server.get("/api/system/config").status_code == 503  # no stale answer either
        finally:
            os.kill(pid, signal.SIGCONT)
        helpers.wait_until(lambda: server.ready_status() == 200, 10, "the pod to be ready again")


def test_it_binds_loopback_unless_told_otherwise(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    server = start_server(state_env, "api-default", "--default-host")
    assert f"on 127.0.0.1:{server.url.rsplit(':', 1)[1]}" in server.log.read_text()


def test_sigterm_fails_readiness_first_then_drains_and_exits_zero(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    server = start_server(state_env, "api-a", shutdown_delay=1.5)
    assert server.ready_status() == 200
    server.proc.send_signal(signal.SIGTERM)
    # Still serving while endpoints are updated, but no longer ready.
    helpers.wait_until(lambda: server.ready_status() == 503, 1.0, "readiness to fail after SIGTERM")
    assert server.get("/api/system/health").status_code == 200
    assert server.proc.wait(timeout=15) == 0
    with pytest.raises(httpx.TransportError):
        server.get("/api/system/health")


def test_a_request_in_flight_at_sigterm_is_answered_before_exit(
    state_env: dict[str, str], start_server: StartServer
) -> None:
    server = start_server(state_env, "api-a", shutdown_delay=0.5)
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"key": "e2e_local_in_flight", "value": "kept"}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /api/system/config HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])  # the request is in flight: half its body sent
        helpers.wait_until(
            lambda: server.get("/api/system/health").json()["in_flight"] == 1, 5, "the request"
        )
        server.proc.send_signal(signal.SIGTERM)
        helpers.wait_until(lambda: not _answers(server), 5, "the listener to close")
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"e2e_local_in_flight" in answer and b"x-served-by: api-a" in answer.lower()
    assert server.proc.wait(timeout=15) == 0


def _answers(server: RunningServer) -> bool:
    try:
        server.get("/api/system/health")
        return True
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONFIG_MODE": "bogus"}, "CONFIG_MODE must be"),
        ({"CONFIG_MODE": "database", "POSTGRES_URL": ""}, "needs POSTGRES_URL"),
        (
            {"CONFIG_MODE": "database", "POSTGRES_URL": "postgresql://u:abc#Secret@h/db"},
            "malformed PostgreSQL URL",
        ),
    ],
)
def test_invalid_settings_are_one_line_and_exit_1(env: dict[str, str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", "serve", "--port", str(helpers.free_port())],
        env=helpers.cli_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Secret" not in proc.stderr
