"""``DistributedLock``: a Redis lock with a fencing token, that fails closed.

- acquire: ``SET key token NX PX ttl`` with a random token, and in the same Lua
  script ``INCR`` of a per-lock counter: the fencing token, strictly increasing
  across holders. A missing counter (a Redis that lost its data) starts from the
  Redis server's own clock in microseconds (``TIME``), never from the acquiring
  node's: tokens stay above every earlier one whichever node acquires first, so
  a node whose clock runs behind is not refused afterwards. Pass ``lock.fence``
  to a guarded write (``cfg.set(..., fence=...)``): the database refuses a token
  older than one it has already seen, so a holder that lost its lock (paused
  process, expired TTL) cannot clobber a newer holder.
- release: Lua compare-and-delete, so we never delete another holder's lock.
- renewal: a thread extends the TTL (compare-and-pexpire) every ttl/3 while held;
  when it cannot, ``held`` turns False and ``check()`` raises. Without renewal
  (``renew=False``) the lock counts as held only until its TTL runs out, measured
  on this node's monotonic clock from before the acquire was sent.
- Redis unreachable: acquire raises StateUnavailableError; it never pretends.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any, Self

import redis

from .errors import LockError, StateUnavailableError
from .settings import check_redis_url

log = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2], string.format('%d', now[1] * 1000000 + now[2]))
  end
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def redis_client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """A client for *url*; a malformed URL is UrlError (one line, no credential)."""
    check_redis_url(url)
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
    )


class DistributedLock:
    def __init__(
        self,
        client: redis.Redis | str,
        name: str,
        *,
        ttl_s: float = 10.0,
        renew: bool = True,
        timeout_s: float = 2.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.client = redis_client(client, timeout_s) if isinstance(client, str) else client
        self.name = name
        self.key = f"yuxi:lock:{name}"
        self.fence_key = f"yuxi:lock:{name}:fence"
        self.ttl_ms = int(ttl_s * 1000)
        self.renew = renew
        self._token: str | None = None
        self._fencing_token: int | None = None
        self._valid_until = 0.0  # monotonic; the TTL measured from before the last acquire/renew
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._acquire = self.client.register_script(_ACQUIRE)
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)

    # --- state ----------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self._token is not None and not self._lost.is_set() and time.monotonic() < self._valid_until

    @property
    def fencing_token(self) -> int:
        if self._fencing_token is None or not self.held:
            raise LockError(f"lock {self.name} is not held")
        return self._fencing_token

    @property
    def fence(self) -> tuple[str, int]:
        """``(resource, token)`` for guarded writes: ``cfg.set(key, value, fence=lock.fence)``."""
        return (self.name, self.fencing_token)

    def check(self) -> None:
        """Raise LockError unless the lock is still held (renewal has not failed)."""
        if not self.held:
            raise LockError(f"lock {self.name} was lost")

    # --- acquire / release --------------------------------------------------------
    def _call(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise StateUnavailableError(f"redis unavailable for lock {self.name}: {exc}") from exc

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock; False when it is busy (non-blocking, or *timeout_s* passed).

        Raises StateUnavailableError when Redis cannot be reached: callers must not proceed.
        """
        if self._token is not None:
            raise LockError(f"lock {self.name} is already held by this object")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = 0.005
        while True:
            token = secrets.token_hex(16)
            sent = time.monotonic()
            fencing = self._call(self._acquire, [self.key, self.fence_key], [token, self.ttl_ms])
            if fencing:
                self._token, self._fencing_token = token, fencing
                self._valid_until = sent + self.ttl_ms / 1000
                self._lost.clear()
                self._stop.clear()
                if self.renew:
                    self._renewer = threading.Thread(
                        target=self._renew_loop, name=f"lock-{self.name}", daemon=True
                    )
                    self._renewer.start()
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def release(self) -> None:
        """Release if still ours. Raises LockError when it had been lost meanwhile."""
        token, self._token = self._token, None
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=2)
        self._renewer = None
        if token is None:
            return
        released = self._call(self._release, [self.key], [token])
        if not released:
            raise LockError(f"lock {self.name} had expired or was taken before release")

    def _renew_loop(self) -> None:
        interval = self.ttl_ms / 3000
        last_ok = time.monotonic()
        token = self._token or ""
        while not self._stop.wait(interval):
            try:
                sent = time.monotonic()
                if not int(self._renew(keys=[self.key], args=[token, self.ttl_ms])):
                    log.warning("lock %s was taken or expired; marking it lost", self.name)
                    self._lost.set()
                    return
                last_ok = time.monotonic()
                self._valid_until = sent + self.ttl_ms / 1000
            except redis.RedisError as exc:
                # Cannot tell; once the TTL may have run out, the lock must count as lost.
                if time.monotonic() - last_ok >= self.ttl_ms / 1000:
                    log.warning("lock %s: cannot renew (%s); marking it lost", self.name, exc)
                    self._lost.set()
                    return

    def __enter__(self) -> Self:
        if not self.acquire(timeout_s=30.0):
            raise LockError(f"timed out waiting for lock {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
