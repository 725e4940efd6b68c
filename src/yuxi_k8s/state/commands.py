"""``yuxi-k8s db upgrade|downgrade|current`` and ``yuxi-k8s check``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import UserError, add_database_url, database_url
from .errors import StateError, error_line
from .settings import REDIS_ENV, Settings, UrlError, describe_database_url


def db_error(url: str, exc: BaseException) -> UserError:
    """One line naming the server and the reason, never the password or a stored value."""
    return UserError(f"database {describe_database_url(url)}: {error_line(exc)}")


def engine_for(url: str) -> Any:
    from .db_backend import make_engine

    return make_engine(
        url, connect_timeout_s=float(os.environ.get("YUXI_CONNECT_TIMEOUT_S", "5")), pool_size=1
    )


def _move_schema(args: argparse.Namespace, step: str) -> tuple[str, str | None, str | None, list[str]]:
    """Run ``migrations.<step>(engine, args.revision)``; return (url, revision before, after, adopted).

    Database failures, a refused guard and an unknown revision (alembic's CommandError) end as one line.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from .. import migrations

    url = database_url(args)
    engine = engine_for(url)
    try:
        before = migrations.current_revision(engine)
        adopted = getattr(migrations, step)(engine, args.revision) or []
        after = migrations.current_revision(engine)
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None
    except StateError as exc:
        raise UserError(f"database {describe_database_url(url)}: {exc}") from None
    except CommandError as exc:
        raise UserError(f"{step} to {args.revision}: {exc}") from None
    finally:
        engine.dispose()
    return url, before, after, adopted


def cmd_upgrade(args: argparse.Namespace) -> int:
    url, before, after, adopted = _move_schema(args, "upgrade")
    where = describe_database_url(url)
    for line in adopted:
        print(f"adopted from an earlier kit release: {line}")
    if before == after:
        print(f"schema yuxi_k8s already at {after} ({where})")
    else:
        print(f"schema yuxi_k8s upgraded {before or 'empty'} -> {after} ({where})")
    return 0


def cmd_downgrade(args: argparse.Namespace) -> int:
    url, before, after, _ = _move_schema(args, "downgrade")
    print(
        f"schema yuxi_k8s downgraded {before or 'empty'} -> {after or 'empty'} ({describe_database_url(url)})"
    )
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
    try:
        settings = Settings(
            mode="database", database_url=url, redis_url=args.redis_url or os.environ.get(REDIS_ENV)
        )
    except (UrlError, ValueError) as exc:
        raise UserError(str(exc), exit_code=2) from None
    ok, checks = readiness(settings, timeout=args.timeout)
    for name, result in checks.items():
        detail = f"schema {result['revision']} ({result['schema']})" if result.get("revision") else ""
        detail = detail or result.get("error", "")
        print(f"{name:9} {'ok  ' if result['ok'] else 'FAIL'} {result.get('target', '')} {detail}".rstrip())
    if not ok:
        failed = ", ".join(f"{n}: {r.get('error')}" for n, r in checks.items() if not r["ok"])
        raise UserError(failed)
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="manage the kit's schema yuxi_k8s (Alembic)")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations (default: to head); adopts tables of older kits")
    up.add_argument("revision", nargs="?", default="head")
    add_database_url(up)
    up.set_defaults(handler=cmd_upgrade)
    down = dbsub.add_parser("downgrade", help="revert migrations down to REV (e.g. 0004, base)")
    down.add_argument("revision")
    add_database_url(down)
    down.set_defaults(handler=cmd_downgrade)
    cur = dbsub.add_parser("current", help="print the schema revision")
    add_database_url(cur)
    cur.set_defaults(handler=cmd_current)

    check = sub.add_parser("check", help="check the database (schema at head, names free) and Redis when set")
    add_database_url(check)
    check.add_argument("--redis-url", help=f"Redis URL (default: ${REDIS_ENV})")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds per check (default 3)")
    check.set_defaults(handler=cmd_check)
