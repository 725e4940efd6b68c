"""scripts/services.sh: idempotent, and a stale pid file left by a killed run does not confuse it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.state.conftest import ROOT, SERVICES


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SERVICES), *args], capture_output=True, text=True, timeout=300, check=False)


def test_up_twice_is_idempotent_and_writes_the_env_file(pg_base_url: str, redis_url: str) -> None:
    for _ in range(2):
        result = _run("up")
        assert result.returncode == 0, result.stderr
        assert "initialising" not in result.stderr and "starting" not in result.stderr  # already running
    env = (ROOT / ".run/services.env").read_text()
    for name in ("YUXI_TEST_DATABASE_URL", "YUXI_TEST_REDIS_URL", "YUXI_TEST_DATABASE_DSN"):
        assert f"export {name}=" in env
    pg_port = os.environ.get("YUXI_PG_PORT", "55432")  # the ports services.sh was told to use
    redis_port = os.environ.get("YUXI_REDIS_PORT", "56379")
    assert f"127.0.0.1:{pg_port}" in env and f"127.0.0.1:{redis_port}" in env
    status = _run("status")
    assert "postgres: up" in status.stdout and "redis: up" in status.stdout


def test_a_stale_redis_pid_file_is_replaced(redis_url: str) -> None:
    pidfile = ROOT / ".run/services/redis/redis.pid"
    real = pidfile.read_text().strip()
    Path(pidfile).write_text("999999\n")  # what a killed run on another boot leaves behind
    result = _run("up")
    assert result.returncode == 0, result.stderr
    assert "removing stale" in result.stderr
    assert pidfile.read_text().strip() == real
