"""``python -m yuxi_k8s.cluster.kind up|down|status|build``: the kind cluster by hand.

- ``up``: what the tests' ``kind`` provider does (engine, node image, cluster, storage), left running;
- ``down``: delete the cluster and stop the kit's own dockerd (if it runs), restoring the host;
- ``status``: engine, cluster, node, NetworkPolicy;
- ``build``: only the node image (the engine is stopped again if this started it).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m yuxi_k8s.cluster.kind", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=("up", "down", "status", "build"))
    args = parser.parse_args(argv)

    from yuxi_k8s.cluster.kind.engine import DockerEngine, EngineError
    from yuxi_k8s.cluster.providers.base import ProviderError
    from yuxi_k8s.cluster.providers.kind import CLUSTER_NAME, KindProvider

    provider = KindProvider()
    try:
        if args.command == "up":
            provider.create()
            print(f"kind cluster {CLUSTER_NAME} up; KUBECONFIG={provider.kubeconfig}")
            if gap := provider.network_policy_gap():
                print(f"NetworkPolicy not enforced: {gap}")
        elif args.command == "down":
            if provider.engine.available() and provider.exists():
                provider._run("delete", "cluster", "--name", CLUSTER_NAME)
            provider.engine.stop_leftover()  # the kit's own dockerd only, also after a killed run
            print("kind cluster and the kit's dockerd are down")
        elif args.command == "status":
            engine = provider.engine
            running = engine.available()
            which = "the kit's dockerd" if engine.own else "docker"
            print(f"{'engine':12} {which} {'answers' if running else 'DOWN'}")
            exists = running and provider.exists()
            print(f"{'cluster':12} {CLUSTER_NAME} {'exists' if exists else 'absent'}")
            if exists:
                provider.create()  # exports the kubeconfig of the existing cluster
                print(f"{'node Ready':12} {provider.node_ready()}")
                print(f"{'kubeconfig':12} {provider.kubeconfig}")
                print(f"{'NetworkPolicy':12} {provider.network_policy_gap() or 'enforced (kindnetd)'}")
            return 0 if exists else 1
        else:
            from yuxi_k8s.cluster.kind import nodeimage
            from yuxi_k8s.cluster.providers.kind import _kind

            engine = DockerEngine()
            engine.start()
            try:
                print(nodeimage.describe(nodeimage.ensure(engine, _kind())))
            finally:
                engine.stop()
    except (ProviderError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
