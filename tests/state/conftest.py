"""Fixtures of the db tier: the real PostgreSQL and Redis from scripts/services.sh.

Each test gets its own database, cloned from a template migrated to head once
per session and dropped afterwards, so tests never see each other's rows or
change notifications (LISTEN/NOTIFY is per database).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.state.saves_factory import build_saves
from tests.support import require
from yuxi_k8s.state.settings import Settings, libpq_url

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts/services.sh"
HOW = "run `scripts/services.sh up && source .run/services.env` (or `make test-db`)"


def _replace_db(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = os.environ.get("YUXI_TEST_DATABASE_URL", "")
    require(bool(url), f"YUXI_TEST_DATABASE_URL (a PostgreSQL for tests): {HOW}")
    try:
        psycopg.connect(libpq_url(url), connect_timeout=3).close()
    except psycopg.Error as exc:
        require(False, f"PostgreSQL at YUXI_TEST_DATABASE_URL answers ({exc}): {HOW}")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("YUXI_TEST_REDIS_URL", "")
    require(bool(url), f"YUXI_TEST_REDIS_URL (a Redis for tests): {HOW}")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require(False, f"Redis at YUXI_TEST_REDIS_URL answers ({exc}): {HOW}")
    return url


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def template_db(pg_base_url: str) -> Iterator[str]:
    """A database migrated to head, cloned by every test that wants a ready schema."""
    from yuxi_k8s import migrations
    from yuxi_k8s.state.db_backend import make_engine

    name = f"yuxi_tpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_replace_db(pg_base_url, name))
    migrations.upgrade(engine)
    engine.dispose()
    yield name
    with _admin(pg_base_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_db(pg_base_url: str, template: str | None) -> Iterator[str]:
    name = f"yuxi_t_{uuid.uuid4().hex[:10]}"
    with _admin(pg_base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _replace_db(pg_base_url, name)
    finally:
        with _admin(pg_base_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_base_url: str, template_db: str) -> Iterator[str]:
    """A fresh database of this test, schema at head."""
    yield from _fresh_db(pg_base_url, template_db)


@pytest.fixture
def empty_db_url(pg_base_url: str) -> Iterator[str]:
    """A fresh, empty database of this test (no schema)."""
    yield from _fresh_db(pg_base_url, None)


@pytest.fixture
def db_settings(db_url: str) -> Settings:
    return Settings(mode="database", database_url=db_url, stale_read_grace_s=5.0)


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    return build_saves(tmp_path / "saves")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test only, so killing it disturbs nobody else."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path, redis_url: str) -> Iterator[PrivateRedis]:
    require(shutil.which("redis-server") is not None, f"redis-server: {HOW}")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m yuxi_k8s ARGS`` with no database variables inherited unless given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def count_rows(url: str) -> dict[str, int]:
    tables = ["system_config", "model_providers", "knowledge_bases", "kb_files", "tasks", "documents"]
    with psycopg.connect(libpq_url(url)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def table_dump(url: str) -> dict[str, Any]:
    """Every state row with version and rev: to prove "nothing changed"."""
    out: dict[str, Any] = {}
    with psycopg.connect(libpq_url(url)) as conn:
        for table in [
            "system_config",
            "model_providers",
            "knowledge_bases",
            "kb_files",
            "tasks",
            "documents",
        ]:
            out[table] = sorted(map(repr, conn.execute(f"SELECT * FROM {table}").fetchall()))
    return out


class TcpProxy:
    """A loopback TCP relay we can cut: the database "goes away" for one client only."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = __import__("threading").Lock()

    def start(self) -> None:
        import threading

        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux.
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def proxied_db_url(db_url: str) -> Iterator[tuple[str, TcpProxy]]:
    from urllib.parse import urlsplit

    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.port or 5432)
    proxy.start()
    yield db_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}"), proxy
    proxy.stop()


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()
