"""Deploy the e2e stack (the real application) and leave it running, to explore it or run scenarios.

    python -m tests.e2e.deploy [--namespace yuxi-e2e]
    python -m tests.e2e.deploy --delete [--namespace yuxi-e2e]

Same steps as the ``stack`` fixture of test_app_stack.py: build the application's
images from the pinned source (``YUXI_K8S_APP_SOURCE``, else a clone of the pinned
tag) and load them, render tests/e2e/overlay into ``.run/e2e/<run-id>/stack`` with
the namespaces and fresh credentials, seed ``saves/`` with the real v0.6.1 settings
files, apply, wait for the migrate Job and every Deployment, add the client
policies and the idle pod ``e2e-client``. The cluster is the one
``yuxi_k8s.cluster.providers.choose`` picks (KUBECONFIG, or
YUXI_K8S_CLUSTER_PROVIDER=existing|local|kind).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.e2e.kube import Kube
from tests.e2e.run import RUN_DIR
from tests.e2e.stack import OVERLAY, AppStack, prepare_tree, render, sandbox_namespace, write_kustomization


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="yuxi-e2e")
    parser.add_argument("--delete", action="store_true", help="delete the namespaces instead")
    args = parser.parse_args(argv)

    from yuxi_k8s.app import images, source
    from yuxi_k8s.cluster.providers import choose

    provider = choose()
    provider.create()  # existing: checks it answers; local/kind: brings one up
    kube = Kube(str(provider.kubeconfig))
    if args.delete:
        for ns in (args.namespace, sandbox_namespace(args.namespace)):
            kube.run("delete", "namespace", ns, "--ignore-not-found", "--wait=false")
            print(f"deleting namespace {ns}")
        # Cluster-scoped, so not in the namespaces: the sandboxes' admission policy.
        policy = f"{sandbox_namespace(args.namespace)}.sandbox-provisioner"
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kube.run("delete", kind, policy, "--ignore-not-found", "--wait=false")
        return 0

    t0 = time.monotonic()
    built = images.build_all(source.resolve())
    for image in built.values():
        provider.load_image(image.archive)
    references = {kind: image.name for kind, image in built.items()}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tree = prepare_tree(RUN_DIR, args.namespace, references["sandbox-standin"])
    folder = write_kustomization(
        RUN_DIR, "stack", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], references
    )
    stack = AppStack(kube, args.namespace, references["api"], RUN_DIR, folder, render(folder))
    stack.deploy()
    stack.wait_ready()
    stack.allow_e2e_clients()
    stack.start_idle_pod("e2e-client")
    client = f"kubectl -n {args.namespace} exec e2e-client -- python3 -m yuxi_k8s.probes.app_client"
    print(
        f"stack ready in {time.monotonic() - t0:.0f}s: namespace {args.namespace}\n"
        f"manifests: {folder / 'rendered.yaml'}\n"
        f"try: {client} get /api/system/health\n"
        f"     kubectl -n {args.namespace} port-forward svc/web 8080:80   # the UI on http://127.0.0.1:8080\n"
        f"remove: python -m tests.e2e.deploy --delete --namespace {args.namespace}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
