"""The reference server on loopback against the real PostgreSQL and Redis (db tier, no cluster).

Each server runs as its own process (``yuxi-k8s serve``), exactly as in a pod,
so signals, readiness and cross-replica propagation are the real thing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services_fixtures import LoopbackServices
from yuxi_k8s.cluster.kube import poll

pytestmark = pytest.mark.db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, **kw)  # type: ignore[arg-type]

    def post(self, path: str, json: object) -> httpx.Response:
        return httpx.post(self.url + path, json=json, timeout=5)


@pytest.fixture(scope="module")
def state_env(loopback_services: LoopbackServices) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL_SYNC": loopback_services.database_url,
        "REDIS_URL": loopback_services.redis_url,
        "CONFIG_MODE": "database",
    }
    subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    return env


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    started: list[RunningServer] = []

    def start(env: dict[str, str], name: str, shutdown_delay: float = 1.0) -> RunningServer:
        port = _free_port()
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "yuxi_k8s",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--shutdown-delay",
                str(shutdown_delay),
            ],
            env={**env, "POD_NAME": name},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = RunningServer(name, f"http://127.0.0.1:{port}", proc, log)
        started.append(server)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server {name} exited: {log.read_text()}"
            try:
                if server.get("/api/system/health").status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server {name} did not start: {log.read_text()}")

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_health_is_liveness_only_and_names_the_pod(state_env, start_server) -> None:
    server = start_server({**state_env, "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}, "api-a")
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


def test_ready_when_postgres_and_redis_answer(state_env, start_server) -> None:
    server = start_server(state_env, "api-a")
    ready = server.get("/api/system/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["postgres"]["ok"] and checks["redis"]["ok"] and checks["config"]["mode"] == "database"


def test_config_written_on_one_replica_is_read_on_another_within_one_second(state_env, start_server) -> None:
    a = start_server(state_env, "api-a")
    b = start_server(state_env, "api-b")
    key = f"e2e_local_{uuid.uuid4().hex[:8]}"
    assert b.get("/api/system/config").status_code == 200
    written = a.post("/api/system/config", {"key": key, "value": {"n": 1}})
    assert written.status_code == 200, written.text
    assert written.json()[key] == {"n": 1} and written.json()["served_by"] == "api-a"
    t0 = time.monotonic()
    while b.get("/api/system/config").json().get(key) != {"n": 1}:
        assert time.monotonic() - t0 < 1.0, "replica b did not see the write within 1 s"
        time.sleep(0.02)
    # Optimistic concurrency: a write naming a stale version is refused, not applied.
    version = b.get(f"/api/system/config/{key}").json()["version"]
    fresh = a.post("/api/system/config", {"key": key, "value": 2, "expected_version": version})
    assert fresh.status_code == 200
    stale = b.post("/api/system/config", {"key": key, "value": 3, "expected_version": version})
    assert stale.status_code == 409
    assert a.get(f"/api/system/config/{key}").json()["value"] == 2
    # Bulk update, shaped like the real API's /config/update.
    bulk = b.post("/api/system/config/update", {key: 4, f"{key}_b": "x"})
    assert bulk.status_code == 200 and bulk.json()[key] == 4 and bulk.json()[f"{key}_b"] == "x"
    assert httpx.delete(f"{a.url}/api/system/config/{key}", timeout=5).status_code == 200
    assert httpx.delete(f"{a.url}/api/system/config/{key}_b", timeout=5).status_code == 200
    assert a.get(f"/api/system/config/{key}").status_code == 404


def test_knowledge_base_records_round_trip(state_env, start_server) -> None:
    server = start_server(state_env, "api-a")
    db_id = f"kb_{uuid.uuid4().hex[:12]}"
    record = {"name": "Local KB", "description": "", "kb_type": "milvus", "created_at": "2026-11-27T00:00:00"}
    put = httpx.put(f"{server.url}/api/knowledge/databases/{db_id}", json=record, timeout=5)
    assert put.status_code == 200, put.text
    got = server.get(f"/api/knowledge/databases/{db_id}").json()["record"]
    assert got["name"] == "Local KB"
    assert db_id in str(server.get("/api/knowledge/databases").json()["databases"])
    assert httpx.delete(f"{server.url}/api/knowledge/databases/{db_id}", timeout=5).status_code == 200
    assert server.get(f"/api/knowledge/databases/{db_id}").status_code == 404


def test_reserved_and_malformed_writes_are_refused(state_env, start_server) -> None:
    server = start_server(state_env, "api-a")
    assert server.post("/api/system/config", {"key": "served_by", "value": 1}).status_code == 400
    assert server.post("/api/system/config", {"value": 1}).status_code == 400
    assert httpx.post(f"{server.url}/api/system/config", content=b"[1", timeout=5).status_code == 400


def test_file_mode_keeps_the_saves_layout(state_env, start_server, tmp_path: Path) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()  # the saves volume exists in a pod; a missing one is an outage (503)
    env = {**state_env, "CONFIG_MODE": "file", "SAVE_DIR": str(saves)}
    server = start_server(env, "api-file")
    assert server.post("/api/system/config", {"key": "default_model", "value": "x/y"}).status_code == 200
    assert server.get("/api/system/config").json()["default_model"] == "x/y"
    assert "default_model" in (saves / "config" / "base.toml").read_text()
    assert server.get("/api/system/ready").json()["checks"]["config"]["mode"] == "file"


def test_sigterm_fails_readiness_first_then_drains_and_exits_zero(state_env, start_server) -> None:
    server = start_server(state_env, "api-a", shutdown_delay=1.5)
    assert server.get("/api/system/ready").status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    # Still serving while endpoints are updated, but no longer ready: readiness turns 503 well within
    # the shutdown delay (a closed listener would raise here, not retry).
    poll(
        "readiness to fail after SIGTERM",
        lambda: server.get("/api/system/ready").status_code == 503,
        timeout=1.0,
        interval=0.02,
        retry_on=(),
    )
    assert server.get("/api/system/health").status_code == 200
    assert server.proc.wait(timeout=15) == 0
    with pytest.raises(httpx.TransportError):
        server.get("/api/system/health")


def _refused(server: RunningServer) -> bool:
    try:
        httpx.get(server.url + "/api/system/health", timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_a_request_in_flight_at_sigterm_is_answered_before_exit(state_env, start_server) -> None:
    server = start_server(state_env, "api-a", shutdown_delay=0.5)
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"key": "e2e_local_in_flight", "value": "kept"}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /api/system/config HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])  # the request is in flight: half its body sent
        # A request on a later connection answered means the server accepted and read ours first
        # (one event loop, in order): it is in flight when SIGTERM comes.
        assert server.get("/api/system/health").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        # Past the shutdown delay the listener is closed, while this request is being drained.
        poll(
            "the listener to close after the shutdown delay",
            lambda: _refused(server),
            timeout=10,
            interval=0.05,
        )
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"e2e_local_in_flight" in answer and b"x-served-by: api-a" in answer.lower()
    assert server.proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONFIG_MODE": "bogus"}, "CONFIG_MODE must be"),
        ({"CONFIG_MODE": "database", "DATABASE_URL_SYNC": "", "DATABASE_URL": ""}, "needs DATABASE_URL"),
    ],
)
def test_invalid_settings_are_one_line_and_exit_1(env: dict[str, str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", "serve", "--port", str(_free_port())],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
