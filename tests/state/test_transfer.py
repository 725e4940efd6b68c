"""migrate-config, export-config, diff and check through the real CLI, on a realistic saves/ tree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.state.conftest import count_rows, run_cli, table_dump
from tests.state.saves_factory import build_saves, parsed_tree
from yuxi_k8s.transfer.service import PAUSE_ENV


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    err = result.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_files_to_database_to_files_round_trip(db_url: str, saves: Path, tmp_path: Path) -> None:
    first = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout
    assert count_rows(db_url)["kb_files"] == 121

    out = tmp_path / "exported"
    exported = run_cli("export-config", "--saves-dir", str(out), env={"DATABASE_URL_SYNC": db_url})
    assert exported.returncode == 0, exported.stderr
    assert parsed_tree(out) == parsed_tree(saves)  # the same content, file by file

    again = run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url)
    assert "nothing written" in again.stdout  # stable formatting: byte-identical on re-export

    same = run_cli("diff", "--saves-dir", str(out), "--database-url", db_url)
    assert same.returncode == 0 and "hold the same state" in same.stdout
    reimport = run_cli("migrate-config", "--saves-dir", str(out), "--database-url", db_url)
    assert "nothing to change" in reimport.stdout


def test_migration_run_twice_changes_nothing(db_url: str, saves: Path) -> None:
    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    before = table_dump(db_url)
    second = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert second.returncode == 0
    assert "unchanged since the last sync" in second.stdout and "nothing to change" in second.stdout
    assert table_dump(db_url) == before
    forced = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url, "--force")
    assert forced.returncode == 0 and "already matches" in forced.stdout  # compared: all equal
    assert table_dump(db_url) == before


def test_dry_run_prints_the_plan_and_writes_nothing(db_url: str, saves: Path) -> None:
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run, nothing written" in result.stdout
    assert "121 new" in result.stdout and "+ config default_model" in result.stdout
    assert sum(count_rows(db_url).values()) == 0


def test_a_changed_file_updates_only_what_changed(db_url: str, saves: Path) -> None:
    run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    path = saves / "knowledge_base_data/milvus_data/metadata_milvus.json"
    doc = json.loads(path.read_text())
    file_id = next(iter(doc["files"]))
    doc["files"][file_id]["status"] = "indexed"
    doc["files"][file_id]["note"] = "新的"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    diff = run_cli("diff", "--saves-dir", str(saves), "--database-url", db_url)
    assert diff.returncode == 1 and f"~ file {file_id}" in diff.stdout
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    files_line = next(line for line in result.stdout.splitlines() if "knowledge-base files" in line)
    assert "0 new" in files_line and "1 changed" in files_line


def test_two_migrations_at_once_one_waits(db_url: str, saves: Path) -> None:
    env = {**os.environ, PAUSE_ENV: "8"}  # long enough for two more CLI starts on a busy machine
    base_env = {k: v for k, v in env.items() if not k.startswith("DATABASE_URL")}
    cmd = [
        sys.executable,
        "-m",
        "yuxi_k8s",
        "migrate-config",
        "--saves-dir",
        str(saves),
        "--database-url",
        db_url,
    ]
    first = subprocess.Popen(cmd, env=base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_line(first, "pausing")
    impatient = run_cli(
        "migrate-config", "--saves-dir", str(saves), "--database-url", db_url, "--lock-wait", "0.5"
    )
    assert impatient.returncode == 1
    assert "still holds the lock" in impatient.stderr.strip().splitlines()[-1]  # after one "waiting" line
    second = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and "verified" in out
    assert second.returncode == 0, second.stderr
    assert "waiting" in second.stderr and "nothing to change" in second.stdout
    assert count_rows(db_url)["kb_files"] == 121


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never saw {needle!r} (exit {proc.poll()})")


def test_a_migration_killed_midway_leaves_the_database_as_it_was(db_url: str, tmp_path: Path) -> None:
    old = build_saves(tmp_path / "old", n_files=20, seed=1)
    assert run_cli("migrate-config", "--saves-dir", str(old), "--database-url", db_url).returncode == 0
    before = table_dump(db_url)
    new = build_saves(tmp_path / "new", n_files=3000, seed=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yuxi_k8s",
            "migrate-config",
            "--saves-dir",
            str(new),
            "--database-url",
            db_url,
        ],
        env={**env, PAUSE_ENV: "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(proc, "pausing")  # everything written and verified, not committed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the server notices the dead client and rolls back
    assert table_dump(db_url) == before
    # and the lock died with it: the next run goes through
    assert run_cli("migrate-config", "--saves-dir", str(new), "--database-url", db_url).returncode == 0


@pytest.mark.parametrize(
    "rel,text,where",
    [
        ("config/base.toml", 'default_model = "a"\nenable_reranker = tru\n', "config/base.toml:2"),
        ("config/custom_providers.toml", "[model_names.x\nname = 1\n", "config/custom_providers.toml:1"),
        ("knowledge_base_data/global_metadata.json", '{"databases": {,}}', "global_metadata.json:1"),
        (
            "knowledge_base_data/milvus_data/metadata_milvus.json",
            '{\n  "files": [\n',
            "metadata_milvus.json:3",
        ),
        ("tasks/tasks.json", "\xff\xfe", "tasks.json"),
        ("knowledge_base_data/global_metadata.json", '{"databases": []}', "global_metadata.json"),
        ("knowledge_base_data/milvus_data/metadata_milvus.json", "[1, 2]", "metadata_milvus.json"),
        ("knowledge_graph/neo4j/graph_info.json", '{"score": NaN}', "NaN is not JSON"),
        (
            "knowledge_base_data/lightrag_data/metadata_lightrag.json",
            "@milvus-copy",  # the same knowledge base in two type files: which one is right?
            "also appears in knowledge_base_data/lightrag_data/metadata_lightrag.json",
        ),
    ],
)
def test_malformed_files_fail_in_one_line_and_write_nothing(
    db_url: str, saves: Path, rel: str, text: str, where: str
) -> None:
    path = saves / rel
    if text == "\xff\xfe":
        path.write_bytes(b"\xff\xfe{}")
    elif text == "@milvus-copy":
        path.write_text((saves / "knowledge_base_data/milvus_data/metadata_milvus.json").read_text())
    else:
        path.write_text(text)
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert where in _one_line_error(result)
    assert sum(count_rows(db_url).values()) == 0
    assert run_cli("diff", "--saves-dir", str(saves), "--database-url", db_url).returncode == 2


def test_missing_and_empty_saves_dirs(db_url: str, tmp_path: Path) -> None:
    missing = run_cli("migrate-config", "--saves-dir", str(tmp_path / "nope"), "--database-url", db_url)
    assert "not a directory" in _one_line_error(missing)
    fresh = tmp_path / "fresh"
    (fresh / "logs").mkdir(parents=True)  # a fresh install: the migrate Job must pass and write nothing
    empty = run_cli("migrate-config", "--saves-dir", str(fresh), "--database-url", db_url)
    assert empty.returncode == 0, empty.stderr
    assert "nothing to import" in empty.stdout
    assert sum(count_rows(db_url).values()) == 0
    unreachable = run_cli("migrate-config", "--saves-dir", str(fresh), "--database-url", db_url + "_missing")
    assert "_missing" in _one_line_error(unreachable)  # still checks the database it was given


def test_missing_optional_files_are_fine(db_url: str, saves: Path, tmp_path: Path) -> None:
    for rel in [
        "config/custom_providers.toml",
        "knowledge_graph",
        "tasks",
        "knowledge_base_data/lightrag_data",
    ]:
        target = saves / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    (saves / "tasks").mkdir()
    (saves / "tasks/tasks.json").write_text("")  # an empty file (the app crashed mid-write) holds nothing
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url).returncode == 0
    expected = parsed_tree(saves)
    got = parsed_tree(out)
    # lightrag KBs still listed in global_metadata.json come back there, not in a type file
    assert got == expected


def test_wrong_urls_and_credentials_fail_in_one_line(db_url: str, saves: Path, free_tcp_port: int) -> None:
    wrong_password = db_url.replace("yuxi_test:", "yuxi_test:x", 1)
    cases = {
        wrong_password: "password authentication failed",
        f"postgresql://u:p@127.0.0.1:{free_tcp_port}/x": f"127.0.0.1:{free_tcp_port}",
        db_url.rsplit("/", 1)[0] + "/no_such_db": "no_such_db",
        "mysql://u:p@127.0.0.1/x": "not a PostgreSQL URL",
    }
    for url, needle in cases.items():
        for command in ("migrate-config", "export-config", "diff"):
            result = run_cli(command, "--saves-dir", str(saves), "--database-url", url)
            line = _one_line_error(result)
            assert needle in line, (command, line)
            assert "x@" not in line and ":p@" not in line  # no password in messages
    no_url = run_cli("migrate-config", "--saves-dir", str(saves))
    assert "DATABASE_URL_SYNC" in _one_line_error(no_url)


def test_export_failure_writes_nothing(db_url: str, empty_db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = run_cli("export-config", "--saves-dir", str(out), "--database-url", empty_db_url)
    assert "yuxi-k8s db upgrade" in _one_line_error(result)
    empty = run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url)
    assert "holds no state" in _one_line_error(empty)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_migrate_refuses_a_database_without_the_schema(empty_db_url: str, saves: Path) -> None:
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", empty_db_url)
    assert "run `yuxi-k8s db upgrade` first" in _one_line_error(result)


def test_export_empties_type_files_the_database_no_longer_has(db_url: str, saves: Path) -> None:
    run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    from yuxi_k8s.state import DistributedConfig, Settings

    cfg = DistributedConfig.open(Settings(mode="database", database_url=db_url))
    for db_id in cfg.list_kbs("lightrag"):
        cfg.delete_kb(db_id)
    with __import__("psycopg").connect(db_url.replace("+psycopg", "")) as conn:
        conn.execute("DELETE FROM documents WHERE name LIKE '%lightrag%'")
    cfg.close()
    result = run_cli("export-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    lightrag = json.loads((saves / "knowledge_base_data/lightrag_data/metadata_lightrag.json").read_text())
    assert lightrag["databases"] == {} and lightrag["files"] == {}


def test_check_reports_connectivity_and_schema(db_url: str, empty_db_url: str, redis_url: str) -> None:
    ok = run_cli("check", "--database-url", db_url, env={"REDIS_URL": redis_url})
    assert ok.returncode == 0, ok.stderr
    assert "schema 0003 (head)" in ok.stdout and "redis" in ok.stdout
    behind = run_cli("check", "--database-url", empty_db_url)
    assert "db upgrade" in _one_line_error(behind)


def test_a_bom_is_accepted_and_a_parent_dir_gets_a_hint(db_url: str, saves: Path) -> None:
    for rel in ("config/base.toml", "knowledge_base_data/global_metadata.json"):
        path = saves / rel
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # saved by a Windows editor
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    parent = run_cli("migrate-config", "--saves-dir", str(saves.parent), "--database-url", db_url)
    assert f"did you mean {saves}" in _one_line_error(parent)


def test_awkward_strings_survive_the_bulk_path(db_url: str, saves: Path, tmp_path: Path) -> None:
    """Tabs, newlines, backslashes, a literal \\N, quotes and emoji in keys, columns and payloads."""
    path = saves / "knowledge_base_data/milvus_data/metadata_milvus.json"
    doc = json.loads(path.read_text())
    db_id = next(iter(doc["databases"]))
    nasty = 'a\tb\nc\rd\\e \\N "q" 🚀 \u2028 \x01'
    for i, name in enumerate([nasty, "\\N", "", "\\", "tab\there"]):
        file_id = f"file_nasty_{i}\t\\"
        doc["files"][file_id] = {"file_id": file_id, "database_id": db_id, "filename": name, "status": name}
    path.write_text(json.dumps(doc, ensure_ascii=False))
    result = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url).returncode == 0
    assert parsed_tree(out) == parsed_tree(saves)


def test_the_migrate_job_of_the_next_rollout_keeps_edits_made_in_database_mode(
    db_url: str, saves: Path
) -> None:
    """The migrate Job runs on every rollout with the same, now stale, saves/ files."""
    from yuxi_k8s.state import DistributedConfig, Settings

    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    cfg = DistributedConfig.open(Settings(mode="database", database_url=db_url))
    try:
        cfg.set("default_model", "edited/in-database-mode")
        rollout = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
        assert rollout.returncode == 0 and "unchanged since the last sync (import" in rollout.stdout
        assert cfg.get("default_model") == "edited/in-database-mode"

        # Files edited afterwards (say, during a rollback to file mode) are imported, with a warning
        # because the database changed too; the files win for what they define.
        base = saves / "config/base.toml"
        base.write_text(base.read_text().replace("enable_web_search = true", "enable_web_search = false"))
        again = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
        assert again.returncode == 0, again.stderr
        assert "warning: the database changed since the last sync" in again.stderr
        deadline = time.monotonic() + 5
        while cfg.get("enable_web_search") is not False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cfg.get("enable_web_search") is False
        assert cfg.get("default_model") == "siliconflow/Qwen/Qwen3-32B"
    finally:
        cfg.close()


def test_export_records_the_sync_point(db_url: str, saves: Path, tmp_path: Path) -> None:
    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    from yuxi_k8s.state import DistributedConfig, Settings

    with DistributedConfig.open(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("fast_model", "db/edit")
    out = tmp_path / "rollback"
    assert run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url).returncode == 0
    # switching back to database mode with the files untouched: nothing to import
    back = run_cli("migrate-config", "--saves-dir", str(out), "--database-url", db_url)
    assert "unchanged since the last sync (export" in back.stdout
    dry = run_cli("migrate-config", "--saves-dir", str(out), "--database-url", db_url, "--dry-run")
    assert "unchanged since the last sync" in dry.stdout


def test_the_e2e_seed_tree_round_trips(db_url: str, tmp_path: Path) -> None:
    """A saves/ tree written by another hand (tests/e2e/seed), not by our generator."""
    seed = Path(__file__).resolve().parents[1] / "e2e/seed/saves"
    assert seed.is_dir(), "tests/e2e/seed/saves is part of the repository"
    result = run_cli("migrate-config", "--saves-dir", str(seed), "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert run_cli("export-config", "--saves-dir", str(out), "--database-url", db_url).returncode == 0
    assert parsed_tree(out) == parsed_tree(seed)


def test_a_backup_export_elsewhere_does_not_make_the_job_reimport_stale_files(
    db_url: str, saves: Path, tmp_path: Path
) -> None:
    from yuxi_k8s.state import DistributedConfig, Settings

    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    with DistributedConfig.open(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "edited/after-import")
    backup = run_cli("export-config", "--saves-dir", str(tmp_path / "backup"), "--database-url", db_url)
    assert backup.returncode == 0
    rollout = run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url)
    assert "unchanged since the last sync (import" in rollout.stdout  # the original files: seen before
    with DistributedConfig.open(Settings(mode="database", database_url=db_url)) as cfg:
        assert cfg.get("default_model") == "edited/after-import"
