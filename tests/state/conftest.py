"""Fixtures of the db tier: the real PostgreSQL and Redis that scripts/services.sh starts.

Each test gets its own database, cloned from a template migrated to head once
per session and dropped afterwards, so tests never see each other's rows or
change notifications (LISTEN/NOTIFY is per database). Helpers live in
``tests/state/helpers.py``; import them from there, never from this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.services_fixtures import LoopbackServices
from tests.state import helpers
from tests.state.saves_factory import build_saves
from tests.support import require
from yuxi_k8s.state.settings import Settings


@pytest.fixture(scope="session")
def pg_base_url(loopback_services: LoopbackServices) -> str:
    url = loopback_services.database_url
    try:
        helpers.connect(url).close()
    except psycopg.Error as exc:
        require(False, f"PostgreSQL at YUXI_TEST_DATABASE_URL answers ({exc}): {helpers.HOW}")
    return url


@pytest.fixture(scope="session")
def redis_url(loopback_services: LoopbackServices) -> str:
    import redis

    url = loopback_services.redis_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require(False, f"Redis at YUXI_TEST_REDIS_URL answers ({exc}): {helpers.HOW}")
    return url


@pytest.fixture(scope="session")
def template_db(pg_base_url: str) -> Iterator[str]:
    """The name of a database migrated to head, cloned by every test that wants a ready schema."""
    url = helpers.create_database(pg_base_url, prefix="yuxi_tpl")
    helpers.upgrade(url)
    yield url.rsplit("/", 1)[1]
    helpers.drop_database(url)


@pytest.fixture
def db_url(pg_base_url: str, template_db: str) -> Iterator[str]:
    """A fresh database of this test, schema at head."""
    with helpers.database(pg_base_url, template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(pg_base_url: str) -> Iterator[str]:
    """A fresh, empty database of this test (no schema)."""
    with helpers.database(pg_base_url) as url:
        yield url


@pytest.fixture
def db_settings(db_url: str) -> Settings:
    return Settings(mode="database", database_url=db_url)


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    """A realistic saves/ tree in Yuxi-Know v0.6.1's layout."""
    return build_saves(tmp_path / "saves")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[helpers.PrivateRedis]:
    server = helpers.PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[helpers.PrivatePostgres]:
    """A PostgreSQL cluster of this module only (restarts, roles), superuser postgres."""
    server = helpers.PrivatePostgres()
    server.start()
    yield server
    server.stop()
