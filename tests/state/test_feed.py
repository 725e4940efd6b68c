"""Database mode's change feed: propagation, subscribers on their own thread, bounded staleness.

The promise: a replica serves a value from its cache only while its change feed is
proven alive (a heartbeat round trip at most ``stale_read_grace_s`` ago); past that,
reads raise StateUnavailableError. Never empty data, never an unbounded stale view.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.state import helpers
from yuxi_k8s import migrations
from yuxi_k8s.state import DistributedConfig, SchemaError, Settings, StateUnavailableError, open_config
from yuxi_k8s.state.db_backend import LISTENER_APPLICATION, DatabaseConfig

GRACE_S = 2.0
HEARTBEAT_S = 0.5


@pytest.fixture
def opened() -> Iterator[list[DistributedConfig]]:
    stores: list[DistributedConfig] = []
    yield stores
    for cfg in stores:
        cfg.close()


def replica(url: str, opened: list[DistributedConfig], **kw: float) -> DatabaseConfig:
    settings = Settings(mode="database", database_url=url, **kw)  # type: ignore[arg-type]
    cfg = open_config(settings)
    assert isinstance(cfg, DatabaseConfig)
    opened.append(cfg)
    return cfg


def test_a_write_reaches_another_replica_and_its_subscriber(
    db_url: str, opened: list[DistributedConfig]
) -> None:
    a, b = replica(db_url, opened), replica(db_url, opened)
    heard: list[tuple[str, str]] = []
    b.subscribe(lambda key: heard.append((key, threading.current_thread().name)))
    t0 = time.monotonic()
    a.set("default_model", "openai/gpt-4.1")
    helpers.wait_until(lambda: b.get("default_model") == "openai/gpt-4.1", 1.0, "b to see a's write")
    assert time.monotonic() - t0 < 1.0
    helpers.wait_until(lambda: heard, 2.0, "b's subscriber")
    key, thread = heard[0]
    assert key == "default_model"
    # Callbacks run on the dispatcher thread, never on the listener that applies changes.
    assert thread == "yuxi-state-callbacks"


def test_a_slow_subscriber_never_delays_the_cache(db_url: str, opened: list[DistributedConfig]) -> None:
    """Issue 12 item 7: a callback that sleeps 30 s kept get() at the old value for 15 s."""
    a, b = replica(db_url, opened), replica(db_url, opened)
    release = threading.Event()
    entered = threading.Event()
    calls: list[str] = []

    def slow(key: str) -> None:
        calls.append(key)
        entered.set()
        release.wait(30)  # a subscriber that sleeps 30 s

    b.subscribe(slow)
    failing: list[str] = []

    def broken(key: str) -> None:  # a broken subscriber stops nobody
        failing.append(key)
        raise RuntimeError("subscriber bug")

    b.subscribe(broken)
    try:
        a.set("k", 1)
        helpers.wait_until(entered.is_set, 2, "the slow callback to start")
        for value in (2, 3):
            t0 = time.monotonic()
            a.set("k", value)
            helpers.wait_until(lambda: b.get("k") == value, 1.0, f"b to see k={value} at once")  # noqa: B023
            assert time.monotonic() - t0 < 1.0
        assert b.healthy
        lag = helpers.wait_until(
            lambda: b.subscriber_lag_s >= 1.0 and b.subscriber_lag_s, 5, "the lag to show"
        )
        assert lag >= 1.0
        assert calls == ["k"]  # the others wait their turn, in order
    finally:
        release.set()
    helpers.wait_until(lambda: calls == ["k", "k", "k"], 5, "the queued callbacks to run")
    helpers.wait_until(lambda: b.subscriber_lag_s == 0.0, 5, "the lag to fall back to 0")
    assert failing == ["k", "k", "k"]


def test_a_replica_cut_off_reloads_what_it_missed(db_url: str, opened: list[DistributedConfig]) -> None:
    """Changes made while a replica's feed was down are not lost: it reloads everything on reconnect,
    and its subscribers hear each changed key and then '*'."""
    from urllib.parse import urlsplit

    proxy = helpers.TcpProxy(urlsplit(db_url).port or 5432)
    try:
        a = replica(db_url, opened)
        b = replica(proxy.url_for(db_url), opened, stale_read_grace_s=GRACE_S, heartbeat_s=HEARTBEAT_S)
        a.set("before", 1)
        helpers.wait_until(lambda: b.get("before") == 1, 2, "b to see the first write")
        heard: list[str] = []
        b.subscribe(heard.append)
        proxy.cut()
        a.set("missed", 2)
        a.delete("before")
        # Past the grace, b refuses to answer from a cache nobody updates.
        helpers.wait_until(lambda: not b.healthy, GRACE_S + 2, "b to report itself unhealthy")
        helpers.wait_until(lambda: unavailable(b), GRACE_S + 2, "reads to raise StateUnavailableError")
        with pytest.raises(StateUnavailableError, match="change feed not alive"):
            b.get("missed")
        proxy.restore()
        assert b.wait_fresh(10)
        assert b.get("missed") == 2 and b.get("before") is None
        helpers.wait_until(lambda: set(heard) == {"missed", "before", "*"}, 5, "reload callbacks")
        assert heard[-1] == "*"
    finally:
        proxy.close()


def unavailable(cfg: DistributedConfig, served: set[object] | None = None) -> bool:
    """True once reads raise StateUnavailableError; what was served until then goes to *served*."""
    try:
        value = cfg.get("k")
    except StateUnavailableError:
        return True
    if served is not None:
        served.add(value)
    return False


def _listener_pid(url: str, cfg: DatabaseConfig) -> int:
    name = f"{LISTENER_APPLICATION} {cfg.replica_id}"[:63]
    rows = helpers.query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (name,),
    )
    assert len(rows) == 1, rows
    return int(rows[0][0])


def test_a_hung_listener_is_noticed_within_the_grace(db_url: str, opened: list[DistributedConfig]) -> None:
    """Issue 12 item 6: with the listener's backend SIGSTOPped, a replica served the old value with
    healthy=True for 30 s and more. The connection stays open (the kernel still ACKs), so only the
    heartbeat's missing answer can tell."""
    a = replica(db_url, opened)
    b = replica(db_url, opened, stale_read_grace_s=GRACE_S, heartbeat_s=HEARTBEAT_S)
    a.set("k", "old")
    helpers.wait_until(lambda: b.get("k") == "old", 2, "b to see the first value")
    pid = _listener_pid(db_url, b)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        a.set("k", "new")  # b's listener cannot hear this while stopped

        served: set[object] = set()
        helpers.wait_until(lambda: unavailable(b, served), GRACE_S + 1.5, "reads to raise")
        took = time.monotonic() - stopped
        assert took <= GRACE_S + 1.0, f"stale reads went on for {took:.1f}s"
        assert served == {"old"}  # within the grace: the cached value, never empty
        assert not b.healthy
        with pytest.raises(StateUnavailableError, match="cached state is no longer trusted"):
            b.snapshot()
    finally:
        os.kill(pid, signal.SIGCONT)
    helpers.wait_until(lambda: b.healthy, 5, "b to recover after SIGCONT")
    helpers.wait_until(lambda: b.get("k") == "new", 5, "b to catch up")


