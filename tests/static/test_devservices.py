"""The pure parts of yuxi_k8s.devservices: ports, secrets, the env file, the command line.

Starting the real services is the db tier's (tests/state/test_services.py and every db test)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from yuxi_k8s import devservices
from yuxi_k8s.devservices import DevServices, ServicesError


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("YUXI_PG_PORT", raising=False)
    monkeypatch.delenv("YUXI_REDIS_PORT", raising=False)
    default = DevServices(tmp_path)
    assert (default.pg_port, default.redis_port) == (55432, 56379)
    monkeypatch.setenv("YUXI_PG_PORT", "15432")
    monkeypatch.setenv("YUXI_REDIS_PORT", " 16379 ")
    moved = DevServices(tmp_path)
    assert (moved.pg_port, moved.redis_port) == (15432, 16379)
    monkeypatch.setenv("YUXI_PG_PORT", "543x")
    with pytest.raises(ServicesError, match="YUXI_PG_PORT='543x' is not a TCP port"):
        DevServices(tmp_path)


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    services = DevServices(tmp_path, pg_port=1, redis_port=2)
    first = services._secret("redis")
    assert len(first) == 36 and first == services._secret("redis")
    path = tmp_path / "services" / "redis.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")  # an empty one (a killed earlier run) is replaced
    assert services._secret("redis") not in ("", first)


def test_endpoints_and_the_env_file(tmp_path: Path) -> None:
    services = DevServices(tmp_path, pg_port=15432, redis_port=16379)
    endpoints = services.endpoints()
    password = services._secret("pg-test")
    assert endpoints.database_url == f"postgresql+psycopg://yuxi_test:{password}@127.0.0.1:15432/yuxi_test"
    assert endpoints.database_dsn == f"postgresql://yuxi_test:{password}@127.0.0.1:15432/yuxi_test"
    assert endpoints.redis_url == f"redis://:{services._secret('redis')}@127.0.0.1:16379/0"
    services._write_env(endpoints)
    env_file = tmp_path / "services.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    for name, value in endpoints.env().items():
        assert f"export {name}='{value}'\n" in text


def test_the_command_line_refuses_what_it_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    assert devservices.main(["bogus"]) == 2
    assert devservices.main(["up", "down"]) == 2
    assert capsys.readouterr().err.count("usage: python -m yuxi_k8s.devservices up|down|status") == 2


def test_an_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: DevServices) -> dict[str, bool]:
        raise ServicesError("PostgreSQL is not installed")

    monkeypatch.setattr(DevServices, "status", refuse)
    assert devservices.main(["status"]) == 1
    assert capsys.readouterr().err == "services: error: PostgreSQL is not installed\n"
