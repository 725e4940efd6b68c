"""The kit's schema: migrations, the application's tables left alone, the guard, adoption of older kits."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.state import helpers
from tests.state.helpers import run_cli
from yuxi_k8s import migrations
from yuxi_k8s.app.contract import load
from yuxi_k8s.state import Settings, Versioned, open_config
from yuxi_k8s.state.models import table_names

HEAD = migrations.head_revision()
KIT_TABLES = {*table_names(), "alembic_version"}


def kit_tables(url: str, schema: str = "yuxi_k8s") -> set[str]:
    return {
        r[0] for r in helpers.query(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    }


def test_upgrade_puts_everything_in_the_kits_schema_and_downgrade_removes_it(empty_db_url: str) -> None:
    public_before = helpers.schema_snapshot(empty_db_url)
    up = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert up.returncode == 0, up.stderr
    assert f"schema yuxi_k8s upgraded empty -> {HEAD}" in up.stdout
    assert kit_tables(empty_db_url) == KIT_TABLES
    assert helpers.schema_snapshot(empty_db_url) == public_before  # nothing in public, not even Alembic's
    assert helpers.query(empty_db_url, "SELECT version_num FROM yuxi_k8s.alembic_version") == [(HEAD,)]
    again = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert again.returncode == 0 and f"already at {HEAD}" in again.stdout
    current = run_cli("db", "current", "--database-url", empty_db_url)
    assert current.stdout.strip() == f"{HEAD} (at head)"

    lightrag = run_cli("db", "downgrade", "0006", "--database-url", empty_db_url)
    assert lightrag.returncode == 0 and f"downgraded {HEAD} -> 0006" in lightrag.stdout
    assert kit_tables(empty_db_url) == KIT_TABLES - {"lightrag_changes"}
    caches = run_cli("db", "downgrade", "0005", "--database-url", empty_db_url)
    assert caches.returncode == 0 and "downgraded 0006 -> 0005" in caches.stdout
    assert kit_tables(empty_db_url) == KIT_TABLES - {"lightrag_changes", "kb_processing", "task_requests"}
    sequences = "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'yuxi_k8s'"
    assert {row[0] for row in helpers.query(empty_db_url, sequences)} == {"change_seq"}
    down = run_cli("db", "downgrade", "0004", "--database-url", empty_db_url)
    assert down.returncode == 0 and "downgraded 0005 -> 0004" in down.stdout
    since_0004 = {"replicas", "task_owners", "kb_processing", "task_requests", "lightrag_changes"}
    assert kit_tables(empty_db_url) == KIT_TABLES - since_0004
    behind = run_cli("db", "current", "--database-url", empty_db_url)
    assert behind.stdout.strip() == f"0004 (head is {HEAD})"
    base = run_cli("db", "downgrade", "base", "--database-url", empty_db_url)
    assert base.returncode == 0, base.stderr
    assert kit_tables(empty_db_url) == {"alembic_version"}
    assert helpers.schema_snapshot(empty_db_url) == public_before
    assert run_cli("db", "upgrade", "--database-url", empty_db_url).returncode == 0


def test_unknown_revision_is_one_line(db_url: str) -> None:
    proc = run_cli("db", "upgrade", "0099", "--database-url", db_url)
    assert proc.returncode == 1
    assert "0099" in helpers.one_line_error(proc)


def test_two_upgrades_at_once_serialise(empty_db_url: str) -> None:
    results: list[int] = []

    def upgrade() -> None:
        results.append(run_cli("db", "upgrade", "--database-url", empty_db_url).returncode)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [0, 0, 0]
    assert helpers.query(empty_db_url, "SELECT version_num FROM yuxi_k8s.alembic_version") == [(HEAD,)]


def test_the_applications_tables_are_never_touched(empty_db_url: str, saves: Path, redis_url: str) -> None:
    """Issue 9: db upgrade created knowledge_bases and tasks beside the application's. Every name the
    contract says the application owns exists here with rows; the kit's whole workflow runs."""
    owned = sorted(load().owned_tables)
    helpers.create_app_tables(empty_db_url, owned)
    helpers.execute(
        empty_db_url,
        "CREATE SEQUENCE public.app_seq",
        "CREATE INDEX ix_app_tasks ON public.tasks (created_at)",
    )
    before = helpers.schema_snapshot(empty_db_url)
    steps = [
        ("db", "upgrade"),
        ("migrate-config", "--saves-dir", str(saves)),
        ("check", "--redis-url", redis_url),
        ("export-config", "--saves-dir", str(saves)),
        ("diff", "--saves-dir", str(saves)),
        ("db", "downgrade", "base"),
        ("db", "upgrade"),
    ]
    for step in steps:
        proc = run_cli(*step, "--database-url", empty_db_url)
        assert proc.returncode == 0, f"{step}: {proc.stdout}{proc.stderr}"
    assert helpers.schema_snapshot(empty_db_url) == before


