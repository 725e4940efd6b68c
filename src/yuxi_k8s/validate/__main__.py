"""`python -m yuxi_k8s.validate PATH...`: the same command as `yuxi-k8s validate`, without
importing the other concerns (database drivers, migrations), which roughly halves start-up
time; `make validate` uses it."""

from __future__ import annotations

import argparse
import sys

from yuxi_k8s.cli import UserError
from yuxi_k8s.validate import commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yuxi-k8s")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"yuxi-k8s validate: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
