"""`yuxi-k8s cluster up|down|status`: the local single-node cluster (root, Linux)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator

from yuxi_k8s.cli import UserError


def _cluster():  # type: ignore[no-untyped-def]
    from yuxi_k8s.cluster.local.cluster import LocalCluster

    return LocalCluster()


@contextlib.contextmanager
def _as_user_error() -> Iterator[None]:
    """A ClusterError (already one readable line) leaves the CLI as a UserError."""
    from yuxi_k8s.cluster.local.cluster import ClusterError

    try:
        yield
    except ClusterError as exc:
        raise UserError(str(exc)) from exc


def _up(args: argparse.Namespace) -> int:
    with _as_user_error():
        _cluster().up()
    return 0


def _down(args: argparse.Namespace) -> int:
    with _as_user_error():
        _cluster().down()
    return 0


def _status(args: argparse.Namespace) -> int:
    from yuxi_k8s.cluster.local.cluster import check_host

    with _as_user_error():
        check_host()
    report = _cluster().status()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, alive in report["processes"].items():
            print(f"{name:24} {'running' if alive else 'NOT RUNNING'}")
        print(f"{'node Ready':24} {report['node_ready']}")
        print(f"{'cluster DNS answers':24} {report['dns']}")
        print(f"{'kubeconfig':24} {report['kubeconfig']}")
        print(f"{'logs':24} {report['logs']}")
    up = report["node_ready"] and report["dns"] and all(report["processes"].values())
    return 0 if up else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("cluster", help="the local single-node cluster (root, Linux)")
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    sub.add_parser("up", help="start it (idempotent); cleans what a killed earlier run left").set_defaults(
        handler=_up
    )
    sub.add_parser("down", help="stop it and remove everything it created").set_defaults(handler=_down)
    status = sub.add_parser("status", help="what runs, whether the node is Ready and DNS answers")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(handler=_status)
