"""Issue 12's findings that still apply, replayed against the CLI and the database (db tier).

Each test reproduces what was reported and fails on the code it was reported against
(commit 6492d97): links followed out of saves/ both ways, special and huge files, a
half-written export, deep nesting, diff's exit code on a crash, ``1e999`` and stored
values echoed by PostgreSQL's DETAIL lines. Item numbers are issue 12's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.state import helpers
from tests.state.helpers import run_cli
from tests.state.saves_factory import BASE, CUSTOM, write_toml
from yuxi_k8s import cli
from yuxi_k8s.state import Settings, StateError, open_config
from yuxi_k8s.state.fileio import MAX_FILE_BYTES
from yuxi_k8s.transfer import service


def cli_run(*args: str, url: str, saves: Path) -> tuple[int, str, str]:
    proc = run_cli(*args, "--saves-dir", str(saves), "--database-url", url, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


# --- item 4: links and special files -------------------------------------------------------


def test_export_through_a_config_link_out_of_the_tree_is_refused(
    db_url: str, saves: Path, tmp_path: Path
) -> None:
    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "base.toml").write_text("victim = true\n")
    target = tmp_path / "target"
    target.mkdir()
    (target / "config").symlink_to(outside)
    code, _, err = cli_run("export-config", url=db_url, saves=target)
    assert code == 1
    assert "leads outside" in err and "through a symbolic link; refused" in err and len(err.splitlines()) == 1
    assert (outside / "base.toml").read_text() == "victim = true\n"
    assert sorted(p.name for p in outside.iterdir()) == ["base.toml"]


def test_migrate_refuses_a_providers_file_linked_out_of_the_tree(
    db_url: str, saves: Path, tmp_path: Path
) -> None:
    elsewhere = write_toml(tmp_path / "elsewhere.toml", {"model_names": {"planted": {"name": "x"}}})
    (saves / CUSTOM).unlink()
    (saves / CUSTOM).symlink_to(elsewhere)
    rows = helpers.kit_rows(db_url)
    code, _, err = cli_run("migrate-config", url=db_url, saves=saves)
    assert code == 1 and "custom_providers.toml: leads outside" in err and len(err.splitlines()) == 1
    assert helpers.kit_rows(db_url) == rows
    assert cli_run("diff", url=db_url, saves=saves)[0] == 2


def test_a_link_inside_the_tree_is_fine(db_url: str, saves: Path) -> None:
    (saves / "backup").mkdir()
    (saves / CUSTOM).rename(saves / "backup/custom_providers.toml")
    (saves / CUSTOM).symlink_to(saves / "backup/custom_providers.toml")
    code, _, err = cli_run("migrate-config", url=db_url, saves=saves)
    assert code == 0, err


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "oversized"])
def test_special_and_huge_files_are_refused_at_once(db_url: str, saves: Path, kind: str) -> None:
    """A FIFO as base.toml hung migrate-config; a link to /dev/zero ended in MemoryError."""
    path = saves / BASE
    path.unlink()
    refused = "not a regular file; refused"
    expected = {"fifo": refused, "directory": refused, "dev-zero": "leads outside",
                "oversized": f"larger than the {MAX_FILE_BYTES} allowed"}  # fmt: skip
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    for command in ("migrate-config", "diff"):
        code, _, err = cli_run(command, url=db_url, saves=saves)  # timeout=30: a hang fails the test
        assert code == (1 if command == "migrate-config" else 2)
        assert expected[kind] in err and len(err.splitlines()) == 1, err
    with pytest.raises(StateError, match=expected[kind]):
        open_config(Settings(mode="file", save_dir=saves)).items()


# --- item 8: export is all or nothing ---------------------------------------------------------


def test_a_failure_half_way_through_an_export_leaves_every_file_as_it_was(
    db_url: str, saves: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A permission error half-way replaced some files and not the others, and did not say so."""
    assert run_cli("migrate-config", "--saves-dir", str(saves), "--database-url", db_url).returncode == 0
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        cfg.set("default_model", "changed/in-db")
        cfg.put_provider("added", {"name": "A"}, scope="custom")
    before = helpers.tree_files(saves)
    real_replace = os.replace
    renamed: list[str] = []

    def replace(src: str | Path, dst: str | Path) -> None:
        renamed.append(str(dst))
        if len(renamed) == 2:  # the second file's rename fails, after the first went through
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(service.TransferError) as exc:
        service.export(saves, db_url)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(renamed) == 3  # the first file was replaced, the second failed, the first put back
    message = str(exc.value)
    assert "Permission denied; nothing written (2 file(s) were to change)" in message
    assert helpers.tree_files(saves) == before
    assert not [p for p in (saves / "config").iterdir() if p.name.endswith(".tmp")]


