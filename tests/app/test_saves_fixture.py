"""The settings files the kit's tests import are the real application's own output.

``tests/fixtures/saves-0.6.1/config/`` was written by Yuxi-Know 0.6.1 itself in file
mode (``Config.save()``, ``add_custom_provider``) through the steps below; this test
repeats them and compares, so the fixture can never drift into a hand-made format.
The same files then go through migrate-config and export-config unchanged.
"""

from __future__ import annotations

from pathlib import Path

from tests.app.replicas import Replica
from yuxi_k8s.app.localrun import AppRunner, app_env

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saves-0.6.1"
SETTINGS = {
    "default_model": "standin/standin-chat",
    "fast_model": "openai/gpt-5-mini",
    "enable_reranker": True,
    "enable_content_guard": True,
    "sandbox_exec_timeout_seconds": 240,
}
CUSTOM = {
    "id": "standin",
    "data": {"name": "Stand-in", "url": "http://model-standin:8000", "base_url": "http://model-standin:8000/v1",
             "default": "standin-chat", "env": "NO_API_KEY", "models": ["standin-chat", "standin-other"]},
}  # fmt: skip


def make_saves(runner: AppRunner, saves: Path, log: Path) -> None:
    """What an admin does through the app's UI, in file mode, on a fresh saves/ folder."""
    saves.mkdir(parents=True, exist_ok=True)
    # The provisioner URL at upstream's default, so it is not written (Config.save() writes every
    # field that differs from its default, environment overrides included).
    env = app_env(
        "postgresql+asyncpg://unused@127.0.0.1:9/unused",
        saves,
        CONFIG_MODE="file",
        SANDBOX_PROVISIONER_URL="http://sandbox-provisioner:8002",
    )
    replica = Replica(runner, env, log)
    try:
        replica.ask("set", values=SETTINGS)
        assert replica.ask("add_custom", id=CUSTOM["id"], data=CUSTOM["data"])["ok"] is True
    finally:
        replica.stop()


def written(saves: Path, name: str) -> str:
    """A file as the app wrote it, its own SAVE_DIR shown as the image's (/app/saves): the app
    writes save_dir too, as it differs from the default `saves`."""
    return (saves / "config" / name).read_text().replace(str(saves), "/app/saves")


def test_the_committed_fixture_is_what_the_application_writes(app_runner: AppRunner, tmp_path: Path) -> None:
    saves = tmp_path / "saves"
    make_saves(app_runner, saves, tmp_path / "replica.log")
    for name in ("base.toml", "custom_providers.toml"):
        committed = (FIXTURE / "config" / name).read_text()
        assert written(saves, name) == committed, f"{name} differs from what Yuxi-Know writes"


def regenerate(runner: AppRunner, work: Path) -> None:  # pragma: no cover - a maintainer's tool
    make_saves(runner, work / "saves", work / "replica.log")
    for name in ("base.toml", "custom_providers.toml"):
        (FIXTURE / "config" / name).write_text(written(work / "saves", name))


def test_the_kit_imports_and_exports_the_applications_files_unchanged(kit_db: str, tmp_path: Path) -> None:
    """migrate-config, diff and export-config on the real v0.6.1 layout: same settings, same providers."""
    import subprocess
    import sys
    import tomllib

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "yuxi_k8s", *args, "--database-url", kit_db],
            capture_output=True,
            text=True,
            check=False,
        )

    imported = cli("migrate-config", "--saves-dir", str(FIXTURE))
    assert imported.returncode == 0, imported.stderr
    assert "2 new" in imported.stdout or "new" in imported.stdout, imported.stdout
    same = cli("diff", "--saves-dir", str(FIXTURE))
    assert same.returncode == 0, same.stdout + same.stderr
    out = tmp_path / "exported"
    out.mkdir()
    exported = cli("export-config", "--saves-dir", str(out))
    assert exported.returncode == 0, exported.stderr
    for name in ("base.toml", "custom_providers.toml"):
        theirs = tomllib.loads((FIXTURE / "config" / name).read_text())
        ours = tomllib.loads((out / "config" / name).read_text())
        assert ours == theirs, name
