"""migrate-config, export-config and diff on Yuxi-Know v0.6.1's saves/ layout, through the CLI."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.state import helpers
from tests.state.helpers import run_cli
from tests.state.saves_factory import BASE, CUSTOM, SETTINGS, custom_providers, model_names, write_toml
from yuxi_k8s.state import Settings, open_config
from yuxi_k8s.transfer import service


def cli(*args: str, url: str, saves: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ("--saves-dir", str(saves)) if saves is not None else ()
    return run_cli(*args, *extra, "--database-url", url)


def test_round_trip_on_the_applications_layout(db_url: str, saves: Path, tmp_path: Path) -> None:
    proc = cli("migrate-config", url=db_url, saves=saves)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"config keys +{len(SETTINGS)} new", proc.stdout)
    assert re.search(r"model providers +5 new", proc.stdout)
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        assert cfg.items() == SETTINGS
        assert cfg.list_providers() == model_names(3)
        assert cfg.list_providers("custom") == custom_providers(2)
    same = cli("diff", url=db_url, saves=saves)
    assert same.returncode == 0 and "hold the same state" in same.stdout
    # Export to a fresh folder: the application's two files, equal in content to the originals.
    out = tmp_path / "exported"
    out.mkdir()
    exported = cli("export-config", url=db_url, saves=out)
    assert exported.returncode == 0, exported.stderr
    assert "2 file(s) written" in exported.stdout
    for rel in (BASE, CUSTOM):
        assert tomllib.loads((out / rel).read_text()) == tomllib.loads((saves / rel).read_text())
    # Stable rendering: a second export writes nothing, byte for byte.
    before = helpers.tree_files(out)
    again = cli("export-config", url=db_url, saves=out)
    assert "already matches" in again.stdout and helpers.tree_files(out) == before


def test_a_rerun_imports_nothing_and_database_edits_survive(db_url: str, saves: Path) -> None:
    """The migrate Job runs on every rollout with the same, by then stale, files (sync points)."""
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "edited/in-database-mode")
    rows = helpers.kit_rows(db_url)
    rerun = cli("migrate-config", url=db_url, saves=saves)
    assert rerun.returncode == 0 and "unchanged since the last sync (import at" in rerun.stdout
    assert helpers.kit_rows(db_url) == rows
    dry = cli("migrate-config", "--dry-run", "--force", url=db_url, saves=saves)
    assert "dry run, nothing written" in dry.stdout and "~ config default_model" in dry.stdout
    assert helpers.kit_rows(db_url) == rows
    forced = cli("migrate-config", "--force", url=db_url, saves=saves)
    assert forced.returncode == 0 and re.search(r"config keys +0 new, +1 changed", forced.stdout)
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        assert cfg.get("default_model") == SETTINGS["default_model"]


def test_edited_files_are_imported_with_a_warning(db_url: str, saves: Path) -> None:
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("fast_model", "db/edit")
    write_toml(saves / BASE, {**SETTINGS, "default_model": "file/edit", "model_names": model_names(3)})
    proc = cli("migrate-config", url=db_url, saves=saves)
    assert proc.returncode == 0, proc.stderr
    assert "warning: the database changed since the last sync" in proc.stderr
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        assert cfg.get("default_model") == "file/edit"
        assert cfg.get("fast_model") == SETTINGS["fast_model"]  # the files win for what they define


def test_after_an_export_the_next_migrate_imports_nothing(db_url: str, saves: Path) -> None:
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "after/export")
    assert cli("export-config", url=db_url, saves=saves).returncode == 0
    rerun = cli("migrate-config", url=db_url, saves=saves)
    assert "unchanged since the last sync (export at" in rerun.stdout


def test_export_empties_a_custom_providers_file_the_database_no_longer_has(db_url: str, saves: Path) -> None:
    """A provider deleted in database mode must not come back when switching to file mode."""
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        for name in custom_providers(2):
            cfg.delete_provider(name, scope="custom")
    assert cli("export-config", url=db_url, saves=saves).returncode == 0
    assert tomllib.loads((saves / CUSTOM).read_text()) == {}
    assert cli("diff", url=db_url, saves=saves).returncode == 0


def test_kill_mid_migration_leaves_nothing(db_url: str, saves: Path) -> None:
    rows = helpers.kit_rows(db_url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yuxi_k8s",
            "migrate-config",
            "--saves-dir",
            str(saves),
            "--database-url",
            db_url,
        ],
        env=helpers.cli_env(**{service.PAUSE_ENV: "60"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # written after the rows and the sync point, before COMMIT
        assert "pausing 60s before commit" in line
        # Written, not committed: the rows exist in the open transaction only.
        helpers.wait_until(
            lambda: helpers.backends(db_url, "idle in transaction") == 1,
            10,
            "the migration to sit in its transaction",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    helpers.wait_until(lambda: helpers.backends(db_url) == 0, 10, "the killed client's backend to go")
    assert helpers.kit_rows(db_url) == rows
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0  # and a rerun imports all
    assert helpers.kit_rows(db_url)["config_entries"]


def test_a_fresh_install_imports_nothing_and_a_wrong_folder_is_named(
    db_url: str, tmp_path: Path, saves: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("migrate-config", url=db_url, saves=empty)
    assert proc.returncode == 0 and "holds no Yuxi-Know state (a fresh install?)" in proc.stdout
    parent = cli("migrate-config", url=db_url, saves=saves.parent)
    assert parent.returncode == 1
    assert f"did you mean {saves}?" in helpers.one_line_error(parent)
    missing = cli("migrate-config", url=db_url, saves=tmp_path / "nope")
    assert missing.returncode == 1 and "not a directory" in helpers.one_line_error(missing)
    export_empty = cli("export-config", url=db_url, saves=empty)
    assert export_empty.returncode == 1 and "holds no settings; nothing to export" in helpers.one_line_error(
        export_empty
    )


def test_a_malformed_file_stops_the_import_before_anything_is_written(db_url: str, saves: Path) -> None:
    rows = helpers.kit_rows(db_url)
    (saves / CUSTOM).write_text('version = 2\n[model_names.x]\nname = "X"\n', encoding="utf-8")
    proc = cli("migrate-config", url=db_url, saves=saves)
    assert proc.returncode == 1
    assert "custom_providers.toml: unexpected top-level keys ['version']" in helpers.one_line_error(proc)
    (saves / CUSTOM).write_text("[model_names.x\n", encoding="utf-8")
    bad = cli("migrate-config", url=db_url, saves=saves)
    assert bad.returncode == 1
    assert f"{saves / CUSTOM}: invalid TOML: " in helpers.one_line_error(bad) and "(at line 1," in bad.stderr
    assert helpers.kit_rows(db_url) == rows


def test_what_a_replica_starting_in_file_mode_would_miss(db_url: str, empty_db_url: str, saves: Path) -> None:
    """The check yuxi-k8s-app makes before file mode: store changes after the last import/export."""
    assert service.unsynced_changes(empty_db_url) is None  # no kit schema: file mode from the start
    assert service.unsynced_changes(db_url) is None  # the schema, nothing stored
    assert cli("migrate-config", url=db_url, saves=saves).returncode == 0
    assert service.unsynced_changes(db_url) is None  # the files hold what was imported
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "edited/in-database-mode")
    missing = service.unsynced_changes(db_url)
    assert missing is not None and missing.last_sync is not None and missing.last_sync.direction == "import"
    assert "files were last in sync at change" in missing.describe()
    assert cli("export-config", url=db_url, saves=saves).returncode == 0
    assert service.unsynced_changes(db_url) is None  # exported: a file-mode replica misses nothing
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.delete("default_model")  # a deletion is a change too
    missing = service.unsynced_changes(db_url)
    assert missing is not None and missing.last_sync is not None and missing.last_sync.direction == "export"


def test_a_store_never_exported_is_named_as_such(db_url: str) -> None:
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "set/in-database-mode")
    missing = service.unsynced_changes(db_url)
    assert missing is not None and missing.last_sync is None
    assert missing.describe().endswith("was never exported to the files")
