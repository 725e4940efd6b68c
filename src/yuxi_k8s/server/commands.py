"""`yuxi-k8s serve`: the reference API server (preflight stand-in for Yuxi-Know)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from yuxi_k8s.cli import UserError
    from yuxi_k8s.server.app import WriteAccess
    from yuxi_k8s.server.runner import serve  # uvicorn only when serving
    from yuxi_k8s.state import Settings

    try:
        Settings.from_env()  # a wrong CONFIG_MODE or a missing database URL: one line, no traceback
    except ValueError as exc:
        raise UserError(str(exc)) from None
    access = WriteAccess.from_env()
    if args.token_file is not None:
        access = WriteAccess(token_file=args.token_file, anonymous=access.anonymous)
    if args.anonymous_writes:
        access = WriteAccess(token=access.token, token_file=access.token_file, anonymous=True)
    if args.max_body_bytes <= 0:
        raise UserError("--max-body-bytes must be positive", exit_code=2)
    return serve(args.host, args.port, args.shutdown_delay, args.drain_timeout, access, args.max_body_bytes)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="run the reference API server (health, readiness, config) for a preflight",
        description="A light stand-in for the Yuxi-Know API that proves a cluster's wiring: "
        "database, Redis, storage and NetworkPolicies. Settings come from the environment the "
        "real API reads (CONFIG_MODE, SAVE_DIR, POSTGRES_URL, REDIS_URL). Writes need a bearer "
        "token ($YUXI_K8S_SERVER_TOKEN_FILE or $YUXI_K8S_SERVER_TOKEN, from a Secret) unless "
        "anonymous writes are enabled explicitly.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind [127.0.0.1; in a pod pass 0.0.0.0]"
    )
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token writes must present (a mounted Secret) "
        "[env YUXI_K8S_SERVER_TOKEN_FILE]",
    )
    parser.add_argument(
        "--anonymous-writes",
        action="store_true",
        help="accept writes without a token (tests, loopback) [env YUXI_K8S_SERVER_ANONYMOUS_WRITES=true]",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="largest request body accepted; larger ones get 413 [1 MiB]",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=float,
        default=float(os.environ.get("SHUTDOWN_DELAY_SECONDS", "3")),
        help="seconds to keep serving, reporting not ready, after SIGTERM [3, env SHUTDOWN_DELAY_SECONDS]",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=20.0,
        help="seconds to wait for in-flight requests after the listener closes [20]",
    )
    parser.set_defaults(handler=_serve)
