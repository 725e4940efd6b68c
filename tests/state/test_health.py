"""Readiness checks and `yuxi-k8s check`: each dependency named, each bounded by its timeout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.state import helpers
from tests.state.helpers import run_cli
from yuxi_k8s import migrations
from yuxi_k8s.state import Settings
from yuxi_k8s.state.health import liveness, readiness

HEAD = migrations.head_revision()


def test_ready_when_everything_answers(db_url: str, redis_url: str, tmp_path: Path) -> None:
    ok, checks = readiness(Settings(mode="database", database_url=db_url, redis_url=redis_url), env={})
    assert ok, checks
    assert checks["postgres"]["revision"] == HEAD and checks["postgres"]["schema"] == "head"
    assert checks["redis"]["ok"] and "saves" not in checks
    (tmp_path / "saves").mkdir()
    ok, checks = readiness(Settings(mode="file", save_dir=tmp_path / "saves"), env={})
    assert ok and set(checks) == {"saves"}
    assert liveness()["status"] == "ok"


def test_each_failure_is_named_and_bounded(empty_db_url: str, tmp_path: Path) -> None:
    # A server that accepts and never answers: the check must give up within its timeout.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        settings = Settings(
            mode="file",
            save_dir=tmp_path / "missing",
            database_url=empty_db_url,
            redis_url=f"redis://:secret@127.0.0.1:{port}/0",
        )
        t0 = time.monotonic()
        ok, checks = readiness(
            settings, timeout=1.0, env={"MILVUS_URI": f"http://127.0.0.1:{helpers.free_port()}"}
        )
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert not ok and took < 3.0
    assert "run `yuxi-k8s db upgrade`" in checks["postgres"]["error"]
    assert checks["redis"]["ok"] is False and "secret" not in str(checks)
    assert checks["saves"]["error"].endswith("missing is not a directory")
    assert checks["milvus"]["ok"] is False


def test_check_command(db_url: str, redis_url: str, empty_db_url: str) -> None:
    ok = run_cli("check", "--database-url", db_url, "--redis-url", redis_url)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("postgres  ok") and f"schema {HEAD} (head)" in lines[0]
    assert lines[1].startswith("redis     ok")
    behind = run_cli("check", "--database-url", empty_db_url, "--timeout", "2")
    assert behind.returncode == 1
    assert "postgres  FAIL" in behind.stdout
    assert "run `yuxi-k8s db upgrade`" in helpers.one_line_error(behind)
    # The application's own variables, as in the migrate Job: POSTGRES_URL in its asyncpg form.
    asyncpg = db_url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    env = run_cli("check", env={"POSTGRES_URL": asyncpg, "REDIS_URL": redis_url})
    assert env.returncode == 0, env.stderr
    missing = run_cli("check")
    assert missing.returncode == 2
    assert helpers.one_line_error(missing).endswith("no database: pass --database-url or set POSTGRES_URL")
