"""``yuxi-k8s db upgrade|downgrade|current`` and ``yuxi-k8s check``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import UserError
from .settings import Settings, describe_database_url, normalise_database_url, redis_url_from_env


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL, any postgresql[+driver]:// form (default: $DATABASE_URL_SYNC or $DATABASE_URL)",
    )


def database_url(args: argparse.Namespace) -> str:
    url = (
        getattr(args, "database_url", None)
        or os.environ.get("DATABASE_URL_SYNC")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise UserError("no database: pass --database-url or set DATABASE_URL_SYNC", exit_code=2)
    try:
        return normalise_database_url(url)
    except ValueError as exc:
        raise UserError(f"bad database URL: {exc}", exit_code=2) from None


def db_error(url: str, exc: BaseException) -> UserError:
    """One line naming the server and the reason, never the password."""
    orig: Any = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return UserError(f"database {describe_database_url(url)}: {text}")


def engine_for(url: str) -> Any:
    from .db_backend import make_engine

    return make_engine(
        url, connect_timeout_s=float(os.environ.get("YUXI_CONNECT_TIMEOUT_S", "5")), pool_size=1
    )


def _move_schema(args: argparse.Namespace, step: str) -> tuple[str, str | None, str | None]:
    """Run ``migrations.<step>(engine, args.revision)``; return (url, revision before, after).

    Database failures and an unknown revision (alembic's CommandError) end as one line.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from .. import migrations

    url = database_url(args)
    engine = engine_for(url)
    try:
        before = migrations.current_revision(engine)
        getattr(migrations, step)(engine, args.revision)
        after = migrations.current_revision(engine)
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None
    except CommandError as exc:
        raise UserError(f"{step} to {args.revision}: {exc}") from None
    finally:
        engine.dispose()
    return url, before, after


def cmd_upgrade(args: argparse.Namespace) -> int:
    url, before, after = _move_schema(args, "upgrade")
    if before == after:
        print(f"schema already at {after} ({describe_database_url(url)})")
    else:
        print(f"schema upgraded {before or 'empty'} -> {after} ({describe_database_url(url)})")
    return 0


def cmd_downgrade(args: argparse.Namespace) -> int:
    url, before, after = _move_schema(args, "downgrade")
    print(f"schema downgraded {before or 'empty'} -> {after or 'empty'} ({describe_database_url(url)})")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from .. import migrations

    url = database_url(args)
    engine = engine_for(url)
    try:
        current = migrations.current_revision(engine)
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None
    finally:
        engine.dispose()
    head = migrations.head_revision()
    status = migrations.schema_status(current)
    state = {"head": "at head", "ahead": f"newer than this tool's head {head}"}.get(status, f"head is {head}")
    print(f"{current or 'empty'} ({state})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .health import readiness

    url = database_url(args)
    redis_url = args.redis_url or redis_url_from_env(os.environ)
    settings = Settings(mode="database", database_url=url, redis_url=redis_url)
    ok, checks = readiness(settings, timeout=args.timeout)
    for name, result in checks.items():
        detail = f"schema {result['revision']} ({result['schema']})" if result.get("revision") else ""
        detail = detail or result.get("error", "")
        target = result.get("target", "")
        print(f"{name:9} {'ok  ' if result['ok'] else 'FAIL'} {target} {detail}".rstrip())
    if not ok:
        failed = ", ".join(f"{n}: {r.get('error')}" for n, r in checks.items() if not r["ok"])
        raise UserError(failed)
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="manage the state schema (Alembic)")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    add_database_url(up)
    up.set_defaults(handler=cmd_upgrade)
    down = dbsub.add_parser("downgrade", help="revert migrations down to REV (e.g. 0001, base)")
    down.add_argument("revision")
    add_database_url(down)
    down.set_defaults(handler=cmd_downgrade)
    cur = dbsub.add_parser("current", help="print the schema revision")
    add_database_url(cur)
    cur.set_defaults(handler=cmd_current)

    check = sub.add_parser(
        "check", help="check database connectivity and schema revision (and Redis when set)"
    )
    add_database_url(check)
    check.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL or $REDIS_HOST/$REDIS_PORT)")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds per check (default 3)")
    check.set_defaults(handler=cmd_check)
