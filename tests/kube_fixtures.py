"""The ``kube_cluster`` session fixture: a real cluster from a provider.

The provider comes from ``YUXI_K8S_CLUSTER_PROVIDER`` (local | kind | existing)
or is chosen as ``yuxi_k8s.cluster.providers.choose`` describes. The yielded
object has ``.kubeconfig`` (Path), ``.provider`` (its name), ``.load_image(archive)``,
``.kubectl(*args, input=None, check=True, timeout=120)`` (a CompletedProcess) and
``.network_policy_gap()`` (why NetworkPolicy is not enforced, or None).
A cluster this session did not create is never deleted; ``--keep-cluster`` keeps
the one it did create.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import require


@dataclass
class KubeCluster:
    provider: str
    kubeconfig: Path
    _impl: object

    def load_image(self, archive: Path) -> None:
        self._impl.load_image(archive)  # type: ignore[attr-defined]

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._impl.kubectl(*args, input=input, check=check, timeout=timeout)  # type: ignore[attr-defined]

    def network_policy_gap(self) -> str | None:
        """Why this cluster cannot enforce NetworkPolicy (e.g. kind where the kernel cannot), or None."""
        return self._impl.network_policy_gap()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    from yuxi_k8s.cluster.providers import ProviderError, choose

    try:
        provider = choose()
    except ProviderError as exc:
        require(False, str(exc))
        raise
    try:
        provider.create()
    except ProviderError as exc:
        pytest.fail(f"{provider.name} cluster could not be brought up: {exc}", pytrace=False)
    yield KubeCluster(provider.name, provider.kubeconfig, provider)
    if not request.config.getoption("--keep-cluster"):
        provider.delete()  # a no-op unless this session created the cluster
