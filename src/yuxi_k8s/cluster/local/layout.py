"""Every host path, address and name the local cluster uses, in one place.

Nothing outside these is created, so ``cluster down`` can remove exactly this.
"""

from __future__ import annotations

import os
from pathlib import Path

from yuxi_k8s import paths

STATE = Path(os.environ.get("YUXI_K8S_CLUSTER_STATE", "/var/lib/yuxi-k8s"))
RUNTIME = Path(os.environ.get("YUXI_K8S_CLUSTER_RUNTIME", "/run/yuxi-k8s"))

KUBECONFIG = STATE / "admin.kubeconfig"  # documented in docs/cluster.md
PKI = STATE / "pki"
CONFIG = STATE / "config"  # component configs and kubeconfigs
LOGS = STATE / "logs"  # one log per component for the current run
PIDS = RUNTIME / "pids"
ETCD_DATA = STATE / "etcd"
CONTAINERD_ROOT = STATE / "containerd"
CONTAINERD_STATE = RUNTIME / "containerd"
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
RUNC_ROOT = RUNTIME / "runc"
KUBELET_ROOT = STATE / "kubelet"
POD_LOGS = STATE / "pod-logs"
# Paths the kubelet and the CNI library use whatever they are told; `down` removes
# only the cluster's entries from them, and the folders themselves once empty.
KUBELET_DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
DEFAULT_POD_LOGS = Path("/var/log/pods")
CNI_RESULTS = Path("/var/lib/cni/results")
CNI_CONF_DIR = STATE / "cni" / "net.d"
CNI_DATA = STATE / "cni" / "networks"
CNI_BIN_DIRS = ("/usr/lib/cni",)  # Debian's containernetworking-plugins
VOLUMES = STATE / "volumes"  # PersistentVolumes of the yuxi-local StorageClass
RESOLV_CONF = CONFIG / "resolv.conf"
SYSCTL_BACKUP = STATE / "sysctl-backup.json"
LAST_LOGS = paths.cache_dir("last-cluster-logs")

NODE_NAME = "yuxi-node"
# The node address lives on a veth pair of its own (this kernel has no dummy
# interfaces, and the bridge plugin refuses a bridge carrying another address):
# a host-local address that nothing routes off this machine.
NODE_IP = "10.243.0.1"
NODE_LINK = "yuxi-node0"
NODE_LINK_PEER = "yuxi-node1"
BRIDGE = "yuxi-br0"
CLUSTER_CIDR = "10.244.0.0/16"  # pods; the node gets a /24 from the controller-manager
SERVICE_CIDR = "10.97.0.0/16"
KUBERNETES_SERVICE_IP = "10.97.0.1"
DNS_SERVICE_IP = "10.97.0.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
API_SERVER = f"https://{NODE_IP}:{API_PORT}"

# Every process and container of the cluster runs below this cgroup in each v1
# hierarchy: host processes in <root>/system, pods in <root>/kubepods.
CGROUP_ROOT = "yuxi-k8s"
CGROUP_FS = Path("/sys/fs/cgroup")
# The host limit for open files is 20000 here; nothing may ask for more.
NOFILE = 20000

STORAGE_CLASS = "yuxi-local"
PROVISIONER_NAME = "yuxi-k8s.io/hostpath"
# iptables chains the cluster's components create: kube-proxy and kubelet
# (KUBE-*), kube-router (KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-*), the bridge
# plugin (CNI-*), and ours (YUXI-*).
CHAIN_PREFIXES = ("KUBE-", "CNI-", "YUXI-")
IPSET_PREFIXES = ("KUBE-", "kube-router-")
