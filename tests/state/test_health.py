"""Liveness and readiness against the real services, and bounded when a dependency hangs or is gone."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.state.conftest import PrivateRedis
from yuxi_k8s.state import Settings, health


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers: a hung dependency."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield int(server.getsockname()[1])
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    for conn in held:
        conn.close()


def test_liveness_checks_nothing_external() -> None:
    assert health.liveness()["status"] == "ok"


def test_ready_with_real_services(db_url: str, redis_url: str) -> None:
    ok, checks = health.readiness(Settings(mode="database", database_url=db_url, redis_url=redis_url))
    assert ok, checks
    assert checks["postgres"]["revision"] == "0003" and checks["redis"]["ok"]


def test_not_ready_when_schema_behind_or_redis_gone(empty_db_url: str, private_redis: PrivateRedis) -> None:
    private_redis.stop()
    ok, checks = health.readiness(
        Settings(mode="database", database_url=empty_db_url, redis_url=private_redis.url), timeout=1
    )
    assert not ok
    assert "db upgrade" in checks["postgres"]["error"]
    assert not checks["redis"]["ok"] and checks["redis"]["target"].endswith(str(private_redis.port))


def test_a_hung_dependency_is_bounded_by_the_timeout(db_url: str, silent_server: int, tmp_path: Path) -> None:
    env = {"MILVUS_URI": "http://127.0.0.1:1", "NEO4J_URI": f"bolt://127.0.0.1:{silent_server}"}
    settings = Settings(
        mode="database", database_url=db_url, redis_url=f"redis://127.0.0.1:{silent_server}/0"
    )
    started = time.monotonic()
    ok, checks = health.readiness(settings, timeout=0.5, env=env)
    assert time.monotonic() - started < 2.5
    assert not ok
    assert checks["postgres"]["ok"] and checks["neo4j"]["ok"]  # TCP connect is all we ask of optional ones
    assert not checks["redis"]["ok"] and not checks["milvus"]["ok"]


def test_file_mode_checks_the_saves_volume(tmp_path: Path) -> None:
    ok, checks = health.readiness(Settings(mode="file", save_dir=tmp_path), env={})
    assert ok and checks["saves"]["ok"]
    ok, checks = health.readiness(Settings(mode="file", save_dir=tmp_path / "missing"), env={})
    assert not ok and "not a directory" in checks["saves"]["error"]
