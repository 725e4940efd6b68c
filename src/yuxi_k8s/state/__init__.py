"""Distributed state: the application's settings and model providers in PostgreSQL or in its files.

The public API (see docs/state.md)::

    from yuxi_k8s.state import Settings, open_config
    cfg = open_config(Settings.from_env())   # CONFIG_MODE=database|file
"""

from .config import DistributedConfig, StateView, Versioned
from .errors import (
    ConflictError,
    FencingError,
    InvalidValueError,
    LockError,
    NotFoundError,
    SchemaError,
    StateError,
    StateUnavailableError,
)
from .settings import Settings, UrlError, normalise_database_url

__all__ = [
    "ConflictError",
    "DistributedConfig",
    "DistributedLock",
    "FencingError",
    "InvalidValueError",
    "LockError",
    "NotFoundError",
    "SchemaError",
    "Settings",
    "StateError",
    "StateUnavailableError",
    "StateView",
    "UrlError",
    "Versioned",
    "normalise_database_url",
    "open_config",
]


def open_config(settings: Settings | None = None) -> DistributedConfig:
    """The backend ``settings.mode`` names, opened (database mode: schema checked, cache loaded)."""
    settings = settings or Settings.from_env()
    if settings.mode == "database":
        from .db_backend import DatabaseConfig

        return DatabaseConfig(settings)
    from .file_backend import FileConfig

    return FileConfig(settings)


def __getattr__(name: str) -> object:
    # The lock pulls in redis; import it only when asked for.
    if name == "DistributedLock":
        from .lock import DistributedLock

        return DistributedLock
    raise AttributeError(name)
