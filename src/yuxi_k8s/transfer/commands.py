"""``yuxi-k8s migrate-config``, ``export-config`` and ``diff``: saves/ files <-> PostgreSQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cli import UserError, add_database_url, database_url
from ..state.settings import describe_database_url


def _saves(args: argparse.Namespace) -> Path:
    return Path(args.saves_dir)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .service import TransferError, migrate  # imported here: `yuxi-k8s --help` stays fast

    url = database_url(args)
    try:
        result = migrate(
            _saves(args), url, dry_run=args.dry_run, force=args.force, lock_wait_s=args.lock_wait, say=_say
        )
    except TransferError as exc:
        raise UserError(str(exc)) from None
    plan = result.plan
    target = describe_database_url(url)
    if result.unchanged_since is not None:
        sync = result.unchanged_since
        print(
            f"{args.saves_dir} unchanged since the last sync ({sync.direction} at "
            f"{sync.synced_at:%Y-%m-%d %H:%M:%S %Z}): nothing to change; {target} keeps any newer edits "
            "(--force re-imports the files over them)"
        )
        return 0
    if result.empty_source:
        # A fresh install has no saves yet: the migrate Job must pass, and must not wipe anything.
        print(
            f"{args.saves_dir} holds no Yuxi-Know state (a fresh install?): nothing to import into {target}"
        )
        return 0
    if args.dry_run:
        print(f"plan: {args.saves_dir} -> {target} (dry run, nothing written)")
        print("\n".join(plan.summary()))
        if not plan.empty:
            print("\n".join(line for line in plan.details() if not line.startswith("-")))
        return 0
    if not result.committed:
        print(f"database {target} already matches {args.saves_dir}: nothing to change")
        return 0
    print(f"migrated {args.saves_dir} -> {target} in {result.seconds:.2f}s (one transaction, verified)")
    print("\n".join(plan.summary()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .service import TransferError, export

    url = database_url(args)
    try:
        changed = export(_saves(args), url)
    except TransferError as exc:
        raise UserError(str(exc)) from None
    if not changed:
        print(f"{args.saves_dir} already matches {describe_database_url(url)}: nothing written")
    else:
        print(f"exported {describe_database_url(url)} -> {args.saves_dir}: {len(changed)} file(s) written")
        for rel in changed:
            print(f"  {rel}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .service import TransferError, diff

    url = database_url(args)
    try:
        plan = diff(_saves(args), url)
    except TransferError as exc:
        raise UserError(str(exc), exit_code=2) from None
    except Exception as exc:  # documented: 2 means "could not compare", never "different"
        raise UserError(f"could not compare: {type(exc).__name__}: {exc}", exit_code=2) from None
    if plan.differences == 0:
        print(f"{args.saves_dir} and {describe_database_url(url)} hold the same state")
        return 0
    print(f"{plan.differences} difference(s): + only in files, - only in the database, ~ differs")
    print("\n".join(plan.details(limit=args.limit)))
    return 1


def register(sub: Any) -> None:
    mig = sub.add_parser(
        "migrate-config",
        help="import the application's settings files (saves/config/*.toml) into the database "
        "(idempotent, one transaction)",
    )
    mig.add_argument("--saves-dir", required=True, help="the application's saves/ directory")
    add_database_url(mig)
    mig.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    mig.add_argument(
        "--force",
        action="store_true",
        help="import even when the files have not changed since the last import/export "
        "(overwrites newer edits made in database mode)",
    )
    mig.add_argument(
        "--lock-wait", type=float, default=300.0, help="seconds to wait for a concurrent run (default 300)"
    )
    mig.set_defaults(handler=cmd_migrate)

    exp = sub.add_parser(
        "export-config", help="write the database back to the application's settings files (all or none)"
    )
    exp.add_argument("--saves-dir", required=True, help="the application's saves/ directory")
    add_database_url(exp)
    exp.set_defaults(handler=cmd_export)

    dif = sub.add_parser(
        "diff", help="compare saves/ files with the database (exit 0 same, 1 different, 2 error)"
    )
    dif.add_argument("--saves-dir", required=True)
    add_database_url(dif)
    dif.add_argument("--limit", type=int, default=200, help="list at most this many differences")
    dif.set_defaults(handler=cmd_diff)
