"""Settings of the state library, read from the environment the application itself uses.

The database is the application's own ``POSTGRES_URL`` (its asyncpg form is
converted here) and Redis its ``REDIS_URL``: each credential has one source.
URLs are checked before use so a malformed one ends as one line that never
repeats any part of the password (a ``#`` or ``@`` left unencoded in a password
is the usual cause, and the parsers' own messages would echo pieces of it).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

Mode = Literal["file", "database"]

DATABASE_ENV = "POSTGRES_URL"
REDIS_ENV = "REDIS_URL"
MODE_ENV = "CONFIG_MODE"
GRACE_ENV = "YUXI_K8S_STATE_STALE_READ_GRACE_S"

# Every spelling the application or an operator may use for PostgreSQL.
_PG_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+psycopg2cffi",
    "postgresql+asyncpg",
    "postgresql+pg8000",
    "postgresql+psycopg_async",
}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_ENCODE_HINT = "percent-encode special characters in the user name or password (@ as %40, # as %23, / as %2F)"


class UrlError(ValueError):
    """A database or Redis URL that cannot be used; the message holds no credential."""


def _split(url: str, what: str, schemes: set[str]) -> SplitResult:
    text = url.strip()
    if not text:
        raise UrlError(f"the {what} URL is empty")
    if any(ch in text for ch in " \t\r\n"):
        raise UrlError(f"malformed {what} URL: it contains white space; {_ENCODE_HINT}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        expected = "postgresql" if "postgresql" in schemes else "redis"
        raise UrlError(f"not a {what} URL (expected {expected}://...)")
    if scheme == "unix":
        return parts
    # An unencoded '#', '?' or '/' in a password ends the netloc early: the rest of the password
    # then shows up as the fragment, query or path, with the '@' that closed it.
    after_netloc = f"{parts.path}?{parts.query}"
    if parts.fragment or parts.netloc.count("@") > 1 or "@" in after_netloc:
        raise UrlError(f"malformed {what} URL: {_ENCODE_HINT}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        raise UrlError(f"malformed {what} URL: the port is not a number; {_ENCODE_HINT}") from None
    if not parts.hostname and "host=" not in parts.query:
        raise UrlError(f"the {what} URL has no host")
    return parts


def normalise_database_url(url: str) -> str:
    """Return *url* as a SQLAlchemy URL for psycopg 3 (``postgresql+psycopg://``).

    Accepts the app's async URL (asyncpg) and the other drivers' spellings;
    asyncpg's ``ssl=`` query option becomes libpq's ``sslmode=``.
    """
    parts = _split(url, "PostgreSQL", _PG_SCHEMES)
    scheme = parts.scheme.lower()
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "ssl" and scheme == "postgresql+asyncpg":
            key = "sslmode"
            value = {"true": "require", "false": "disable"}.get(value.lower(), value)
        query.append((key, value))
    # Built by hand: urlunsplit drops the '//' of a URL without a host (a Unix socket given as
    # ?host=/run/postgresql), which neither SQLAlchemy nor libpq would then read as a URL.
    encoded = urlencode(query)
    return f"postgresql+psycopg://{parts.netloc}{parts.path}" + (f"?{encoded}" if encoded else "")


def check_redis_url(url: str) -> str:
    _split(url, "Redis", _REDIS_SCHEMES)
    return url.strip()


def libpq_url(url: str) -> str:
    """The same database as a plain libpq URL, for ``psycopg.connect``."""
    return "postgresql://" + normalise_database_url(url).split("://", 1)[1]


def describe_database_url(url: str) -> str:
    """host:port/db without credentials, for messages."""
    try:
        parts = _split(url, "PostgreSQL", _PG_SCHEMES)
    except UrlError:
        return "(malformed URL)"
    return f"{parts.hostname or '?'}:{parts.port or 5432}{parts.path or '/'}"


def describe_redis_url(url: str) -> str:
    try:
        parts = _split(url, "Redis", _REDIS_SCHEMES)
    except UrlError:
        return "(malformed URL)"
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '?'}:{parts.port or 6379}"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Settings:
    """Where state lives. ``mode`` picks the backend: saves/ files or PostgreSQL."""

    mode: Mode = "file"
    save_dir: Path = Path("saves")
    database_url: str | None = None  # normalised to postgresql+psycopg://
    redis_url: str | None = None
    # Reads keep answering from the cache this long after the change feed was last
    # known alive (a PostgreSQL restart takes about a second); after that they raise.
    stale_read_grace_s: float = 5.0
    # The listener proves its connection alive this often when nothing changes.
    heartbeat_s: float = 1.0
    connect_timeout_s: float = 5.0
    instance_id: str = field(default_factory=_default_instance_id)

    def __post_init__(self) -> None:
        if self.mode not in ("file", "database"):
            raise ValueError(f"{MODE_ENV} must be 'file' or 'database', not {self.mode!r}")
        if self.database_url is not None:
            object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        if self.redis_url is not None:
            object.__setattr__(self, "redis_url", check_redis_url(self.redis_url))
        object.__setattr__(self, "save_dir", Path(self.save_dir))
        if self.mode == "database" and not self.database_url:
            raise ValueError(f"{MODE_ENV}=database needs {DATABASE_ENV}")
        if self.stale_read_grace_s <= self.heartbeat_s:
            raise ValueError(f"{GRACE_ENV} must be longer than the {self.heartbeat_s:g} s heartbeat")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        grace = env.get(GRACE_ENV) or "5"
        try:
            grace_s = float(grace)
        except ValueError:
            raise ValueError(f"{GRACE_ENV} must be a number of seconds, not {grace!r}") from None
        return cls(
            mode=(env.get(MODE_ENV) or "file").strip().lower(),  # type: ignore[arg-type]
            save_dir=Path(env.get("SAVE_DIR") or "saves"),
            database_url=env.get(DATABASE_ENV) or None,
            redis_url=env.get(REDIS_ENV) or None,
            stale_read_grace_s=grace_s,
        )
