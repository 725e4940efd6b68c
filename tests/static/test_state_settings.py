"""Settings and URL parsing (yuxi_k8s.state.settings), and the CLI's one-line URL errors. No services.

Issue 12 item 5: ``--database-url 'postgresql://odd:abc#Secret@host/db'`` gave a 30-line
traceback ending ``Port could not be cast to integer value as 'abc'``; ``p@ss@host`` gave
``failed to resolve host 'ss@127.0.0.1'``; the same for Redis URLs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from yuxi_k8s import cli
from yuxi_k8s.state import Settings, UrlError, normalise_database_url
from yuxi_k8s.state.settings import (
    check_redis_url,
    describe_database_url,
    describe_redis_url,
    libpq_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/yuxi", "postgresql+psycopg://u:p@db:5432/yuxi"),
        ("postgres://u:p@db/yuxi", "postgresql+psycopg://u:p@db/yuxi"),
        ("postgresql+asyncpg://u:p@db:5432/yuxi", "postgresql+psycopg://u:p@db:5432/yuxi"),
        ("postgresql+asyncpg://u:p@db/yuxi?ssl=true", "postgresql+psycopg://u:p@db/yuxi?sslmode=require"),
        ("postgresql+asyncpg://u:p@db/yuxi?ssl=false", "postgresql+psycopg://u:p@db/yuxi?sslmode=disable"),
        ("postgresql+psycopg2://u:p%40ss@db/yuxi", "postgresql+psycopg://u:p%40ss@db/yuxi"),
        ("  postgresql://u@db/yuxi  ", "postgresql+psycopg://u@db/yuxi"),
        ("postgresql:///yuxi?host=/run/postgresql", "postgresql+psycopg:///yuxi?host=%2Frun%2Fpostgresql"),
    ],
)
def test_database_urls_are_normalised(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected
    assert libpq_url(url).startswith("postgresql://")


SECRET_URLS = [
    ("postgresql://odd:abc#Secret@host/db", ["abc", "Secret"]),
    ("postgresql://odd:p@ss@127.0.0.1/db", ["p@ss", "ss@"]),
    ("postgresql://odd:1?Secret@host/db", ["Secret", "1?"]),
    ("postgresql://odd:ab/Secret@host/db", ["Secret"]),
    ("postgresql://odd:abc Secret@host/db", ["Secret"]),
]


@pytest.mark.parametrize(("url", "parts"), SECRET_URLS)
def test_malformed_database_urls_never_echo_the_password(url: str, parts: list[str]) -> None:
    with pytest.raises(UrlError) as exc:
        normalise_database_url(url)
    message = str(exc.value)
    assert message.startswith("malformed PostgreSQL URL") and "percent-encode" in message
    assert not [p for p in parts if p in message]
    assert describe_database_url(url) == "(malformed URL)"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "the PostgreSQL URL is empty"),
        ("mysql://u:p@h/db", "not a PostgreSQL URL (expected postgresql://...)"),
        ("postgresql:///db", "the PostgreSQL URL has no host"),
    ],
)
def test_other_bad_database_urls(url: str, message: str) -> None:
    with pytest.raises(UrlError, match=re.escape(message)):
        normalise_database_url(url)


def test_redis_urls() -> None:
    assert check_redis_url("redis://:pw@redis:6379/0") == "redis://:pw@redis:6379/0"
    assert describe_redis_url("rediss://:pw@redis:6380/0") == "redis:6380"
    for url, parts in (
        ("redis://:abc#Secret@host:6379/0", ["abc", "Secret"]),
        ("redis://:p@ss@host/0", ["p@ss"]),
    ):
        with pytest.raises(UrlError) as exc:
            check_redis_url(url)
        assert str(exc.value).startswith("malformed Redis URL") and not [
            p for p in parts if p in str(exc.value)
        ]
    with pytest.raises(UrlError, match="not a Redis URL"):
        check_redis_url("http://host")


def test_settings_from_the_applications_environment(tmp_path: Path) -> None:
    env = {
        "CONFIG_MODE": " Database ",
        "POSTGRES_URL": "postgresql+asyncpg://u:p@db/yuxi",
        "REDIS_URL": "redis://:p@redis:6379/0",
        "SAVE_DIR": str(tmp_path),
        "YUXI_K8S_STATE_STALE_READ_GRACE_S": "7.5",
    }
    s = Settings.from_env(env)
    assert s.mode == "database" and s.database_url == "postgresql+psycopg://u:p@db/yuxi"
    assert s.redis_url == "redis://:p@redis:6379/0" and s.save_dir == tmp_path and s.stale_read_grace_s == 7.5
    assert Settings.from_env({}).mode == "file"
    assert Settings().instance_id != Settings().instance_id
    for bad, message in (
        ({"CONFIG_MODE": "bogus"}, "CONFIG_MODE must be 'file' or 'database'"),
        ({"CONFIG_MODE": "database"}, "CONFIG_MODE=database needs POSTGRES_URL"),
        ({"YUXI_K8S_STATE_STALE_READ_GRACE_S": "soon"}, "must be a number of seconds"),
        ({"YUXI_K8S_STATE_STALE_READ_GRACE_S": "0.5"}, "must be longer than the 1 s heartbeat"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings.from_env(bad)


def _main(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """The CLI in this process (fast); one case below runs it as a real process too."""
    for name in ("POSTGRES_URL", "REDIS_URL", "CONFIG_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("url", "parts"), SECRET_URLS[:3])
@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["db", "current"], ["check"], ["migrate-config", "--saves-dir", "."],
                ["export-config", "--saves-dir", "."], ["diff", "--saves-dir", "."]]
)  # fmt: skip
def test_cli_url_errors_are_one_line_exit_2_without_the_password(
    command: list[str],
    url: str,
    parts: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, env in (([*command, "--database-url", url], {}), (command, {"POSTGRES_URL": url})):
        code, out, err = _main(args, env, monkeypatch, capsys)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "malformed PostgreSQL URL" in err
        assert not [p for p in parts if p in out + err]


@pytest.mark.parametrize("url", ["redis://:abc#Secret@127.0.0.1:6379/0", "redis://:p@ss@127.0.0.1:6379/0"])
def test_cli_redis_url_errors_are_one_line_exit_2_without_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database-url", "postgresql://u:p@127.0.0.1:1/db"]
    for args, env in (
        (["check", *database, "--redis-url", url], {}),
        (["check", *database], {"REDIS_URL": url}),
    ):
        code, out, err = _main(args, env, monkeypatch, capsys)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "malformed Redis URL" in err
        assert "Secret" not in out + err and "p@ss" not in out + err


def test_a_url_error_from_a_real_process_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_URL", "REDIS_URL", "CONFIG_MODE")}
    proc = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", "db", "upgrade", "--database-url", SECRET_URLS[0][0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr.startswith("yuxi-k8s db: error: malformed PostgreSQL URL")
        and proc.stderr.count("\n") == 1
    )
    assert "abc" not in proc.stderr and "Secret" not in proc.stderr
