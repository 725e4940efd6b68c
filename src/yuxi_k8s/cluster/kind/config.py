"""The kind cluster config: one control-plane node, subnets, and the patches a host needs.

- ``failCgroupV1: false`` (a KubeletConfiguration patch) only where the host runs cgroup v1:
  Kubernetes 1.35+ refuses v1 otherwise; on a cgroup v2 host the kubelet keeps its default.
- containerd patches from :mod:`yuxi_k8s.cluster.kind.vmshims` (only on hosts that need them).
- The control plane's CPU **requests** lowered (kubeadm patches from a host folder mounted into the
  node): kubeadm's static pods ask for 650m, two CoreDNS pods for 200m more, which on a 2-core
  machine leaves too little to *schedule* the dev overlay (its worker alone asks for 500m). The
  local cluster runs its control plane as host processes with no requests at all; here they keep
  small ones. Only the scheduler's accounting changes, not what the processes may use.
- With the **locally built node image** (no registry): kubeadm takes every image from
  ``localhost/yuxi-k8s`` (the images the node image carries, built from the pinned Kubernetes,
  etcd and CoreDNS), and kind's default CNI is off: kindnetd cannot be had offline, so the node
  image has a static ``ptp`` CNI config for the node's pod range (one node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.cluster.kind import vmshims

# Not the local cluster's ranges (10.244/16, 10.97/16) either: nothing is routed between the two,
# but distinct ranges keep addresses in logs and diagnostics unambiguous.
POD_SUBNET = "10.245.0.0/16"
SERVICE_SUBNET = "10.98.0.0/16"
# The first /24 the controller-manager gives the first (only) node; the static CNI config's range.
NODE_POD_RANGE = "10.245.0.0/24"
# Where the node sees the kubeadm patch files (a read-only mount of a folder in the kit's cache).
PATCHES_IN_NODE = "/kind/yuxi-kubeadm-patches"
CONTROL_PLANE_CPU = {"kube-apiserver": "50m", "kube-controller-manager": "25m", "kube-scheduler": "25m",
                     "etcd": "25m"}  # fmt: skip


def control_plane_patches() -> dict[str, str]:
    """kubeadm patch files (``<component>+strategic.yaml``) setting the control plane's CPU requests."""
    return {
        f"{name}+strategic.yaml": yaml.safe_dump(
            {"spec": {"containers": [{"name": name, "resources": {"requests": {"cpu": cpu}}}]}}
        )
        for name, cpu in CONTROL_PLANE_CPU.items()
    }


def cgroup_v1() -> bool:
    """True on a cgroup v1 (or hybrid) host: no unified hierarchy at /sys/fs/cgroup."""
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


@dataclass
class OfflineImages:
    """What a locally built node image carries instead of registry images."""

    etcd_tag: str
    coredns_tag: str
    repository: str = "localhost/yuxi-k8s"


@dataclass
class ClusterConfig:
    name: str
    image: str
    offline: OfflineImages | None = None
    cgroup_v1: bool = field(default_factory=cgroup_v1)
    containerd_patches: list[str] = field(default_factory=vmshims.containerd_patches)
    patches_dir: Path | None = None  # a host folder holding control_plane_patches(), mounted in the node

    def kubeadm_patches(self) -> list[str]:
        """Merge patches; without an apiVersion kind applies them whatever kubeadm's API version."""
        patches: list[dict[str, Any]] = []
        if self.patches_dir is not None:
            patches.append({"kind": "InitConfiguration", "patches": {"directory": PATCHES_IN_NODE}})
        if self.cgroup_v1:
            patches.append({"kind": "KubeletConfiguration", "failCgroupV1": False})
        if self.offline is not None:
            patches.append(
                {
                    "kind": "ClusterConfiguration",
                    "imageRepository": self.offline.repository,
                    "etcd": {"local": {"imageTag": self.offline.etcd_tag}},
                    "dns": {"imageTag": self.offline.coredns_tag},
                }
            )
        return [yaml.safe_dump(p, sort_keys=False) for p in patches]

    def render(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "name": self.name,
            "nodes": [{"role": "control-plane", "image": self.image, **self._mounts()}],
            "networking": {
                "podSubnet": POD_SUBNET,
                "serviceSubnet": SERVICE_SUBNET,
                "apiServerAddress": "127.0.0.1",
                "disableDefaultCNI": self.offline is not None,
            },
        }
        if patches := self.kubeadm_patches():
            config["kubeadmConfigPatches"] = patches
        if self.containerd_patches:
            config["containerdConfigPatches"] = list(self.containerd_patches)
        return config

    def _mounts(self) -> dict[str, Any]:
        if self.patches_dir is None:
            return {}
        mount = {"hostPath": str(self.patches_dir), "containerPath": PATCHES_IN_NODE, "readOnly": True}
        return {"extraMounts": [mount]}

    def write_patches(self) -> None:
        """Write control_plane_patches() into patches_dir (the node mounts it at create)."""
        if self.patches_dir is None:
            return
        self.patches_dir.mkdir(parents=True, exist_ok=True)
        for name, body in control_plane_patches().items():
            (self.patches_dir / name).write_text(body)

    def yaml(self) -> str:
        return yaml.safe_dump(self.render(), sort_keys=False)
