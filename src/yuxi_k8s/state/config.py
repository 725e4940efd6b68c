"""``DistributedConfig``: one API over the application's settings files or PostgreSQL.

What is stored is what Yuxi-Know v0.6.1 keeps in files: the top-level keys of
``saves/config/base.toml`` (config keys) and its model providers, scope
``model_names`` (``[model_names.<name>]`` of base.toml) or ``custom``
(``custom_providers.toml``). Both backends take the same calls and raise the
same errors. Public methods validate once, here (what can be stored, :mod:`.values`; what
the application can use, :mod:`.app_settings`), then call the backend's
``_``-prefixed hook (template methods), so no backend can store what the other
would refuse.

Change notifications: ``subscribe(callback)``; the callback gets the changed key
(a config key, ``provider:<scope>/<name>``, or ``*`` for "reload everything").
Callbacks run on one dispatcher thread of their own, in order, never on the
thread that applies changes to the cache: a slow callback delays later
callbacks, never the cache (``subscriber_lag_s`` says by how much).
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

from .app_settings import check_provider, check_setting
from .errors import InvalidValueError
from .settings import Settings
from .values import check_name, check_record, check_value

log = logging.getLogger(__name__)

Callback = Callable[[str], None]
SCOPES = ("model_names", "custom")
RELOAD = "*"
PROVIDER_PREFIX = "provider:"
SLOW_CALLBACK_S = 1.0


class Versioned(NamedTuple):
    value: Any
    version: int


@dataclass(frozen=True)
class StateView:
    """Everything at one moment: config keys and providers with their versions."""

    config: dict[str, Versioned] = field(default_factory=dict)
    providers: dict[tuple[str, str], Versioned] = field(default_factory=dict)

    def provider_records(self, scope: str) -> dict[str, dict[str, Any]]:
        return {name: v.value for (s, name), v in sorted(self.providers.items()) if s == scope}


def provider_key(scope: str, name: str) -> str:
    return f"{PROVIDER_PREFIX}{scope}/{name}"


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidValueError(f"provider scope must be 'model_names' or 'custom', not {scope!r}")
    return scope


def check_config_key(key: Any) -> str:
    """A top-level key of base.toml. ``model_names`` holds the providers (records of their own);
    ``*`` and ``provider:...`` name other things to subscribers (and in file mode's versions.json)."""
    check_name(key, "config key")
    if key == "model_names":
        raise InvalidValueError(
            "model providers are records: use put_provider/delete_provider, not set('model_names')"
        )
    if key == RELOAD or key.startswith(PROVIDER_PREFIX):
        raise InvalidValueError(
            f"a config key cannot be {RELOAD!r} or start with {PROVIDER_PREFIX!r}: "
            "subscribers receive those names for reloads and model providers"
        )
    return str(key)


class _Dispatcher:
    """Runs subscriber callbacks on a thread of its own, in the order changes were applied."""

    def __init__(self) -> None:
        self._subscribers: list[Callback] = []
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, float] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._oldest_pending: float | None = None

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="yuxi-state-callbacks", daemon=True)
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, key: str) -> None:
        with self._lock:
            if not self._subscribers:
                return
        self._queue.put((key, time.monotonic()))

    @property
    def lag_s(self) -> float:
        since = self._oldest_pending
        return 0.0 if since is None else time.monotonic() - since

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, queued_at = item
            self._oldest_pending = queued_at
            with self._lock:
                subscribers = list(self._subscribers)
            for callback in subscribers:
                started = time.monotonic()
                try:
                    callback(key)
                except Exception:  # a subscriber's bug must not stop the others
                    log.exception("state subscriber %r failed on %s", callback, key)
                took = time.monotonic() - started
                if took > SLOW_CALLBACK_S:
                    log.warning("state subscriber %r took %.1f s on %s", callback, took, key)
            self._oldest_pending = None

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)


