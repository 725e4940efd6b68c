"""The kind provider: a kind cluster in Docker, where Docker works and kind's node image can be had.

Not usable on the machines this project is developed on (no Docker, no
registry); it is the way to the same tests on a laptop or a hosted CI runner.
kind's default StorageClass (local-path) serves ReadWriteOnce only, so the
ReadWriteMany smoke test fails there: see docs/cluster.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.cluster import images
from yuxi_k8s.cluster.providers.base import ClusterProvider, ProviderError
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.pinned_tools import pinned_tool

CLUSTER_NAME = os.environ.get("YUXI_K8S_KIND_CLUSTER", "yuxi-k8s")


def _pinned_node_image() -> str:
    """KIND_NODE_IMAGE from tools/versions.env: the node image of the pinned kind release."""
    versions = REPO_ROOT / "tools" / "versions.env"
    if versions.exists():
        for line in versions.read_text().splitlines():
            if line.startswith("KIND_NODE_IMAGE="):
                return line.split("=", 1)[1].strip()
    return ""


# YUXI_K8S_KIND_IMAGE overrides the pinned node image (kind create cluster --image).
NODE_IMAGE = os.environ.get("YUXI_K8S_KIND_IMAGE") or _pinned_node_image()


def _kind() -> str:
    found = pinned_tool("kind")
    if found is None:
        raise ProviderError("kind is not built: run `scripts/tools.sh kind`")
    return str(found)


class KindProvider(ClusterProvider):
    name = "kind"
    tools = ("kind",)

    def __init__(self) -> None:
        super().__init__()
        self._kubeconfig = paths.cache_dir(f"kind-{CLUSTER_NAME}.kubeconfig")

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @staticmethod
    def node_image_available() -> bool:
        """kind is built and Docker has (or can pull) the node image."""
        try:
            _kind()
        except ProviderError:
            return False
        if not NODE_IMAGE or shutil.which("docker") is None:
            return False
        try:
            for cmd in (["docker", "image", "inspect", NODE_IMAGE], ["docker", "pull", NODE_IMAGE]):
                if subprocess.run(cmd, capture_output=True, timeout=300, check=False).returncode == 0:
                    return True
        except subprocess.TimeoutExpired:
            return False
        return False

    def _run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run([_kind(), *args], capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise ProviderError(f"kind {' '.join(args[:2])} failed: {proc.stderr.strip()[-400:]}")
        return proc.stdout

    def exists(self) -> bool:
        return CLUSTER_NAME in self._run("get", "clusters").split()

    def create(self) -> None:
        if self.exists():
            self._run("export", "kubeconfig", "--name", CLUSTER_NAME, "--kubeconfig", str(self.kubeconfig))
            return
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        image = ["--image", NODE_IMAGE] if NODE_IMAGE else []  # else kind's own default
        self._run(
            "create", "cluster", "--name", CLUSTER_NAME, "--kubeconfig", str(self.kubeconfig),
            "--wait", "180s", *image,
        )  # fmt: skip
        self.created = True

    def ready(self) -> bool:
        return self.exists() and self.node_ready()

    def _delete(self) -> None:
        self._run("delete", "cluster", "--name", CLUSTER_NAME)

    def load_image(self, archive: Path) -> None:
        images.load_into_kind(archive, CLUSTER_NAME, kind=_kind())