# --- items 12 and 15: nesting, diff's exit code, infinity, DETAIL lines -------------------------


def test_deep_nesting_in_a_settings_file_is_one_line(db_url: str, saves: Path) -> None:
    (saves / BASE).write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for command, exit_code in (("migrate-config", 1), ("diff", 2)):
        code, _, err = cli_run(command, url=db_url, saves=saves)
        assert code == exit_code and "base.toml: nested deeper than 32 levels" in err, err
        assert len(err.splitlines()) == 1
    (saves / BASE).write_text("a = " + "[" * 40 + "1" + "]" * 40 + "\n")
    code, _, err = cli_run("migrate-config", url=db_url, saves=saves)
    assert code == 1 and "base.toml: a" in err and "nested deeper than 32 levels" in err


def test_diff_exits_2_on_any_failure(
    db_url: str, saves: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """diff exited 1 ("different") on a crash; 2 is its documented "could not compare"."""
    (saves / BASE).write_text("x = [\n")
    assert cli_run("diff", url=db_url, saves=saves)[0] == 2
    port = helpers.free_port()
    assert cli_run("diff", url=f"postgresql://u:p@127.0.0.1:{port}/db", saves=saves.parent)[0] == 2

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an unforeseen bug")

    monkeypatch.setattr(service, "diff", crash)
    assert cli.main(["diff", "--saves-dir", str(saves), "--database-url", db_url]) == 2
    err = capsys.readouterr().err
    assert "could not compare: RuntimeError: an unforeseen bug" in err and len(err.splitlines()) == 1


def test_1e999_is_called_infinity_honestly(db_url: str, saves: Path) -> None:
    """``1e999`` said `Token "Infinity" is invalid`, a token the file does not hold."""
    (saves / BASE).write_text("timeout = 1e999\n")
    code, _, err = cli_run("migrate-config", url=db_url, saves=saves)
    assert code == 1 and "base.toml: timeout: inf is not a JSON number" in err
    assert "1e999 overflows to Infinity" in err and 'Token "Infinity"' not in err


def test_database_errors_never_echo_stored_values(db_url: str, saves: Path) -> None:
    """PostgreSQL's DETAIL/CONTEXT lines quote the failing row; a secret there was printed."""
    secret = "sk-live-DO-NOT-PRINT-4242"
    helpers.execute(
        db_url, "ALTER TABLE yuxi_k8s.config_entries ADD CONSTRAINT no_keys CHECK (key <> 'api_key')"
    )
    write_toml(saves / BASE, {"api_key": {"token": secret}})
    code, out, err = cli_run("migrate-config", url=db_url, saves=saves)
    assert code == 1
    assert 'violates check constraint "no_keys"' in err and "nothing written" in err
    assert secret not in out + err and "DETAIL" not in err and "Failing row" not in err
    assert len(err.splitlines()) == 1
    with open_config(Settings(mode="database", database_url=db_url)) as cfg, pytest.raises(StateError) as exc:
        cfg.set("api_key", {"token": secret})
    assert secret not in str(exc.value) and "no_keys" in str(exc.value)