# --- the guard: one line each, before anything is created ---------------------------


def test_guard_refuses_a_user_named_like_the_schema(private_postgres: helpers.PrivatePostgres) -> None:
    admin = private_postgres.url
    with helpers.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE ROLE yuxi_k8s LOGIN")
    with helpers.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE guard_user OWNER yuxi_k8s")
    url = f"postgresql://yuxi_k8s@127.0.0.1:{private_postgres.port}/guard_user"
    for args in (("db", "upgrade"), ("check",)):
        proc = run_cli(*args, "--database-url", url)
        assert proc.returncode == 1
        line = helpers.one_line_error(proc) if args[0] == "db" else proc.stderr.strip()
        assert "the database user is named yuxi_k8s, like the kit's schema" in line, proc.stderr
    assert kit_tables(url) == set()


def test_guard_refuses_the_schema_on_the_search_path(empty_db_url: str) -> None:
    name = empty_db_url.rsplit("/", 1)[1]
    helpers.execute(empty_db_url, f'ALTER DATABASE "{name}" SET search_path = "$user", public, yuxi_k8s')
    proc = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert proc.returncode == 1
    assert (
        "includes yuxi_k8s: the application's tables could land in the kit's schema"
        in helpers.one_line_error(proc)
    )
    assert kit_tables(empty_db_url) == set()


def test_guard_refuses_a_table_the_kit_did_not_create(db_url: str, redis_url: str) -> None:
    helpers.execute(db_url, "CREATE TABLE yuxi_k8s.other_tool (id int)")
    proc = run_cli("db", "upgrade", "--database-url", db_url)
    assert proc.returncode == 1
    assert "schema yuxi_k8s holds tables the kit did not create (other_tool)" in helpers.one_line_error(proc)
    check = run_cli("check", "--database-url", db_url, "--redis-url", redis_url)
    assert check.returncode == 1 and "other_tool" in helpers.one_line_error(check)


# --- adoption of an older kit's public tables ------------------------------------------


