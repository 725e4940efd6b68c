"""Database mode inside the real application: its own Config object loads, saves and hears every replica.

Each replica is a process of the real Yuxi-Know code (tests/app/actors/replica.py,
started the way ``yuxi-k8s-app`` starts it) against this test's PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.app.replicas import Replica
from yuxi_k8s.app.localrun import AppRunner, app_env
from yuxi_k8s.state import Settings, open_config
from yuxi_k8s.state.settings import libpq_url

STANDIN = {"name": "Stand-in", "url": "http://x", "base_url": "http://x/v1", "default": "m",
           "env": "NO_API_KEY", "models": ["m"]}  # fmt: skip


def _start(runner: AppRunner, db: str, tmp: Path, started: list[Replica], name: str, **env: str) -> Replica:
    saves = tmp / f"saves-{name}"
    saves.mkdir(exist_ok=True)
    replica = Replica(runner, app_env(db, saves, **env), tmp / f"{name}.log")
    started.append(replica)
    return replica


def _store(db: str) -> Any:
    return open_config(Settings(mode="database", database_url=db))


def test_a_replica_loads_settings_and_providers_from_the_store(
    app_runner: AppRunner, kit_db: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    with _store(kit_db) as store:
        store.set("default_model", "standin/m")
        store.set("enable_reranker", True)
        store.put_provider("standin", {**STANDIN, "custom": True}, scope="custom")
    a = _start(app_runner, kit_db, tmp_path, replicas, "a")
    values = a.ask("get", fields=["default_model", "enable_reranker", "fast_model"])["values"]
    assert values["default_model"] == "standin/m"
    assert values["enable_reranker"] is True
    assert values["fast_model"] == "siliconflow/Pro/MiniMaxAI/MiniMax-M2.5"  # a default, not stored
    providers = a.ask("providers")
    assert "standin" in providers["custom"] and providers["status"]["standin"] is True
    # base.toml on the volume was never read for these values: the replica has none.
    assert not (tmp_path / "saves-a" / "config" / "base.toml").exists()


def test_a_save_on_one_replica_reaches_the_other_without_a_restart(
    app_runner: AppRunner, kit_db: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    a = _start(app_runner, kit_db, tmp_path, replicas, "a")
    b = _start(app_runner, kit_db, tmp_path, replicas, "b")
    latencies = []
    for i in range(20):
        a.ask("set", values={"sandbox_exec_timeout_seconds": 200 + i})
        seen = b.ask("wait", field="sandbox_exec_timeout_seconds", value=200 + i, timeout=5)
        assert seen["ok"], seen
        latencies.append(seen["after_s"])
    assert max(latencies) < 1.0, latencies
    # Providers are pushed too, and what the app derives from them (status, available list).
    assert a.ask("add_custom", id="standin", data=STANDIN)["ok"] is True
    assert b.ask("wait_custom", id="standin", present=True)["ok"]
    providers = b.ask("providers")
    assert "standin" in providers["custom"] and "standin" in providers["available"], providers
    assert b.ask("delete_custom", id="standin")["ok"] is True
    assert a.ask("wait_custom", id="standin", present=False)["ok"]
    with _store(kit_db) as store:
        assert store.get_provider("standin", scope="custom") is None


def test_two_replicas_saving_concurrently_lose_nothing(
    app_runner: AppRunner, kit_db: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    a = _start(app_runner, kit_db, tmp_path, replicas, "a")
    b = _start(app_runner, kit_db, tmp_path, replicas, "b")
    n = 150
    # Both at once: each process answers its hammer when done; send both before reading.
    for replica, field in ((a, "sandbox_exec_timeout_seconds"), (b, "sandbox_max_output_bytes")):
        assert replica.proc.stdin is not None
        replica.proc.stdin.write(
            f'{{"op": "hammer", "field": "{field}", "shared": "fast_model", "n": {n}}}\n'
        )
        replica.proc.stdin.flush()
    replies = [a._read(600), b._read(600)]
    assert all(r.get("ok") for r in replies), replies
    with _store(kit_db) as store:
        exec_timeout = store.get_versioned("sandbox_exec_timeout_seconds")
        max_output = store.get_versioned("sandbox_max_output_bytes")
        shared = store.get_versioned("fast_model")
    assert exec_timeout == (1000 + n - 1, n), exec_timeout  # every save of A landed, in order
    assert max_output == (1000 + n - 1, n), max_output  # every save of B landed
    assert shared is not None and shared.version == 2 * n, shared  # both wrote the shared key n times
    for replica in (a, b):  # and both converge on what the store holds
        assert replica.ask("wait", field="fast_model", value=shared.value)["ok"]
        values = replica.ask("get", fields=["sandbox_exec_timeout_seconds", "sandbox_max_output_bytes"])
        assert values["values"] == {
            "sandbox_exec_timeout_seconds": 1000 + n - 1,
            "sandbox_max_output_bytes": 1000 + n - 1,
        }


def test_a_save_that_cannot_reach_the_store_fails_and_keeps_what_the_store_holds(
    app_runner: AppRunner, kit_db: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    with _store(kit_db) as store:
        store.set("default_model", "kept/model")
    a = _start(app_runner, kit_db, tmp_path, replicas, "a")
    with psycopg.connect(libpq_url(kit_db), autocommit=True) as conn:  # the kit's table goes away
        conn.execute("ALTER TABLE yuxi_k8s.config_entries RENAME TO config_entries_gone")
    with pytest.raises(AssertionError, match="settings not saved"):
        a.ask("set", values={"default_model": "lost/model"})
    assert a.ask("get", fields=["default_model"])["values"]["default_model"] == "kept/model"


def test_start_up_refuses_an_unready_store_and_another_version_with_one_line(
    app_runner: AppRunner, pg_base_url: str, kit_db: str, tmp_path: Path
) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    empty = pg_base_url.rpartition("/")[0] + "/postgres"  # a database without the kit's schema
    env = app_env(
        empty.replace("postgresql+psycopg", "postgresql+asyncpg"), saves, YUXI_K8S_STORE_WAIT_SECONDS="0"
    )
    out = app_runner.run(["yuxi-k8s-app", "uvicorn", "server.main:app", "--port", "1"], env, timeout=180)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 78, out.stderr[-2000:]
    assert lines[-1].startswith("yuxi-k8s-app: ") and "yuxi-k8s db upgrade" in lines[-1], lines[-3:]
    # Another application version: a distribution named yuxi 0.6.2 first on the path.
    fake = tmp_path / "fake"
    (fake / "yuxi-0.6.2.dist-info").mkdir(parents=True)
    (fake / "yuxi-0.6.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: yuxi\nVersion: 0.6.2\n"
    )
    env = app_env(kit_db, saves, PYTHONPATH=f"{fake}:{app_runner.kit_src}")
    out = app_runner.run(["yuxi-k8s-app", "uvicorn", "server.main:app", "--port", "1"], env, timeout=180)
    assert out.returncode == 78, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        "yuxi-k8s-app: Yuxi-Know 0.6.2 is not supported by this kit's database mode (supported: 0.6.1); "
        "deploy a supported image or use CONFIG_MODE=file"
    ), last


def test_file_mode_starts_only_once_the_files_hold_the_stores_changes(
    app_runner: AppRunner, kit_db: str, tmp_path: Path
) -> None:
    """A switch back to file mode applied all at once starts pods beside the migrate Job's export:
    none may read saves/ before the export (it would serve, and save, the old settings)."""
    from yuxi_k8s.transfer import service

    saves = tmp_path / "saves"
    (saves / "config").mkdir(parents=True)
    with _store(kit_db) as store:
        store.set("default_model", "standin/m")
    env = app_env(kit_db, saves, CONFIG_MODE="file", YUXI_K8S_STORE_WAIT_SECONDS="0")
    # Not the api: in file mode any other command runs unchanged once the check passes.
    out = app_runner.run(["yuxi-k8s-app", "true"], env, timeout=180)
    assert out.returncode == 78, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("yuxi-k8s-app: file mode: the kit's store is at change "), last
    assert "never exported" in last and "yuxi-k8s export-config --saves-dir" in last, last
    service.export(saves, kit_db)
    out = app_runner.run(["yuxi-k8s-app", "true"], env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
