"""``DistributedConfig``: one API over saves/ files or PostgreSQL.

``DistributedConfig.open(settings)`` returns the backend ``settings.mode`` names.
Both take the same calls and raise the same errors; change keys passed to
subscribers are plain config keys, or prefixed for records:
``provider:<scope>/<name>``, ``kb:<db_id>``, ``file:<file_id>``, ``task:<id>``,
``doc:<path>`` and ``*`` (everything may have changed: a full reload).
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Self

from .settings import Settings

log = logging.getLogger(__name__)

Callback = Callable[[str], None]
PROVIDERS_KEY = "model_names"  # get("model_names") is a read-only view of the provider rows


class Versioned(NamedTuple):
    value: Any
    version: int


def provider_key(scope: str, name: str) -> str:
    return f"provider:{scope}/{name}"


def check_scope(scope: str) -> str:
    if scope not in ("model_names", "custom"):
        raise ValueError(f"provider scope must be 'model_names' or 'custom', not {scope!r}")
    return scope


def check_config_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("a config key is a non-empty string")
    if key == PROVIDERS_KEY:
        raise ValueError(
            "model providers are records: use put_provider/delete_provider, not set('model_names')"
        )
    return key


class DistributedConfig(abc.ABC):
    """Configuration and knowledge-base metadata shared by every replica."""

    settings: Settings

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._subscribers: list[Callback] = []
        self._subscribers_lock = threading.Lock()

    @staticmethod
    def open(settings: Settings | None = None) -> DistributedConfig:
        settings = settings or Settings.from_env()
        if settings.mode == "database":
            from .db_backend import DatabaseConfig

            return DatabaseConfig(settings)
        from .file_backend import FileConfig

        return FileConfig(settings)

    # --- change notifications ---------------------------------------------------
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call *callback(key)* after another replica's change is applied here. Returns an unsubscribe."""
        with self._subscribers_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._subscribers_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, key: str) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(key)
            except Exception:  # a subscriber's bug must not stop the change feed
                log.exception("state subscriber %r failed on %s", callback, key)

    # --- config keys --------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        found = self.get_versioned(key)
        return default if found is None else found.value

    @abc.abstractmethod
    def get_versioned(self, key: str) -> Versioned | None: ...

    @abc.abstractmethod
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

    @abc.abstractmethod
    def delete(self, key: str, *, expected_version: int | None = None) -> None: ...

    @abc.abstractmethod
    def items(self) -> dict[str, Any]: ...

    # --- model providers ------------------------------------------------------------
    def get_provider(self, name: str, *, scope: str = "model_names") -> dict[str, Any] | None:
        found = self.get_provider_versioned(name, scope=scope)
        return None if found is None else found.value

    @abc.abstractmethod
    def get_provider_versioned(self, name: str, *, scope: str = "model_names") -> Versioned | None: ...

    @abc.abstractmethod
    def put_provider(
        self,
        name: str,
        record: dict[str, Any],
        *,
        scope: str = "model_names",
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> int: ...

    @abc.abstractmethod
    def delete_provider(
        self, name: str, *, scope: str = "model_names", expected_version: int | None = None
    ) -> None: ...

    @abc.abstractmethod
    def list_providers(self, scope: str = "model_names") -> dict[str, dict[str, Any]]: ...

    # --- knowledge bases and files -------------------------------------------------------
    def get_kb(self, db_id: str) -> dict[str, Any] | None:
        found = self.get_kb_versioned(db_id)
        return None if found is None else found.value

    @abc.abstractmethod
    def get_kb_versioned(self, db_id: str) -> Versioned | None: ...

    @abc.abstractmethod
    def put_kb(self, db_id: str, record: dict[str, Any], *, expected_version: int | None = None) -> int: ...

    @abc.abstractmethod
    def delete_kb(
        self, db_id: str, *, expected_version: int | None = None, delete_files: bool = True
    ) -> None: ...

    @abc.abstractmethod
    def list_kbs(self, kb_type: str | None = None) -> dict[str, dict[str, Any]]: ...

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        found = self.get_file_versioned(file_id)
        return None if found is None else found.value

    @abc.abstractmethod
    def get_file_versioned(self, file_id: str) -> Versioned | None: ...

    @abc.abstractmethod
    def put_file(
        self, file_id: str, record: dict[str, Any], *, expected_version: int | None = None
    ) -> int: ...

    @abc.abstractmethod
    def delete_file(self, file_id: str, *, expected_version: int | None = None) -> None: ...

    @abc.abstractmethod
    def list_files(self, db_id: str | None = None) -> dict[str, dict[str, Any]]: ...

    # --- tasks and whole documents (graph_info.json) ------------------------------------
    @abc.abstractmethod
    def list_tasks(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def put_task(
        self, task_id: str, record: dict[str, Any], *, expected_version: int | None = None
    ) -> int: ...

    @abc.abstractmethod
    def get_document(self, name: str) -> Versioned | None: ...

    @abc.abstractmethod
    def put_document(self, name: str, value: Any, *, expected_version: int | None = None) -> int: ...

    # --- lifecycle ---------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """False while reads may raise StateUnavailableError (database mode: change feed lost)."""
        return True

    def wait_fresh(self, timeout: float = 10.0) -> bool:
        """Wait until reads are served from a fresh, connected cache (always so in file mode)."""
        return True

    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