@pytest.mark.parametrize("revision", ["0001", "0002", "0003"])
def test_upgrade_adopts_an_older_kits_public_tables(empty_db_url: str, revision: str) -> None:
    helpers.build_legacy_kit(empty_db_url, revision)
    old_config = helpers.query(
        empty_db_url, "SELECT key, value, version, rev FROM public.system_config ORDER BY 1"
    )
    proc = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert proc.returncode == 0, proc.stderr
    assert (
        "adopted from an earlier kit release: public.system_config -> yuxi_k8s.config_entries" in proc.stdout
    )
    assert f"upgraded empty -> {HEAD}" in proc.stdout or f"0004 -> {HEAD}" in proc.stdout
    legacy = {"0001": set(), "0002": {"knowledge_bases", "kb_files", "tasks", "documents"}}
    legacy["0003"] = legacy["0002"]
    assert kit_tables(empty_db_url) == KIT_TABLES | {f"legacy_{t}" for t in legacy[revision]}
    assert kit_tables(empty_db_url, "public") == set()  # alembic_version too: it held only the kit's
    # Rows kept, versions and revs too.
    moved = helpers.query(
        empty_db_url, "SELECT key, value, version, rev FROM yuxi_k8s.config_entries ORDER BY 1"
    )
    assert moved == old_config
    for table in legacy[revision]:
        assert helpers.query(empty_db_url, f"SELECT count(*) FROM yuxi_k8s.legacy_{table}") == [(1,)]
    if revision == "0003":
        assert helpers.query(empty_db_url, "SELECT digest, rev FROM yuxi_k8s.sync_points") == [("abc", 7)]
    # The API reads the adopted rows, and new rows get revs past the old ones (defaults follow the move).
    settings = Settings(mode="database", database_url=empty_db_url)
    with open_config(settings) as cfg:
        assert cfg.get_versioned("default_model") == Versioned("openai/gpt-4.1", 1)
        assert cfg.get_provider("my-llm", scope="custom") == {"name": "Mine", "custom": True}
        cfg.set("default_model", "x/y")
        cfg.set("fresh", 1)
        cfg.put_provider("new", {"name": "N"})
    revs = helpers.query(empty_db_url, "SELECT key, rev FROM yuxi_k8s.config_entries ORDER BY rev")
    assert [k for k, _ in revs][-2:] == ["default_model", "fresh"]
    assert revs[-2][1] > max(r for *_, r in old_config)
    # And an adopted database downgrades like any other (the legacy copies stay, kept as data).
    down = run_cli("db", "downgrade", "base", "--database-url", empty_db_url)
    assert down.returncode == 0, down.stderr
    assert kit_tables(empty_db_url) == {"alembic_version"} | {f"legacy_{t}" for t in legacy[revision]}
    assert run_cli("db", "upgrade", "--database-url", empty_db_url).returncode == 0


def test_adoption_leaves_the_applications_tables_alone(empty_db_url: str) -> None:
    """An older kit at 0001 beside the application's own tables (its tasks has `id`, not `position`;
    its model_providers, as 0.6.2 adds, has no `scope`): the kit's tables move, the application's
    stay exactly as they were, and the kit starts its providers afresh."""
    app = ["tasks", "knowledge_bases", "users", "model_providers"]
    helpers.build_legacy_kit(empty_db_url, "0001")
    helpers.execute(empty_db_url, "DROP TABLE public.model_providers")
    helpers.create_app_tables(empty_db_url, app)
    before = helpers.schema_snapshot(empty_db_url)
    proc = run_cli("db", "upgrade", "--database-url", empty_db_url)
    assert proc.returncode == 0, proc.stderr
    after = helpers.schema_snapshot(empty_db_url)
    assert kit_tables(empty_db_url, "public") == set(app)
    for table in app:
        assert after[f"rows:{table}"] == before[f"rows:{table}"]
        columns = [c for c in after["columns"] if c[0] == table]
        assert columns == [c for c in before["columns"] if c[0] == table]
    assert kit_tables(empty_db_url) == KIT_TABLES
    with open_config(Settings(mode="database", database_url=empty_db_url)) as cfg:
        assert cfg.get("default_model") == "openai/gpt-4.1"
        assert cfg.put_provider("p", {"name": "P"}) == 1


def test_another_tools_alembic_version_in_public_is_left_alone(empty_db_url: str) -> None:
    helpers.execute(
        empty_db_url,
        "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)",
        "INSERT INTO public.alembic_version VALUES ('a1b2c3d4')",
    )
    before = helpers.schema_snapshot(empty_db_url)
    assert run_cli("db", "upgrade", "--database-url", empty_db_url).returncode == 0
    assert helpers.schema_snapshot(empty_db_url) == before
    assert kit_tables(empty_db_url) == KIT_TABLES
