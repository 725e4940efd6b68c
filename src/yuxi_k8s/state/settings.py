"""Settings of the state library, read from the same environment the application uses."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

Mode = Literal["file", "database"]

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


def normalise_database_url(url: str) -> str:
    """Return *url* as a SQLAlchemy URL for psycopg 3 (``postgresql+psycopg://``).

    Accepts the app's async URL (asyncpg) and the sync one (psycopg2); asyncpg's
    ``ssl=`` query option becomes libpq's ``sslmode=``.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _PG_SCHEMES:
        raise ValueError(
            f"not a PostgreSQL URL (scheme {parts.scheme or 'missing'!r}); expected postgresql://..."
        )
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("PostgreSQL URL has no host")
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "ssl" and scheme == "postgresql+asyncpg":
            key = "sslmode"
            value = {"true": "require", "false": "disable"}.get(value.lower(), value)
        query.append((key, value))
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


def libpq_url(url: str) -> str:
    """The same database as a plain libpq URL, for ``psycopg.connect``."""
    return "postgresql://" + normalise_database_url(url).split("://", 1)[1]


def describe_database_url(url: str) -> str:
    """host:port/db without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 5432}{parts.path or '/'}"


def redis_url_from_env(env: Mapping[str, str]) -> str | None:
    if env.get("REDIS_URL"):
        return env["REDIS_URL"]
    host = env.get("REDIS_HOST")
    if not host:
        return None
    port = env.get("REDIS_PORT") or "6379"
    password = env.get("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Settings:
    """Where state lives. ``mode`` picks the backend: saves/ files or PostgreSQL."""

    mode: Mode = "file"
    save_dir: Path = Path("saves")
    database_url: str | None = None  # normalised to postgresql+psycopg://
    redis_url: str | None = None
    # Reads from the cache keep working this long after the change feed is known
    # lost (a PostgreSQL restart takes about a second); after that they raise.
    stale_read_grace_s: float = 5.0
    connect_timeout_s: float = 5.0
    instance_id: str = field(default_factory=_default_instance_id)

    def __post_init__(self) -> None:
        if self.mode not in ("file", "database"):
            raise ValueError(f"CONFIG_MODE must be 'file' or 'database', not {self.mode!r}")
        if self.database_url is not None:
            object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        object.__setattr__(self, "save_dir", Path(self.save_dir))
        if self.mode == "database" and not self.database_url:
            raise ValueError("CONFIG_MODE=database needs DATABASE_URL_SYNC or DATABASE_URL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL_SYNC") or env.get("DATABASE_URL") or None
        return cls(
            mode=(env.get("CONFIG_MODE") or "file").strip().lower(),  # type: ignore[arg-type]
            save_dir=Path(env.get("SAVE_DIR") or "saves"),
            database_url=url,
            redis_url=redis_url_from_env(env),
            stale_read_grace_s=float(env.get("YUXI_STATE_STALE_READ_GRACE_S") or 5.0),
        )
