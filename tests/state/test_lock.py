"""DistributedLock on a real Redis: exclusion, renewal, expiry without renewal, fencing tokens."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.state import helpers
from yuxi_k8s.state import (
    DistributedLock,
    FencingError,
    LockError,
    Settings,
    StateUnavailableError,
    open_config,
)


def name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_exclusion_release_and_tokens(redis_url: str) -> None:
    resource = name()
    a, b = DistributedLock(redis_url, resource), DistributedLock(redis_url, resource)
    assert a.acquire()
    assert a.held and a.fence == (resource, a.fencing_token)
    assert b.acquire(blocking=False) is False
    assert b.acquire(timeout_s=0.3) is False
    with pytest.raises(LockError, match="already held by this object"):
        a.acquire()
    first = a.fencing_token
    a.release()
    assert not a.held
    with pytest.raises(LockError, match="is not held"):
        _ = a.fence
    assert b.acquire(blocking=False)
    assert b.fencing_token > first  # strictly increasing across holders
    b.release()
    a.release()  # releasing what is not held does nothing


def test_only_one_of_many_threads_holds_it_at_a_time(redis_url: str) -> None:
    resource = name()
    inside = 0
    most = 0
    tokens: list[int] = []
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        for _ in range(5):
            with DistributedLock(redis_url, resource, ttl_s=5) as lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                    tokens.append(lock.fencing_token)
                time.sleep(0.002)  # hold it a moment, so others really contend
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most == 1
    assert len(tokens) == 20 and tokens == sorted(set(tokens))  # in holding order: strictly increasing


def test_renewal_keeps_it_past_its_ttl(redis_url: str) -> None:
    resource = name()
    lock = DistributedLock(redis_url, resource, ttl_s=1.0)
    assert lock.acquire()
    try:
        competitor = DistributedLock(redis_url, resource, ttl_s=1.0)
        assert competitor.acquire(timeout_s=3.0) is False  # three TTLs of trying, never free
        assert lock.held
        lock.check()
    finally:
        lock.release()


def test_without_renewal_it_stops_counting_as_held_when_its_ttl_runs_out(redis_url: str, db_url: str) -> None:
    """Issue 12 item 14a: with renew=False, `held` and check() still said held after the TTL ran out
    and another holder took it."""
    resource = name()
    stale = DistributedLock(redis_url, resource, ttl_s=1.0, renew=False)
    assert stale.acquire()
    stale_fence = stale.fence
    newer = DistributedLock(redis_url, resource, ttl_s=5.0)
    assert newer.acquire(timeout_s=5.0)  # free once the TTL ran out
    try:
        assert not stale.held
        with pytest.raises(LockError, match="was lost"):
            stale.check()
        with pytest.raises(LockError):
            _ = stale.fence
        with open_config(Settings(mode="database", database_url=db_url)) as cfg:
            cfg.set("leader", "newer", fence=newer.fence)
            with pytest.raises(FencingError, match="is stale"):
                cfg.set("leader", "stale", fence=stale_fence)
            assert cfg.get("leader") == "newer"
        with pytest.raises(LockError, match="expired or was taken"):
            stale.release()
    finally:
        newer.release()


def test_tokens_stay_above_the_database_after_redis_lost_its_data(
    private_redis: helpers.PrivateRedis, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 14b: after a Redis data loss the counter was re-seeded from the acquiring node's
    clock, so a node 30 s behind was refused (`fencing token ... is stale`) for every later acquire.
    This node's clock is set 30 s behind; the seed must not depend on it."""
    resource = name()
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        with DistributedLock(private_redis.url, resource) as lock:
            cfg.set("leader", 1, fence=lock.fence)
            high_water = lock.fencing_token
        redis.Redis.from_url(private_redis.url).flushall()  # the data loss
        real_ns = time.time_ns
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() - 30_000_000_000)
        monkeypatch.setattr(time, "time", lambda: real_ns() / 1e9 - 30)
        seen = [high_water]
        for value in range(2, 5):
            with DistributedLock(private_redis.url, resource) as lock:
                assert lock.fencing_token > seen[-1]
                seen.append(lock.fencing_token)
                cfg.set("leader", value, fence=lock.fence)  # not refused
        assert cfg.get("leader") == 4


def test_redis_unreachable_fails_closed(private_redis: helpers.PrivateRedis) -> None:
    resource = name()
    lock = DistributedLock(private_redis.url, resource, ttl_s=1.0, timeout_s=0.5)
    assert lock.acquire()
    private_redis.stop()
    # Renewal cannot reach Redis: once the TTL may have run out, the lock counts as lost.
    helpers.wait_until(lambda: not lock.held, 5, "the lock to count as lost")
    with pytest.raises(LockError):
        lock.check()
    other = DistributedLock(private_redis.url, resource, timeout_s=0.5)
    with pytest.raises(StateUnavailableError, match=f"redis unavailable for lock {resource}"):
        other.acquire()


def test_file_mode_fences_too(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "saves").mkdir()
    resource = name()
    with open_config(Settings(mode="file", save_dir=tmp_path / "saves")) as cfg:
        with DistributedLock(redis_url, resource) as first:
            cfg.set("k", 1, fence=first.fence)
            old = first.fence
        with DistributedLock(redis_url, resource) as second:
            cfg.set("k", 2, fence=second.fence)
        with pytest.raises(FencingError):
            cfg.set("k", 3, fence=old)
        assert cfg.get("k") == 2
