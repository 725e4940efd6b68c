"""Alembic: upgrade and downgrade, step by step; the models match the revisions; runs installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.state.conftest import run_cli
from yuxi_k8s import migrations
from yuxi_k8s.state.db_backend import make_engine
from yuxi_k8s.state.models import metadata
from yuxi_k8s.state.settings import libpq_url


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_upgrade_and_downgrade_step_by_step(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert migrations.current_revision(engine) is None
        migrations.upgrade(engine, "0001")
        assert migrations.current_revision(engine) == "0001"
        assert {"system_config", "model_providers", "fencing_tokens"} <= _tables(empty_db_url)
        assert "kb_files" not in _tables(empty_db_url)
        migrations.upgrade(engine, "0002")
        assert {"knowledge_bases", "kb_files", "tasks", "documents"} <= _tables(empty_db_url)
        assert "sync_state" not in _tables(empty_db_url)
        migrations.upgrade(engine)
        assert migrations.current_revision(engine) == migrations.head_revision() == "0003"
        assert "sync_state" in _tables(empty_db_url)
        migrations.downgrade(engine, "0002")
        assert "sync_state" not in _tables(empty_db_url) and "kb_files" in _tables(empty_db_url)
        migrations.downgrade(engine, "0001")
        assert "kb_files" not in _tables(empty_db_url)
        migrations.downgrade(engine, "base")
        assert _tables(empty_db_url) == {"alembic_version"}
        migrations.upgrade(engine)  # and back up again after a full downgrade
        assert migrations.current_revision(engine) == "0003"
    finally:
        engine.dispose()


def test_models_match_the_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_cli_upgrade_twice_changes_nothing(empty_db_url: str) -> None:
    first = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert first.returncode == 0, first.stderr
    assert "upgraded empty -> 0003" in first.stdout
    second = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert second.returncode == 0 and "already at 0003" in second.stdout
    current = run_cli("db", "current", env={"DATABASE_URL_SYNC": empty_db_url})
    assert current.stdout.strip() == "0003 (at head)"
    down = run_cli("db", "downgrade", "0001", "--database-url", empty_db_url)
    assert down.returncode == 0 and "0003 -> 0001" in down.stdout


def test_cli_reads_database_url_sync_then_database_url(empty_db_url: str) -> None:
    asyncpg_form = empty_db_url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    result = run_cli("db", "upgrade", env={"DATABASE_URL": asyncpg_form})
    assert result.returncode == 0, result.stderr


def test_migrations_ship_inside_the_package(empty_db_url: str, tmp_path: Path) -> None:
    """The migrate Job runs an installed package: the scripts must be package data, found without the repo."""
    package_dir = Path(migrations.__file__).parent
    assert sorted(p.name for p in (package_dir / "versions").glob("0*.py")) == [
        "0001_config_and_providers.py",
        "0002_knowledge_base_metadata.py",
        "0003_sync_state.py",
    ]
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"migrations/versions/*.py"' in pyproject and '"migrations/*.py"' in pyproject
    # From an unrelated working directory, with no alembic.ini anywhere.
    result = subprocess.run(
        [sys.executable, "-m", "yuxi_k8s", "db", "upgrade", "--database-url", empty_db_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_an_upgrade_killed_midway_changes_nothing(empty_db_url: str) -> None:
    """Hold the alembic_version row so the upgrade stops after its DDL, SIGKILL it, check nothing stuck."""
    import os
    import signal
    import time

    assert run_cli("db", "upgrade", "0001", "--database-url", empty_db_url).returncode == 0
    with (
        psycopg.connect(libpq_url(empty_db_url)) as holder,
        psycopg.connect(libpq_url(empty_db_url)) as probe,
    ):
        holder.execute("SELECT version_num FROM alembic_version FOR UPDATE")  # transaction stays open
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "yuxi_k8s", "db", "upgrade", "--database-url", empty_db_url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        blocked = False
        while time.monotonic() < deadline and not blocked:
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE alembic_version%%'"
            ).fetchone()
            probe.commit()
            blocked = bool(row and row[0])
            time.sleep(0.05)
        assert blocked, "the upgrade never reached its version update"
        assert "kb_files" not in _tables(empty_db_url)  # its DDL is not visible: not committed
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        holder.rollback()
    time.sleep(0.5)  # the server notices the dead client and rolls its transaction back
    assert "kb_files" not in _tables(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        assert migrations.current_revision(engine) == "0001"
    finally:
        engine.dispose()
    assert run_cli("db", "upgrade", "--database-url", empty_db_url).returncode == 0
    assert "kb_files" in _tables(empty_db_url)
