"""Deploy the e2e stack and leave it running, to explore it or run your own scenarios.

    python -m tests.e2e.deploy [--namespace yuxi-e2e] [--replicas 2]
    python -m tests.e2e.deploy --delete [--namespace yuxi-e2e]

Same steps as the ``stack`` fixture of test_stack.py: build and load the runtime
image, render tests/e2e/overlay into ``.run/e2e/<run-id>/stack`` with the namespace
and fresh credentials, seed ``saves/``, apply, wait for the migrate Job and the
Deployments, add the client policies and the idle pod ``e2e-client``. The cluster
is the one ``yuxi_k8s.cluster.providers.choose`` picks (KUBECONFIG, or
YUXI_K8S_CLUSTER_PROVIDER=existing|local|kind).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.e2e.kube import Kube
from tests.e2e.run import RUN_DIR
from tests.e2e.stack import OVERLAY, Stack, prepare_tree, render, write_kustomization


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="yuxi-e2e")
    parser.add_argument("--replicas", type=int, default=2, help="api replicas after the deploy [2]")
    parser.add_argument("--delete", action="store_true", help="delete the namespace instead")
    args = parser.parse_args(argv)

    from yuxi_k8s.cluster.providers import choose
    from yuxi_k8s.server.image import build_runtime_image

    provider = choose()
    provider.create()  # existing: checks it answers; local/kind: brings one up
    kube = Kube(str(provider.kubeconfig))
    if args.delete:
        kube.run("delete", "namespace", args.namespace, "--ignore-not-found", "--wait=false")
        print(f"deleting namespace {args.namespace}")
        return 0

    t0 = time.monotonic()
    image = build_runtime_image()
    provider.load_image(image.archive)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tree = prepare_tree(RUN_DIR)
    overlay = tree / OVERLAY.relative_to(OVERLAY.parents[2])
    folder = write_kustomization(RUN_DIR, "stack", args.namespace, image.name, [overlay])
    stack = Stack(kube, args.namespace, image.name, RUN_DIR, folder, render(folder))
    stack.deploy()
    stack.wait_ready()
    stack.allow_e2e_clients()
    stack.start_idle_pod("e2e-client")
    kube.run("scale", "deployment/api", f"--replicas={args.replicas}", ns=args.namespace)
    kube.wait_deployment(args.namespace, "api", 180)
    print(
        f"stack ready in {time.monotonic() - t0:.0f}s: namespace {args.namespace}, image {image.name}\n"
        f"manifests: {folder / 'rendered.yaml'}\n"
        f"try: kubectl -n {args.namespace} exec e2e-client -- python3 -c "
        "\"import urllib.request; print(urllib.request.urlopen('http://api:5050/api/system/ready').read().decode())\"\n"
        f"     kubectl -n {args.namespace} port-forward svc/api 5050:5050\n"
        f"remove: python -m tests.e2e.deploy --delete --namespace {args.namespace}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
