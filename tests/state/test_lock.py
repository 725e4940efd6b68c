"""DistributedLock on real Redis: exclusion, renewal, fencing, and failing closed."""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.state.conftest import PrivateRedis
from yuxi_k8s.state import (
    DistributedConfig,
    DistributedLock,
    FencingError,
    LockError,
    Settings,
    StateUnavailableError,
)


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_acquire_release_and_exclusion(redis_url: str) -> None:
    name = _name()
    first, second = DistributedLock(redis_url, name), DistributedLock(redis_url, name)
    assert first.acquire(blocking=False)
    assert first.held and first.fencing_token >= 1
    assert not second.acquire(blocking=False)
    assert not second.acquire(timeout_s=0.2)
    first.release()
    assert not first.held
    with second:
        assert second.fencing_token > first._fencing_token  # type: ignore[operator]
    assert redis.Redis.from_url(redis_url).get(f"yuxi:lock:{name}") is None


def test_renewal_keeps_the_lock_past_its_ttl(redis_url: str) -> None:
    name = _name()
    lock = DistributedLock(redis_url, name, ttl_s=0.8)  # renewed every ~0.27 s: slack for a busy CI box
    other = DistributedLock(redis_url, name, ttl_s=0.8)
    with lock:
        time.sleep(2.5)  # three TTLs
        assert lock.held
        assert not other.acquire(blocking=False)


def test_release_never_deletes_another_holders_lock(redis_url: str) -> None:
    name = _name()
    lock = DistributedLock(redis_url, name, ttl_s=0.2, renew=False)
    assert lock.acquire()
    time.sleep(0.3)  # expired: someone else takes it
    thief = DistributedLock(redis_url, name, ttl_s=5)
    assert thief.acquire(blocking=False)
    with pytest.raises(LockError, match="expired or was taken"):
        lock.release()
    assert thief.held
    assert redis.Redis.from_url(redis_url).exists(f"yuxi:lock:{name}")
    thief.release()


def test_a_lost_lock_is_noticed_by_the_renewer(redis_url: str) -> None:
    name = _name()
    lock = DistributedLock(redis_url, name, ttl_s=0.3)
    assert lock.acquire()
    redis.Redis.from_url(redis_url).delete(f"yuxi:lock:{name}")  # e.g. an operator, or a failover
    deadline = time.monotonic() + 2
    while lock.held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lock.held
    with pytest.raises(LockError):
        lock.check()
    with pytest.raises(LockError):
        _ = lock.fence


def test_fencing_token_refuses_a_stale_holder(redis_url: str, db_url: str) -> None:
    """Holder 1 pauses past its TTL; holder 2 writes; holder 1's late write is refused by the database."""
    name = _name()
    cfg = DistributedConfig.open(Settings(mode="database", database_url=db_url))
    try:
        old = DistributedLock(redis_url, name, ttl_s=0.2, renew=False)
        assert old.acquire()
        old_fence = old.fence
        time.sleep(0.3)
        new = DistributedLock(redis_url, name, ttl_s=5)
        with new:
            cfg.set("default_model", "from-new", fence=new.fence)
        with pytest.raises(FencingError):
            cfg.set("default_model", "from-old", fence=old_fence)
        assert cfg.get("default_model") == "from-new"
    finally:
        cfg.close()


def test_fencing_in_file_mode(redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "saves"
    root.mkdir()
    cfg = DistributedConfig.open(Settings(mode="file", save_dir=root))
    cfg.set("k", 1, fence=("res", 5))
    with pytest.raises(FencingError):
        cfg.set("k", 2, fence=("res", 4))
    assert cfg.get("k") == 1


def _count_under_lock(url: str, name: str, rounds: int) -> list[int]:
    client = redis.Redis.from_url(url)
    tokens = []
    for _ in range(rounds):
        with DistributedLock(client, name, ttl_s=5) as lock:
            tokens.append(lock.fencing_token)
            value = int(client.get(f"{name}:counter") or 0)  # unprotected read-modify-write
            time.sleep(0.001)
            client.set(f"{name}:counter", value + 1)
    return tokens


def test_mutual_exclusion_across_processes(redis_url: str) -> None:
    name, processes, rounds = _name(), 4, 25
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.starmap(_count_under_lock, [(redis_url, name, rounds)] * processes)
    assert int(redis.Redis.from_url(redis_url).get(f"{name}:counter")) == processes * rounds
    tokens = [t for r in results for t in r]
    assert len(set(tokens)) == len(tokens)  # every holder had its own fencing token
    assert all(a < b for r in results for a, b in itertools.pairwise(r))


def test_acquire_fails_closed_when_redis_is_down(private_redis: PrivateRedis) -> None:
    private_redis.stop()
    lock = DistributedLock(private_redis.url, _name(), timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StateUnavailableError, match="redis unavailable"):
        lock.acquire()
    with pytest.raises(StateUnavailableError), lock:
        pass
    assert not lock.held
    assert time.monotonic() - started < 5


def test_redis_stopped_while_the_lock_is_held(private_redis: PrivateRedis) -> None:
    lock = DistributedLock(private_redis.url, _name(), ttl_s=0.4, timeout_s=0.2)
    waiter = DistributedLock(private_redis.url, lock.name, ttl_s=0.4, timeout_s=0.2)
    assert lock.acquire()
    old_token = lock.fencing_token
    private_redis.stop()
    deadline = time.monotonic() + 3
    while lock.held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lock.held  # it cannot renew, so after the TTL it stops claiming the lock
    with pytest.raises(StateUnavailableError):
        waiter.acquire(timeout_s=1)  # a waiter fails closed too
    with pytest.raises(StateUnavailableError):
        lock.release()
    private_redis.start()  # back (empty, like a Redis without persistence)
    fresh = DistributedLock(private_redis.url, lock.name)
    assert fresh.acquire(blocking=False)
    # the counter was lost with the data, yet the new token is above the old one: fences still work
    assert fresh.fencing_token > old_token
    fresh.release()
