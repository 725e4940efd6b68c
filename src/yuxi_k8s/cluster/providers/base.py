"""What every cluster provider offers the tests."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from yuxi_k8s.cluster.kube import Kubectl


class ProviderError(RuntimeError):
    """The provider cannot give a cluster; the message says why and what to do."""


class ClusterProvider(ABC):
    name: str = ""
    # The pinned binaries it needs built first (scripts/tools.sh names); the test session builds
    # them only when a test asks for a cluster (tests/kube_fixtures.py).
    tools: tuple[str, ...] = ()

    def __init__(self) -> None:
        # True only when this provider object brought the cluster up: delete() is refused otherwise.
        self.created = False

    @property
    @abstractmethod
    def kubeconfig(self) -> Path: ...

    @abstractmethod
    def create(self) -> None:
        """Make sure the cluster exists and is usable; set ``created`` if it had to be made."""

    @abstractmethod
    def ready(self) -> bool:
        """True when the API answers and the node is Ready."""

    @abstractmethod
    def _delete(self) -> None: ...

    def delete(self) -> None:
        """Remove the cluster, but only if this provider created it."""
        if self.created:
            self._delete()
            self.created = False

    @abstractmethod
    def load_image(self, archive: Path) -> None:
        """Make an image archive (from yuxi_k8s.cluster.oci) available to the cluster's nodes."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return Kubectl(self.kubeconfig).run(*args, input=input, check=check, timeout=timeout)

    def network_policy_gap(self) -> str | None:
        """Why this cluster cannot enforce NetworkPolicy (named), or None when it can."""
        return None

    def node_ready(self) -> bool:
        proc = self.kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        statuses = proc.stdout.split()
        return proc.returncode == 0 and bool(statuses) and all(s == "True" for s in statuses)