class DistributedConfig(abc.ABC):
    """Settings and model providers shared by every replica."""

    settings: Settings

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dispatcher = _Dispatcher()

    # --- change notifications ---------------------------------------------------
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call *callback(key)* after another replica's change was applied here. Returns an unsubscribe."""
        return self._dispatcher.subscribe(callback)

    def _emit(self, key: str) -> None:
        self._dispatcher.emit(key)

    @property
    def subscriber_lag_s(self) -> float:
        """How long the oldest change not yet delivered to every subscriber has waited."""
        return self._dispatcher.lag_s

    def catch_up(self) -> bool:
        """Make what this object holds include every change committed before the call; True if
        it had to reload. A store that reads its source on every call has nothing to catch up."""
        return False

    # --- config keys --------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        found = self.get_versioned(key)
        return default if found is None else found.value

    def get_versioned(self, key: str) -> Versioned | None:
        return self._get_versioned(check_config_key(key))

    def items(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.snapshot().config.items()}

    def set(
        self,
        key: str,
        value: Any,
        *,
        expected_version: int | None = None,
        updated_by: str | None = None,
        fence: tuple[str, int] | None = None,
    ) -> int:
        """Write *key*; returns the new version. ``expected_version=0`` means "only if absent".

        *fence* ``(resource, token)`` from a held :class:`DistributedLock` refuses the
        write (FencingError) when a newer holder already wrote.
        """
        check_config_key(key)
        check_value(value, f"key {key}")
        check_setting(key, value)
        return self._set(key, value, expected_version, updated_by, fence)

    def set_many(self, values: Mapping[str, Any], *, updated_by: str | None = None) -> dict[str, int]:
        """Write several config keys at once, all or nothing; returns each key's new version.

        Every key and value is checked before anything is written, and the writes
        happen in one transaction (database) or one locked rewrite of base.toml
        (files): a refused item or a failure leaves every key as it was.
        """
        items = dict(values)
        for key, value in items.items():
            check_config_key(key)
            check_value(value, f"key {key}")
            check_setting(key, value)
        return self._set_many(items, updated_by) if items else {}

    def delete(self, key: str, *, expected_version: int | None = None) -> None:
        self._delete(check_config_key(key), expected_version)

    # --- model providers ------------------------------------------------------------
    def get_provider(self, name: str, *, scope: str = "model_names") -> dict[str, Any] | None:
        found = self.get_provider_versioned(name, scope=scope)
        return None if found is None else found.value

    def get_provider_versioned(self, name: str, *, scope: str = "model_names") -> Versioned | None:
        return self.snapshot().providers.get((check_scope(scope), name))

    def list_providers(self, scope: str = "model_names") -> dict[str, dict[str, Any]]:
        return self.snapshot().provider_records(check_scope(scope))

    def put_provider(
        self,
        name: str,
        record: dict[str, Any],
        *,
        scope: str = "model_names",
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> int:
        check_scope(scope)
        check_name(name, "provider name")
        check_record(record, f"provider {scope}/{name}")
        check_provider(scope, name, record)
        return self._put_provider(scope, name, record, expected_version, updated_by)

    def delete_provider(
        self, name: str, *, scope: str = "model_names", expected_version: int | None = None
    ) -> None:
        self._delete_provider(check_scope(scope), check_name(name, "provider name"), expected_version)

    # --- the backends' hooks -----------------------------------------------------------
    @abc.abstractmethod
    def snapshot(self) -> StateView:
        """Every key and provider with its version, read at one moment."""

    @abc.abstractmethod
    def _get_versioned(self, key: str) -> Versioned | None: ...

    @abc.abstractmethod
    def _set(
        self,
        key: str,
        value: Any,
        expected: int | None,
        updated_by: str | None,
        fence: tuple[str, int] | None,
    ) -> int: ...

    @abc.abstractmethod
    def _set_many(self, items: dict[str, Any], updated_by: str | None) -> dict[str, int]: ...

    @abc.abstractmethod
    def _delete(self, key: str, expected: int | None) -> None: ...

    @abc.abstractmethod
    def _put_provider(
        self, scope: str, name: str, record: dict[str, Any], expected: int | None, updated_by: str | None
    ) -> int: ...

    @abc.abstractmethod
    def _delete_provider(self, scope: str, name: str, expected: int | None) -> None: ...

    # --- lifecycle ---------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """False while reads may raise StateUnavailableError (database mode: change feed not alive)."""
        return True

    def wait_fresh(self, timeout: float = 10.0) -> bool:
        """Wait until reads are served from a fresh, connected cache (always so in file mode)."""
        return True

    def close(self) -> None:
        self._dispatcher.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
