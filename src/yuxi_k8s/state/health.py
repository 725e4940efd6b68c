"""Liveness and readiness checks of the dependencies the API needs, each bounded by a timeout.

Liveness says only that the process answers (restarting the pod does not fix
a database outage). Readiness checks PostgreSQL (connect, schema at head),
Redis (PING), the saves/ directory in file mode, and Milvus, Neo4j and MinIO by
TCP connect when their URI is set in the environment.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import error_line
from .settings import Settings, describe_database_url, describe_redis_url, libpq_url

_STARTED = time.monotonic()

# name -> (environment variable, default port)
OPTIONAL_TCP = {"milvus": ("MILVUS_URI", 19530), "neo4j": ("NEO4J_URI", 7687), "minio": ("MINIO_URI", 9000)}


def liveness() -> dict[str, Any]:
    return {"status": "ok", "pid": os.getpid(), "uptime_s": round(time.monotonic() - _STARTED, 1)}


def check_postgres(url: str, timeout: float) -> dict[str, Any]:
    """Connect, prove the kit's schema is at head and that no kit object can meet an application table."""
    import psycopg

    from .. import migrations

    where = f"database {describe_database_url(url)}"
    with psycopg.connect(
        libpq_url(url),
        connect_timeout=max(1, math.ceil(timeout)),
        options=f"-c statement_timeout={int(timeout * 1000)}",
    ) as conn:
        migrations.guard(conn)
        revision = migrations.require_head(conn, where)
    status = migrations.schema_status(revision)
    return {"target": describe_database_url(url), "revision": revision, "schema": status}


def check_redis(url: str, timeout: float) -> dict[str, Any]:

    from .lock import redis_client

    client = redis_client(url, timeout)
    try:
        client.ping()
    finally:
        client.close()
    return {"target": describe_redis_url(url)}


def check_tcp(uri: str, default_port: int, timeout: float) -> dict[str, Any]:
    parts = urlsplit(uri if "://" in uri else f"tcp://{uri}")
    host, port = parts.hostname or "localhost", parts.port or default_port
    with socket.create_connection((host, port), timeout=timeout):
        pass
    return {"target": f"{host}:{port}"}


def check_saves(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise RuntimeError(f"{path} is not a directory")
    if not os.access(path, os.W_OK):
        raise RuntimeError(f"{path} is not writable")
    return {"target": str(path)}


def readiness(
    settings: Settings, timeout: float = 2.0, env: Mapping[str, str] | None = None
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every configured check in parallel; each gets at most *timeout* seconds."""
    env = os.environ if env is None else env
    checks: dict[str, Callable[[], dict[str, Any]]] = {}
    if settings.database_url:
        checks["postgres"] = lambda: check_postgres(settings.database_url or "", timeout)
    if settings.redis_url:
        checks["redis"] = lambda: check_redis(settings.redis_url or "", timeout)
    if settings.mode == "file":
        checks["saves"] = lambda: check_saves(Path(settings.save_dir))
    for name, (var, port) in OPTIONAL_TCP.items():
        if env.get(var):
            checks[name] = partial(check_tcp, env[var], port, timeout)

    targets = {
        "postgres": describe_database_url(settings.database_url or ""),
        "saves": str(settings.save_dir),
    }
    if settings.redis_url:
        targets["redis"] = describe_redis_url(settings.redis_url)
    results: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="readiness")
    started = time.monotonic()
    futures = {name: pool.submit(fn) for name, fn in checks.items()}
    for name, future in futures.items():
        remaining = max(0.0, timeout + 0.5 - (time.monotonic() - started))
        try:
            detail = future.result(timeout=remaining)
            results[name] = {"ok": True, **detail}
        except FutureTimeout:
            results[name] = {
                "ok": False,
                "target": targets.get(name, ""),
                "error": f"no answer within {timeout:g}s",
            }
        except Exception as exc:
            message = error_line(exc)
            results[name] = {"ok": False, "target": targets.get(name, ""), "error": message}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    pool.shutdown(wait=False, cancel_futures=True)
    return all(r["ok"] for r in results.values()), results
