"""The local provider: the single-node cluster of host processes (root, Linux)."""

from __future__ import annotations

from pathlib import Path

from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.local import layout
from yuxi_k8s.cluster.local.cluster import ClusterError, LocalCluster
from yuxi_k8s.cluster.providers.base import ClusterProvider, ProviderError


class LocalProvider(ClusterProvider):
    name = "local"
    tools = ("kubernetes", "etcd", "containerd", "coredns", "kube-router")

    def __init__(self) -> None:
        super().__init__()
        self.cluster = LocalCluster()

    @property
    def kubeconfig(self) -> Path:
        return layout.KUBECONFIG

    def create(self) -> None:
        try:
            if layout.KUBECONFIG.exists() and self.cluster.healthy():
                return  # someone else's (or an earlier) cluster: use it, never delete it
            self.cluster.up()
        except ClusterError as exc:
            raise ProviderError(str(exc)) from exc
        self.created = True

    def ready(self) -> bool:
        return self.cluster.healthy()

    def _delete(self) -> None:
        self.cluster.down()

    def load_image(self, archive: Path) -> None:
        oci.load_into_containerd(archive, address=str(layout.CONTAINERD_SOCKET), ctr=_ctr())


def _ctr() -> str:
    from yuxi_k8s.cluster.local.cluster import binary

    try:
        return binary("ctr")
    except ClusterError as exc:
        raise ProviderError(str(exc)) from exc
