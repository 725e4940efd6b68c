"""Database mode: the cache, change notifications across replicas, and outages."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.state.conftest import SERVICES, TcpProxy
from yuxi_k8s.state import DistributedConfig, Settings, StateUnavailableError
from yuxi_k8s.state.db_backend import DatabaseConfig
from yuxi_k8s.state.settings import libpq_url
from yuxi_k8s.transfer.service import migrate


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _open(url: str, grace: float = 5.0) -> DatabaseConfig:
    cfg = DistributedConfig.open(Settings(mode="database", database_url=url, stale_read_grace_s=grace))
    assert isinstance(cfg, DatabaseConfig)
    return cfg


def test_a_write_on_one_replica_reaches_the_others(db_url: str) -> None:
    a, b, c = _open(db_url), _open(db_url), _open(db_url)
    seen_b: list[str] = []
    seen_a: list[str] = []
    b.subscribe(seen_b.append)
    a.subscribe(seen_a.append)
    try:
        a.set("default_model", "x/y")
        a.put_kb("kb_1", {"name": "n", "kb_type": "milvus"})
        a.put_file("file_1", {"file_id": "file_1", "database_id": "kb_1", "status": "indexed"})
        a.put_provider("openai", {"name": "OpenAI"})
        assert _wait(lambda: b.get("default_model") == "x/y" and c.get_file("file_1") is not None)
        assert _wait(
            lambda: {"default_model", "kb:kb_1", "file:file_1", "provider:model_names/openai"} <= set(seen_b)
        )
        a.delete("default_model")
        assert _wait(lambda: b.get("default_model") is None and c.get("default_model") is None)
        assert seen_a == []  # a replica is not told about its own writes
    finally:
        for cfg in (a, b, c):
            cfg.close()


def test_migrate_config_makes_every_replica_reload(db_url: str, saves: Path) -> None:
    replica = _open(db_url)
    seen: list[str] = []
    replica.subscribe(seen.append)
    try:
        assert replica.items() == {}
        migrate(saves, db_url, say=lambda _: None)
        assert _wait(lambda: replica.get("default_model") == "siliconflow/Qwen/Qwen3-32B")
        assert len(replica.list_files()) == 121
        assert "default_model" in seen
    finally:
        replica.close()


def test_listener_loss_reconnects_and_reloads_what_it_missed(db_url: str) -> None:
    writer, reader = _open(db_url), _open(db_url)
    try:
        writer.set("k", 1)
        assert _wait(lambda: reader.get("k") == 1)
        # Kill the reader's LISTEN connection, and write while it is gone: the NOTIFY is lost.
        with psycopg.connect(libpq_url(db_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
            )
            writer.set("k", 2)
        assert _wait(lambda: reader.get("k") == 2)  # the full reload after reconnecting caught it
        assert reader.healthy
    finally:
        writer.close()
        reader.close()


def test_reads_raise_after_the_grace_and_recover(proxied_db_url: tuple[str, TcpProxy], db_url: str) -> None:
    url, proxy = proxied_db_url
    writer = _open(db_url)
    reader = _open(url, grace=0.5)
    try:
        writer.set("default_model", "before")
        assert _wait(lambda: reader.get("default_model") == "before")
        proxy.stop()  # the database is gone for the reader
        assert _wait(lambda: not reader.healthy, timeout=5)
        time.sleep(0.6)
        for read in (lambda: reader.get("default_model"), reader.items, reader.list_files, reader.list_kbs):
            with pytest.raises(StateUnavailableError, match="no longer trusted"):
                read()
        with pytest.raises(StateUnavailableError):
            reader.set("default_model", "lost write")
        writer.set("default_model", "during the outage")
        proxy.start()
        assert _wait(lambda: reader.healthy, timeout=10)
        assert reader.get("default_model") == "during the outage"
    finally:
        writer.close()
        reader.close()


def test_open_fails_clearly_when_the_database_is_unreachable(free_tcp_port: int) -> None:
    url = f"postgresql://u:p@127.0.0.1:{free_tcp_port}/x"
    started = time.monotonic()
    with pytest.raises(StateUnavailableError, match=f"127.0.0.1:{free_tcp_port}"):
        DistributedConfig.open(Settings(mode="database", database_url=url))
    assert time.monotonic() - started < 10


def test_open_refuses_a_schema_that_is_not_at_head(empty_db_url: str) -> None:
    with pytest.raises(StateUnavailableError, match="yuxi-k8s db upgrade"):
        DistributedConfig.open(Settings(mode="database", database_url=empty_db_url))


def test_postgres_restart_under_live_replicas(db_url: str) -> None:
    """The real server restarts (scripts/services.sh restart-postgres): replicas recover and reload."""
    a, b = _open(db_url, grace=30), _open(db_url, grace=30)
    seen: list[str] = []
    b.subscribe(seen.append)
    reads_during: list[object] = []
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                reads_during.append(b.get("k"))
            except StateUnavailableError as exc:
                reads_during.append(exc)
            time.sleep(0.01)

    try:
        a.set("k", "before")
        assert _wait(lambda: b.get("k") == "before")
        reader = threading.Thread(target=keep_reading)
        reader.start()
        subprocess.run([str(SERVICES), "restart-postgres"], check=True, timeout=120, capture_output=True)
        assert _wait(lambda: b.healthy, timeout=15)
        a.set("k", "after")  # the pool drops dead connections (pre-ping) and writes again
        assert _wait(lambda: b.get("k") == "after", timeout=10)
        assert "k" in seen
        stop.set()
        reader.join()
        # Within the grace, reads kept answering from the cache: never None, never {}.
        assert all(r in ("before", "after") for r in reads_during), {repr(r) for r in reads_during}
    finally:
        stop.set()
        a.close()
        b.close()


def test_cached_reads_do_not_touch_the_database(db_url: str) -> None:
    cfg = _open(db_url)
    try:
        cfg.set("k", {"v": 1})
        cfg.engine.dispose()  # no pooled connection left; a read that queried would open one
        before = cfg.engine.pool.checkedout()
        for _ in range(1000):
            assert cfg.get("k") == {"v": 1}
        assert cfg.engine.pool.checkedout() == before
    finally:
        cfg.close()


def test_a_newer_schema_is_accepted_during_a_rolling_upgrade(db_url: str) -> None:
    """The migrate Job of release N+1 ran; pods of release N restart and must keep working."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe0003'")
    cfg = _open(db_url)
    try:
        cfg.set("k", 1)
        assert cfg.get("k") == 1
    finally:
        cfg.close()
    from yuxi_k8s.state import health

    ok, checks = health.readiness(Settings(mode="database", database_url=db_url))
    assert ok and checks["postgres"]["schema"] == "ahead"
