"""The kind provider: a one-node kind cluster with what the tests need, online or offline.

``create()``:

1. an engine (:mod:`yuxi_k8s.cluster.kind.engine`): the user's Docker, or, as root on Linux
   without one, a private dockerd from Debian's ``docker.io``, stopped again by ``delete()`` with
   the host's forwarding state restored;
2. a node image: ``YUXI_K8S_KIND_IMAGE`` if set, else kind's official image for the pinned
   release (``KIND_NODE_IMAGE`` in tools/versions.env) when the engine has it or can pull it,
   else one **built here** from the pinned Kubernetes (:mod:`yuxi_k8s.cluster.kind.nodeimage`;
   no registry needed). ``YUXI_K8S_KIND_NODE=local`` skips the pull attempt;
3. ``kind create cluster`` with :mod:`yuxi_k8s.cluster.kind.config` (cgroup v1 and VM patches
   only where the host needs them);
4. the default ReadWriteMany StorageClass ``yuxi-local`` (the kit's provisioner as a pod,
   :mod:`yuxi_k8s.cluster.kind.storage`); with the local node image also CoreDNS's Corefile
   without ``forward`` (nothing leaves the machine) and kind's ``standard`` class removed
   (its provisioner image cannot be had offline).

NetworkPolicy: kind's CNI, kindnetd, enforces it (kube-network-policies, through the kernel's
nftables queue). :meth:`KindProvider.network_policy_gap` says when a cluster cannot: the local node
image has no kindnetd at all, and a kernel without ``CONFIG_NFT_QUEUE`` cannot run its policy engine.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.cluster.kind import storage
from yuxi_k8s.cluster.kind.config import ClusterConfig, OfflineImages
from yuxi_k8s.cluster.kind.engine import DockerEngine, EngineError, ensure_packages
from yuxi_k8s.cluster.kube import Kubectl, poll
from yuxi_k8s.cluster.local.addons import COREFILE
from yuxi_k8s.cluster.providers.base import ClusterProvider, ProviderError
from yuxi_k8s.pinned_tools import pinned_tool, pinned_version

CLUSTER_NAME = os.environ.get("YUXI_K8S_KIND_CLUSTER", "yuxi-k8s")
# YUXI_K8S_KIND_IMAGE overrides the node image (kind create cluster --image).
NODE_IMAGE = os.environ.get("YUXI_K8S_KIND_IMAGE") or pinned_version("KIND_NODE_IMAGE")
LOCAL_NODE = os.environ.get("YUXI_K8S_KIND_NODE", "") == "local"
# Labels the provider sets on the node so a later session knows how the cluster was made.
OFFLINE_LABEL = "yuxi-k8s.io/kind-node-image"
# Host packages (Debian, installed as root when missing): the smoke tests' busybox image, and gcc for
# the pause program of a locally built node image.
HOST_PACKAGES = {"busybox-static": "/bin/busybox", "gcc": "/usr/bin/gcc"}


def _kind() -> str:
    found = pinned_tool("kind")
    if found is None:
        raise ProviderError("kind is not built: run `scripts/tools.sh kind`")
    return str(found)


def kernel_nft_queue() -> bool | None:
    """Whether the kernel has nftables' ``queue`` (CONFIG_NFT_QUEUE); None when it cannot be told."""
    if Path("/sys/module/nft_queue").exists():
        return True
    try:
        config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode(errors="replace")
    except OSError:
        return None
    for line in config.splitlines():
        if line.startswith("CONFIG_NFT_QUEUE="):
            return line.split("=", 1)[1] in ("y", "m")
    return False


