"""The errors every state backend raises, so callers handle one set."""

from __future__ import annotations


class StateError(Exception):
    """Base of every error the state library raises on purpose."""


class ConflictError(StateError):
    """A write named a version that is no longer current: re-read and retry."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        found = "absent" if actual is None else f"at version {actual}"
        super().__init__(f"conflict on {key}: expected version {expected}, found {found}")


class NotFoundError(StateError, KeyError):
    """A record that must exist does not."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "not found"


class StateUnavailableError(StateError):
    """The database, Redis or the saves volume cannot be reached: nothing was read or written.

    Reads raise this instead of returning empty data, so a replica never
    mistakes an outage for an empty configuration and saves that over the real one.
    """


class FencingError(StateError):
    """A guarded write carried a fencing token older than one already seen: the lock was lost."""


class LockError(StateError):
    """The distributed lock could not be acquired or was lost while held."""
