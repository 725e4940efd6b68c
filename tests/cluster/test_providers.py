"""Providers: chosen by the environment, and never deleting a cluster they did not create."""

from __future__ import annotations

import pytest
from tests.kube_fixtures import KubeCluster

from yuxi_k8s.cluster import providers
from yuxi_k8s.cluster.providers import ExistingProvider, LocalProvider, ProviderError


def test_environment_variable_picks_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in providers.PROVIDERS.items():
        monkeypatch.setenv(providers.ENV, name)
        assert isinstance(providers.choose(), cls)
    monkeypatch.setenv(providers.ENV, "minikube")
    with pytest.raises(ProviderError, match="expected one of"):
        providers.choose()


def test_a_reachable_kubeconfig_is_used_as_existing(
    kube_cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(providers.ENV, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    chosen = providers.choose()
    assert isinstance(chosen, ExistingProvider)
    assert chosen.kubeconfig == kube_cluster.kubeconfig


def test_existing_cluster_is_never_deleted(kube_cluster: KubeCluster) -> None:
    existing = ExistingProvider(kube_cluster.kubeconfig)
    existing.create()
    assert existing.ready()
    existing.delete()
    assert existing.ready(), "deleting through the existing provider touched the cluster"


def test_local_provider_leaves_a_cluster_it_found_running(kube_cluster: KubeCluster) -> None:
    if kube_cluster.provider != "local":
        pytest.skip("the session's cluster is not the local one")  # kind/existing: nothing local to find
    found = LocalProvider()
    found.create()  # the cluster is up already: create adopts it
    assert not found.created
    found.delete()
    assert found.ready(), "a local cluster this provider did not start was taken down"
