"""Distributed state: configuration and knowledge-base metadata in PostgreSQL or files.

The public API (see docs/state.md)::

    from yuxi_k8s.state import DistributedConfig, Settings
    cfg = DistributedConfig.open(Settings.from_env())
"""

from .config import DistributedConfig, Versioned
from .errors import (
    ConflictError,
    FencingError,
    LockError,
    NotFoundError,
    StateError,
    StateUnavailableError,
)
from .settings import Settings, normalise_database_url

__all__ = [
    "ConflictError",
    "DistributedConfig",
    "DistributedLock",
    "FencingError",
    "LockError",
    "NotFoundError",
    "Settings",
    "StateError",
    "StateUnavailableError",
    "Versioned",
    "normalise_database_url",
]


def __getattr__(name: str) -> object:
    # The lock pulls in redis; import it only when asked for.
    if name == "DistributedLock":
        from .lock import DistributedLock

        return DistributedLock
    raise AttributeError(name)
