"""The ``kube_cluster`` session fixture: a real cluster from a provider, made only when asked for.

The provider comes from ``YUXI_K8S_CLUSTER_PROVIDER`` (local | kind | existing) or is chosen as
``yuxi_k8s.cluster.providers.choose`` describes. Nothing is built for a session that collects
no test asking for a cluster: the first test that asks builds the pinned binaries the provider
needs (``ClusterProvider.tools``, through ``scripts/tools.sh``; none for an existing cluster),
then brings the cluster up.

The yielded :class:`KubeCluster` has ``.kubeconfig`` (Path), ``.provider`` (its name),
``.load_image(archive)``, ``.kubectl(*args, input=None, check=True, timeout=120)`` and
``.network_policy_gap()`` (why NetworkPolicy is not enforced, or None). A cluster
this session did not create is never deleted; ``--keep-cluster`` keeps the one it did create.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import require

if TYPE_CHECKING:
    from yuxi_k8s.cluster.providers import ClusterProvider

ROOT = Path(__file__).resolve().parents[1]


class KubeCluster:
    """The session's cluster, as the tests use it (a thin view of its provider)."""

    def __init__(self, provider: ClusterProvider) -> None:
        self._provider = provider

    @property
    def provider(self) -> str:
        return self._provider.name

    @property
    def kubeconfig(self) -> Path:
        return self._provider.kubeconfig

    def load_image(self, archive: Path) -> None:
        self._provider.load_image(archive)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._provider.kubectl(*args, input=input, check=check, timeout=timeout)

    def network_policy_gap(self) -> str | None:
        """Why this cluster cannot enforce NetworkPolicy (e.g. kind where the kernel cannot), or None."""
        return self._provider.network_policy_gap()


def build_tools(names: tuple[str, ...]) -> None:
    """``scripts/tools.sh NAMES`` (cached: a no-op once built); a failure fails the asking test."""
    if not names:
        return
    proc = subprocess.run([str(ROOT / "scripts" / "tools.sh"), *names], check=False)
    if proc.returncode != 0:
        pytest.fail(f"building {' '.join(names)} for the cluster failed (scripts/tools.sh)", pytrace=False)


def provider_for_session() -> ClusterProvider:
    """The provider, with the binaries it needs built; building nothing for an existing cluster."""
    from yuxi_k8s.cluster.providers import ENV, PROVIDERS, ProviderError, choose

    try:
        name = os.environ.get(ENV) or None
        if name in PROVIDERS:
            build_tools(PROVIDERS[name].tools)
            return choose(name)
        if name is None:
            try:
                found = choose()
            except ProviderError:
                found = None
            if found is not None and not found.tools:
                return found  # an existing cluster: nothing to build
            # kind can only be chosen once built: build what any provider here may need, then choose.
            build_tools(tuple(dict.fromkeys(t for p in PROVIDERS.values() for t in p.tools)))
        return choose(name)
    except ProviderError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    from yuxi_k8s.cluster.providers import ProviderError

    provider = provider_for_session()
    try:
        provider.create()
    except ProviderError as exc:
        pytest.fail(f"{provider.name} cluster could not be brought up: {exc}", pytrace=False)
    yield KubeCluster(provider)
    if not request.config.getoption("--keep-cluster"):
        provider.delete()  # a no-op unless this session created the cluster


@pytest.fixture
def network_policy(kube_cluster: KubeCluster) -> None:
    """Skip, naming why, where the cluster cannot enforce NetworkPolicy (a kernel limit, not a setup gap).

    Only what the provider names as impossible on this host is skipped (e.g. kind here: kindnetd
    needs the kernel's nftables queue); the local provider enforces NetworkPolicy on the same host.
    For any tier: ``@pytest.mark.usefixtures("network_policy")``.
    """
    gap = kube_cluster.network_policy_gap()
    if gap:
        pytest.skip(f"NetworkPolicy is not enforced by this {kube_cluster.provider} cluster: {gap}")
