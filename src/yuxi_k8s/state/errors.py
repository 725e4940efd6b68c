"""The errors the state library raises on purpose, so callers handle one set.

Every message is one line and names the resource (file, key, database host);
none carries a password or a stored value.
"""

from __future__ import annotations

from typing import Any


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


class InvalidValueError(StateError, ValueError):
    """A key or value that cannot be stored (NaN, NUL, too deep, too large, not JSON): nothing was written."""


class StateUnavailableError(StateError):
    """The database, Redis or the saves volume cannot be reached: nothing was read or written.

    Reads raise this instead of returning empty data, so a replica never
    mistakes an outage for an empty configuration and saves that over the real one.
    """


class SchemaError(StateError):
    """The kit's schema is missing, behind, or would touch a name the application owns."""


class FencingError(StateError):
    """A guarded write carried a fencing token older than one already seen: the lock was lost."""


class LockError(StateError):
    """The distributed lock could not be acquired or was lost while held."""


def error_line(exc: BaseException) -> str:
    """One line for an exception. For database errors the server's primary message only:
    PostgreSQL's DETAIL and CONTEXT lines can quote stored values."""
    orig: Any = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or (str(orig).strip().splitlines() or [""])[0]
    return " ".join(text.split()) or type(orig).__name__