class KindProvider(ClusterProvider):
    name = "kind"
    tools = ("kind",)

    def __init__(self) -> None:
        super().__init__()
        self._kubeconfig = paths.cache_dir(f"kind-{CLUSTER_NAME}.kubeconfig")
        self.engine = DockerEngine()
        self.offline: bool | None = None  # the cluster runs the locally built node image

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @staticmethod
    def node_image_available(*, users_engine: bool = False) -> bool:
        """kind is built and a running Docker has (or can pull) the pinned node image. With
        *users_engine*, only the user's own Docker counts (``providers.choose``: the kit's dockerd
        left running does not make kind the default)."""
        try:
            _kind()
        except ProviderError:
            return False
        if not NODE_IMAGE:
            return False
        engine = DockerEngine()
        if not (engine.users_engine_answers() if users_engine else engine.available()):
            return False
        try:
            return _has_or_pulls(engine, NODE_IMAGE, timeout=300)
        except subprocess.TimeoutExpired:
            return False

    def _run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            [_kind(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.engine.env(),
        )
        if proc.returncode != 0:
            raise ProviderError(f"kind {' '.join(args[:2])} failed: {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def exists(self) -> bool:
        return CLUSTER_NAME in self._run("get", "clusters").split()

    def create(self) -> None:
        kind = _kind()
        try:
            if platform.system() == "Linux" and os.geteuid() == 0:
                ensure_packages(HOST_PACKAGES)
            self.engine.start()
        except EngineError as exc:
            raise ProviderError(str(exc)) from exc
        try:
            if self.exists():  # an earlier session's (--keep-cluster): used, never deleted here ...
                self._run(
                    "export", "kubeconfig", "--name", CLUSTER_NAME, "--kubeconfig", str(self.kubeconfig)
                )
                if not self.engine.started:
                    self.offline = self._node_label() == "local"
                    return
                # ... unless this session had to start the kit's own dockerd: then the cluster is a
                # killed run's, left in the engine's data root (only the kit uses that engine).
                print(
                    f"==> kind: removing {CLUSTER_NAME}, left by a killed run; creating it anew", flush=True
                )
                self._run("delete", "cluster", "--name", CLUSTER_NAME)
            image, offline = self._node_image(kind)
            self.offline = offline is not None
            config = ClusterConfig(
                CLUSTER_NAME, image, offline, patches_dir=paths.cache_dir("kind", "kubeadm-patches")
            )
            config.write_patches()
            config_file = paths.cache_dir("kind", f"{CLUSTER_NAME}.config.yaml")
            config_file.parent.mkdir(parents=True, exist_ok=True)
            config_file.write_text(config.yaml())
            self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            self._run(
                "create", "cluster", "--name", CLUSTER_NAME, "--config", str(config_file),
                "--kubeconfig", str(self.kubeconfig), "--wait", "240s", timeout=900,
            )  # fmt: skip
            self.created = True
            print(f"==> kind create cluster: {time.monotonic() - t0:.0f} s ({image})", flush=True)
            self._finish(image)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """create() failed: remove what it made (cluster, engine) so nothing runs on."""
        try:
            if self.created:
                self._run("delete", "cluster", "--name", CLUSTER_NAME)
                self.created = False
        finally:
            try:
                self.engine.stop()
            except EngineError as exc:
                print(f"warning: {exc}", flush=True)

    def _node_image(self, kind: str) -> tuple[str, OfflineImages | None]:
        if os.environ.get("YUXI_K8S_KIND_IMAGE"):
            return NODE_IMAGE, None
        if NODE_IMAGE and not LOCAL_NODE:
            if _has_or_pulls(self.engine, NODE_IMAGE, timeout=600):
                return NODE_IMAGE, None
            print(f"==> kind: {NODE_IMAGE} cannot be pulled; building a node image here", flush=True)
        from yuxi_k8s.cluster.kind import nodeimage

        try:
            built = nodeimage.ensure(self.engine, kind)
        except Exception as exc:
            raise ProviderError(f"building kind's node image locally: {exc}") from exc
        return built.name, built.offline

    def _finish(self, image: str) -> None:
        """What kind does not give: the RWX default class; offline, a Corefile without forward."""
        t0 = time.monotonic()
        node = f"{CLUSTER_NAME}-control-plane"
        self.kubectl("label", "node", node, f"{OFFLINE_LABEL}={'local' if self.offline else 'official'}")
        provisioner = storage.provisioner_image()
        self.load_image(provisioner.archive)
        Kubectl(self.kubeconfig).apply(storage.manifests(provisioner.name))
        if self.offline:
            # kind applied its local-path provisioner, whose image cannot be had here.
            self.kubectl("delete", "namespace", "local-path-storage", "--wait=false", check=False)
            self.kubectl("delete", "storageclass", "standard", check=False)
            # kubeadm's Corefile forwards to the node's resolver (and names plugins the pinned
            # CoreDNS leaves out); the local cluster's has no `forward`: no query leaves the machine.
            meta = {"name": "coredns", "namespace": "kube-system"}
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}}
            self.kubectl("apply", "-f", "-", input=json.dumps(cm))
            self.kubectl("-n", "kube-system", "rollout", "restart", "deployment/coredns")
        else:
            self.kubectl(
                "annotate", "storageclass", "standard",
                "storageclass.kubernetes.io/is-default-class=false", "--overwrite", check=False,
            )  # fmt: skip
        # One CoreDNS pod asking for 50m, as on the local cluster (kubeadm: two at 100m each).
        self.kubectl("-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")
        self.kubectl("-n", "kube-system", "set", "resources", "deployment/coredns", "--requests=cpu=50m")
        self.kubectl("-n", storage.NAMESPACE, "rollout", "status", f"deployment/{storage.NAME}",
                     "--timeout=180s", timeout=200)  # fmt: skip
        self.kubectl(
            "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=180s", timeout=200
        )
        poll(
            "the default ServiceAccount",
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=60,
        )
        print(f"==> kind: storage and DNS ready in {time.monotonic() - t0:.0f} s", flush=True)

    def _node_label(self) -> str:
        proc = self.kubectl(
            "get", "node", f"{CLUSTER_NAME}-control-plane", "-o",
            "jsonpath={.metadata.labels.yuxi-k8s\\.io/kind-node-image}", check=False,
        )  # fmt: skip
        return proc.stdout.strip()

    def ready(self) -> bool:
        return self.engine.available() and self.exists() and self.node_ready()

    def _delete(self) -> None:
        try:
            self._run("delete", "cluster", "--name", CLUSTER_NAME)
        finally:
            try:
                self.engine.stop()
            except EngineError as exc:
                raise ProviderError(str(exc)) from exc

    def load_image(self, archive: Path) -> None:
        self._run("load", "image-archive", str(archive), "--name", CLUSTER_NAME, timeout=1800)

    def network_policy_gap(self) -> str | None:
        """Why this cluster cannot enforce NetworkPolicy, or None when kindnetd can."""
        queue = kernel_nft_queue()
        kernel = (
            "this kernel lacks nftables' queue (CONFIG_NFT_QUEUE), which kindnetd's policy engine "
            "(kube-network-policies) needs"
        )
        if self.offline:
            why = (
                "kindnetd (kind's CNI and NetworkPolicy engine) is not in the locally built node image: "
                "its image cannot be had without a registry"
            )
            return f"{why}, and {kernel}" if queue is False else why
        if queue is False:
            return kernel
        return None


def _has_or_pulls(engine: DockerEngine, image: str, timeout: float) -> bool:
    """*image* is in *engine*, or *engine* pulls it."""
    return any(
        engine.docker(*args, check=False, timeout=timeout).returncode == 0
        for args in (("image", "inspect", image), ("pull", image))
    )
