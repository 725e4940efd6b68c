"""The existing provider: a cluster someone else runs, reached through a kubeconfig.

It is never created or deleted here. Images can be loaded only when that
cluster is this machine's local cluster (its containerd socket is here) or a
kind cluster (context ``kind-<name>``); other clusters need a registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.kube import Kubectl
from yuxi_k8s.cluster.local import layout
from yuxi_k8s.cluster.providers.base import ClusterProvider, ProviderError


class ExistingProvider(ClusterProvider):
    name = "existing"

    def __init__(self, kubeconfig: Path | None = None) -> None:
        super().__init__()
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        self._kubeconfig = kubeconfig or (Path(env) if env else Path.home() / ".kube" / "config")

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def create(self) -> None:
        if not self.kubeconfig.exists():
            raise ProviderError(f"no kubeconfig at {self.kubeconfig}; set KUBECONFIG")
        if not Kubectl(self.kubeconfig).reachable(timeout=15):
            raise ProviderError(f"the cluster of {self.kubeconfig} does not answer /readyz")

    def ready(self) -> bool:
        return Kubectl(self.kubeconfig).reachable() and self.node_ready()

    def _delete(self) -> None:  # never reached: created stays False
        raise ProviderError("an existing cluster is never deleted here")

    def _current(self) -> tuple[str, str]:
        config = yaml.safe_load(self.kubeconfig.read_text())
        context_name = config.get("current-context", "")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        return context_name, cluster["server"]

    def load_image(self, archive: Path) -> None:
        context, server = self._current()
        if server == layout.API_SERVER and layout.CONTAINERD_SOCKET.exists():
            from yuxi_k8s.cluster.local.cluster import binary

            oci.load_into_containerd(archive, address=str(layout.CONTAINERD_SOCKET), ctr=binary("ctr"))
        elif context.startswith("kind-"):
            _load_into_kind(archive, context.removeprefix("kind-"))
        else:
            raise ProviderError(
                f"cannot load {archive.name} into the cluster at {server}: "
                "push it to a registry that cluster pulls from"
            )


def _load_into_kind(archive: Path, cluster: str) -> None:
    """``kind load image-archive`` on the engine that runs the cluster (the user's or the kit's)."""
    from yuxi_k8s.cluster.kind.engine import running_env
    from yuxi_k8s.pinned_tools import pinned_tool

    try:
        oci.load_into_kind(archive, cluster, kind=str(pinned_tool("kind") or "kind"), env=running_env())
    except oci.ImageError as exc:
        raise ProviderError(f"{exc} (into {cluster})") from None
