"""One command line, `yuxi-k8s`, assembled from the concern modules.

Each concern (validate, state, transfer, cluster, server) owns a
``commands.py`` with ``register(subparsers)``; a registered handler returns
an exit code. Errors meant for users are raised as :class:`UserError` (each
concern's ``commands.py`` converts its own library errors to it) and end as one
readable line and a non-zero exit, never a traceback. Ctrl-C ends with 130.

Only ``commands.py`` modules and entry points import this module: the
libraries raise their own errors (a static test holds this).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "yuxi_k8s.validate.commands",
    "yuxi_k8s.state.commands",
    "yuxi_k8s.transfer.commands",
    "yuxi_k8s.cluster.commands",
    "yuxi_k8s.server.commands",
    "yuxi_k8s.app.commands",
)


class UserError(Exception):
    """A failure caused by input or environment; printed as one line."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """``--database-url`` for the commands that reach the kit's schema."""
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL, any postgresql[+driver]:// form (default: $POSTGRES_URL, the application's)",
    )


def database_url(args: argparse.Namespace) -> str:
    """The database of ``--database-url`` or the application's POSTGRES_URL, normalised; else one line."""
    from yuxi_k8s.state.settings import DATABASE_ENV, UrlError, normalise_database_url

    url = getattr(args, "database_url", None) or os.environ.get(DATABASE_ENV)
    if not url:
        raise UserError(f"no database: pass --database-url or set {DATABASE_ENV}", exit_code=2)
    try:
        return normalise_database_url(url)
    except UrlError as exc:
        raise UserError(str(exc), exit_code=2) from None


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yuxi-k8s", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a concern not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, modules: Sequence[str] = COMMAND_MODULES) -> int:
    """Parse *argv*, run the chosen subcommand, turn a UserError or Ctrl-C into one line.

    *modules* limits which concerns are imported (``python -m yuxi_k8s.validate`` loads only
    validate's, for a faster start); the error handling is the same.
    """
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"yuxi-k8s {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"yuxi-k8s {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
