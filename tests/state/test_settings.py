"""Settings read the application's environment; every PostgreSQL URL form becomes psycopg 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from yuxi_k8s.state import Settings, normalise_database_url
from yuxi_k8s.state.settings import libpq_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db:5432/yuxi",
        "postgres://u:p@db:5432/yuxi",
        "postgresql+psycopg2://u:p@db:5432/yuxi",
        "postgresql+asyncpg://u:p@db:5432/yuxi",
        "postgresql+psycopg://u:p@db:5432/yuxi",
    ],
)
def test_every_postgres_url_becomes_psycopg3(url: str) -> None:
    assert normalise_database_url(url) == "postgresql+psycopg://u:p@db:5432/yuxi"
    assert libpq_url(url) == "postgresql://u:p@db:5432/yuxi"


def test_asyncpg_ssl_option_becomes_sslmode() -> None:
    assert normalise_database_url("postgresql+asyncpg://u@db/x?ssl=require").endswith("?sslmode=require")


@pytest.mark.parametrize("url", ["mysql://u@db/x", "sqlite:///x.db", "db:5432", "postgresql:///nohost"])
def test_non_postgres_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_database_url(url)


def test_from_env_prefers_sync_url_and_builds_redis_url() -> None:
    env = {
        "CONFIG_MODE": "database",
        "SAVE_DIR": "/app/saves",
        "DATABASE_URL": "postgresql+asyncpg://u:p@db/a",
        "DATABASE_URL_SYNC": "postgresql+psycopg2://u:p@db/b",
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "p@ss/word",
    }
    s = Settings.from_env(env)
    assert s.mode == "database"
    assert s.save_dir == Path("/app/saves")
    assert s.database_url == "postgresql+psycopg://u:p@db/b"
    assert s.redis_url == "redis://:p%40ss%2Fword@redis:6380/0"
    assert Settings.from_env({**env, "DATABASE_URL_SYNC": ""}).database_url == "postgresql+psycopg://u:p@db/a"
    assert Settings.from_env({**env, "REDIS_URL": "redis://r:1/2"}).redis_url == "redis://r:1/2"


def test_defaults_and_bad_mode() -> None:
    s = Settings.from_env({})
    assert (s.mode, s.save_dir, s.database_url, s.redis_url) == ("file", Path("saves"), None, None)
    with pytest.raises(ValueError, match="CONFIG_MODE"):
        Settings.from_env({"CONFIG_MODE": "sqlite"})
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Settings.from_env({"CONFIG_MODE": "database"})
