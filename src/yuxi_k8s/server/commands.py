"""`yuxi-k8s serve`: the reference API server (preflight stand-in for Yuxi-Know)."""

from __future__ import annotations

import argparse
import os


def _serve(args: argparse.Namespace) -> int:
    from yuxi_k8s.cli import UserError
    from yuxi_k8s.server.runner import serve  # uvicorn only when serving
    from yuxi_k8s.state import Settings

    try:
        Settings.from_env()  # a wrong CONFIG_MODE or a missing database URL: one line, no traceback
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return serve(args.host, args.port, args.shutdown_delay, args.drain_timeout)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="run the reference API server on :5050 (health, readiness, config and records)",
        description="A light stand-in for the Yuxi-Know API that proves a cluster's wiring: "
        "database, Redis, storage and NetworkPolicies. Settings come from the same environment "
        "the real API reads (CONFIG_MODE, SAVE_DIR, DATABASE_URL_SYNC, REDIS_HOST, ...).",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5050)
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
