"""Where the tests get a cluster: ``local`` (host processes here), ``kind``, or ``existing``.

``choose()`` reads ``YUXI_K8S_CLUSTER_PROVIDER``; unset, it picks ``existing``
when KUBECONFIG (or ~/.kube/config) reaches a cluster, else ``kind`` where
Docker works and kind's node image can be had, else ``local`` on Linux as root.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from yuxi_k8s.cluster.kube import Kubectl
from yuxi_k8s.cluster.providers.base import ClusterProvider, ProviderError
from yuxi_k8s.cluster.providers.existing import ExistingProvider
from yuxi_k8s.cluster.providers.kind import KindProvider
from yuxi_k8s.cluster.providers.local import LocalProvider

PROVIDERS: dict[str, type[ClusterProvider]] = {
    "local": LocalProvider,
    "kind": KindProvider,
    "existing": ExistingProvider,
}
ENV = "YUXI_K8S_CLUSTER_PROVIDER"


def _default_kubeconfig() -> Path | None:
    env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = Path(env) if env else Path.home() / ".kube" / "config"
    return path if path.exists() else None


def choose(name: str | None = None) -> ClusterProvider:
    name = name or os.environ.get(ENV) or None
    if name:
        if name not in PROVIDERS:
            raise ProviderError(f"{ENV}={name!r}: expected one of {', '.join(PROVIDERS)}")
        return PROVIDERS[name]()
    kubeconfig = _default_kubeconfig()
    if kubeconfig is not None and Kubectl(kubeconfig).reachable():
        return ExistingProvider(kubeconfig)
    if KindProvider.node_image_available(users_engine=True):
        return KindProvider()
    if platform.system() == "Linux" and os.geteuid() == 0:
        return LocalProvider()
    raise ProviderError(
        "no cluster: set KUBECONFIG to a reachable cluster, install Docker for kind, "
        "or run as root on Linux for the local cluster"
    )


__all__ = ["PROVIDERS", "ClusterProvider", "ProviderError", "choose"]
