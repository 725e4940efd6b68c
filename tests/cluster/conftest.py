"""Fixtures of the cluster smoke tests: the test image, a throwaway namespace per test,
and diagnostics (objects, events, pod logs) printed when a test fails."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import yaml
from tests.cluster.namespaces import Namespace
from tests.kube_fixtures import KubeCluster

from yuxi_k8s.cluster.kube import poll


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def busybox(kube_cluster: KubeCluster) -> str:
    """The locally built busybox image (sh, wget, nc, httpd), loaded into the cluster."""
    from yuxi_k8s.cluster.system_images import busybox_image

    image = busybox_image()
    kube_cluster.load_image(image.archive)
    return image.name


def _diagnostics(ns: Namespace) -> str:
    parts = []
    for args in (
        ("get", "all,pvc,networkpolicy,events", "-o", "wide"),
        ("describe", "pods"),
    ):
        proc = ns.kubectl(*args, check=False)
        parts.append(f"$ kubectl -n {ns.name} {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    pods = ns.kubectl("get", "pods", "-o", "name", check=False).stdout.split()
    for pod in pods:
        proc = ns.kubectl("logs", pod, "--all-containers", "--tail=50", check=False)
        parts.append(f"$ kubectl -n {ns.name} logs {pod}\n{proc.stdout}{proc.stderr}")
    nodes = ns.cluster.kubectl("get", "nodes", "-o", "wide", check=False)
    parts.append(f"$ kubectl get nodes -o wide\n{nodes.stdout}{nodes.stderr}")
    return "\n".join(parts)


@pytest.fixture
def namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[Namespace]:
    """A fresh namespace for one test, deleted afterwards (kept with --keep-cluster)."""
    name = f"smoke-{request.node.name.removeprefix('test_')[:30].replace('_', '-')}-{secrets.token_hex(3)}"
    kube_cluster.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": {"app.kubernetes.io/managed-by": "yuxi-k8s-smoke"}}})
    )  # fmt: skip
    ns = Namespace(kube_cluster, name)
    poll(
        f"the default ServiceAccount in {name}",
        lambda: ns.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=60,
    )
    yield ns
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"\n===== diagnostics of namespace {name} =====\n{_diagnostics(ns)}")
    if not request.config.getoption("--keep-cluster"):
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