def test_postgres_restart_under_live_replicas(
    private_postgres: helpers.PrivatePostgres, opened: list[DistributedConfig]
) -> None:
    """The real server restarts: every read answers right or raises (never empty), then all recover."""
    url = helpers.create_database(private_postgres.url)
    helpers.upgrade(url)
    a = replica(url, opened, stale_read_grace_s=GRACE_S, heartbeat_s=HEARTBEAT_S)
    b = replica(url, opened, stale_read_grace_s=GRACE_S, heartbeat_s=HEARTBEAT_S)
    a.set("k", "v1")
    helpers.wait_until(lambda: b.get("k") == "v1", 2, "b to see v1")
    answers: set[str] = set()
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                answers.add(repr(b.get("k")))
            except StateUnavailableError:
                answers.add("unavailable")
            time.sleep(0.005)

    before = _listener_pid(url, b)
    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        private_postgres.restart()
        helpers.wait_until(lambda: a.wait_fresh(0.1) and b.wait_fresh(0.1), 20, "both replicas to reconnect")
        helpers.wait_until(lambda: _try_set(a, "k", "v2"), 10, "a write after the restart")
        helpers.wait_until(lambda: b.get("k") == "v2", 2, "b to see v2")
        assert _listener_pid(url, b) != before  # a new connection: the server really restarted
    finally:
        stop.set()
        reader.join(5)
    assert answers <= {"'v1'", "'v2'", "unavailable"}, answers


def _try_set(cfg: DistributedConfig, key: str, value: str) -> bool:
    try:
        cfg.set(key, value)
        return True
    except StateUnavailableError:
        return False


def test_open_fails_closed(empty_db_url: str, tmp_path: Path) -> None:
    # No schema yet: one line that says what to run.
    needs = re.escape(
        f"is at nothing, this version needs {migrations.head_revision()}: run `yuxi-k8s db upgrade`"
    )
    with pytest.raises(SchemaError, match=needs):
        open_config(Settings(mode="database", database_url=empty_db_url))
    # Nobody listening: StateUnavailableError naming host:port/db, within the connect timeout.
    port = helpers.free_port()
    t0 = time.monotonic()
    with pytest.raises(StateUnavailableError, match=f"database 127.0.0.1:{port}/x unavailable"):
        open_config(
            Settings(
                mode="database", database_url=f"postgresql://u:secret@127.0.0.1:{port}/x", connect_timeout_s=2
            )
        )
    assert time.monotonic() - t0 < 10
    # File mode: a missing saves folder is an outage, not an empty configuration.
    with pytest.raises(StateUnavailableError, match="does not exist"):
        open_config(Settings(mode="file", save_dir=tmp_path / "missing")).get("k")
