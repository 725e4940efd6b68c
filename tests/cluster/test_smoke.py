"""Smoke tests of a cluster: what the end-to-end tests rely on, each proven with real pods.

Every test works in its own throwaway namespace with the locally built busybox
image; every wait polls with a hard timeout.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.cluster.namespaces import Namespace
from tests.kube_fixtures import KubeCluster

from yuxi_k8s.cluster.kube import poll

HTTP_PORT = 8080
# Serves its own hostname over HTTP: a reply names the pod that answered.
SERVE = f"mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p {HTTP_PORT} -h /tmp/www"

# The kind pass of make test repeats these too (scripts/test.sh).
pytestmark = pytest.mark.core


def _container(image: str, name: str, command: str, **extra: Any) -> dict[str, Any]:
    """A container that passes Pod Security `restricted`."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", command],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **extra,
    }


def _pod_spec(containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"terminationGracePeriodSeconds": 1, "containers": containers, **extra}


def pod(image: str, name: str, command: str = "exec sleep 3600", labels: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"role": name}},
        "spec": _pod_spec([_container(image, "main", command)], **spec),
    }


def web_deployment(image: str, name: str = "web", replicas: int = 2) -> dict[str, Any]:
    probe = {"tcpSocket": {"port": HTTP_PORT}, "periodSeconds": 1}
    container = _container(image, "web", SERVE, ports=[{"containerPort": HTTP_PORT}], readinessProbe=probe)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": _pod_spec([container])},
        },
    }


def service(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": HTTP_PORT}]},
    }


def wait_available(ns: Namespace, name: str, replicas: int, timeout: float = 120) -> None:
    poll(
        f"deployment {name} with {replicas} available replicas",
        lambda: ns.get("deployment", name).get("status", {}).get("availableReplicas") == replicas,
        timeout,
    )


def fetch(ns: Namespace, client: str, url: str) -> str | None:
    """The body a GET of *url* from pod *client* returns, or None when it cannot connect."""
    # busybox 1.35's `wget -T` crashes; its `timeout` applet bounds the attempt instead.
    proc = ns.exec(client, "timeout", "5", "wget", "-q", "-O", "-", url)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_node_ready(kube_cluster: KubeCluster) -> None:
    nodes = json.loads(kube_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert nodes, "the cluster has no node"
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", f"node {node['metadata']['name']} is not Ready"


def test_deployment_with_two_replicas_becomes_available(namespace: Namespace, busybox: str) -> None:
    namespace.apply(web_deployment(busybox, replicas=2))
    wait_available(namespace, "web", 2)
    pods = json.loads(namespace.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    assert len({p["status"]["podIP"] for p in pods}) == 2


def test_cluster_ip_service_answers_by_ip_and_by_dns_name(namespace: Namespace, busybox: str) -> None:
    namespace.apply(web_deployment(busybox, replicas=2), service(), pod(busybox, "client"))
    wait_available(namespace, "web", 2)
    namespace.wait_pod_ready("client")
    cluster_ip = namespace.get("service", "web")["spec"]["clusterIP"]
    backends = set(
        namespace.kubectl(
            "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"
        ).stdout.split()
    )
    by_ip = poll(
        "the Service by its ClusterIP",
        lambda: fetch(namespace, "client", f"http://{cluster_ip}/"),
        timeout=60,
    )
    assert by_ip in backends
    dns_name = f"web.{namespace.name}.svc.cluster.local"
    by_name = poll(
        f"the Service by DNS name {dns_name}",
        lambda: fetch(namespace, "client", f"http://{dns_name}/"),
        timeout=60,
    )
    assert by_name in backends
    short = poll(
        "the Service by its short name", lambda: fetch(namespace, "client", "http://web/"), timeout=60
    )
    assert short in backends


@pytest.mark.usefixtures("network_policy")
def test_network_policy_default_deny_blocks_and_allow_rule_allows(namespace: Namespace, busybox: str) -> None:
    namespace.apply(
        web_deployment(busybox, replicas=1),
        service(),
        pod(busybox, "allowed", labels={"role": "frontend"}),
        pod(busybox, "other", labels={"role": "other"}),
    )
    wait_available(namespace, "web", 1)
    for client in ("allowed", "other"):
        namespace.wait_pod_ready(client)
    url = f"http://web.{namespace.name}.svc.cluster.local/"
    for client in ("allowed", "other"):  # without a policy both connect: the block below is the policy's
        poll(
            f"{client} reaching web before any policy", lambda c=client: fetch(namespace, c, url), timeout=60
        )

    namespace.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
    )
    for client in ("allowed", "other"):
        poll(f"default-deny blocking {client}", lambda c=client: fetch(namespace, c, url) is None, timeout=60)
    assert fetch(namespace, "allowed", url) is None, "default-deny stopped blocking"

    namespace.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-frontend"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                        "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                    }
                ],
            },
        }
    )
    poll("the allow rule letting the frontend pod in", lambda: fetch(namespace, "allowed", url), timeout=60)
    assert fetch(namespace, "other", url) is None, "a pod the allow rule does not select got through"


def test_privileged_pod_is_rejected_in_restricted_namespace(namespace: Namespace, busybox: str) -> None:
    namespace.cluster.kubectl(
        "label", "namespace", namespace.name, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    privileged = pod(busybox, "privileged")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    proc = namespace.kubectl("apply", "-f", "-", input=json.dumps(privileged), check=False)
    assert proc.returncode != 0, "a privileged pod was admitted into a restricted namespace"
    assert "violates PodSecurity" in proc.stderr and "restricted" in proc.stderr, proc.stderr
    # The same namespace admits a pod that meets the profile: the rejection was the policy's.
    namespace.apply(pod(busybox, "compliant"))
    namespace.wait_pod_ready("compliant")


def test_deleted_pod_is_replaced(namespace: Namespace, busybox: str) -> None:
    namespace.apply(web_deployment(busybox, replicas=1))
    wait_available(namespace, "web", 1)

    def pod_names() -> set[str]:
        out = namespace.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}")
        return set(out.stdout.split())

    (original,) = pod_names()
    namespace.kubectl("delete", "pod", original, "--wait=false")
    replacement = poll("a replacement pod", lambda: pod_names() - {original}, timeout=60)
    namespace.wait_pod_ready(replacement.pop())
    wait_available(namespace, "web", 1)


def test_read_write_many_claim_is_shared_between_pods(namespace: Namespace, busybox: str) -> None:
    namespace.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "16Mi"}}},
        }
    )
    poll(
        "the claim to be Bound",
        lambda: namespace.get("pvc", "shared").get("status", {}).get("phase") == "Bound",
        timeout=60,
    )
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]}
    for name in ("writer-a", "writer-b"):
        manifest = pod(busybox, name, **volume)
        manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        namespace.apply(manifest)
    for name in ("writer-a", "writer-b"):
        namespace.wait_pod_ready(name)
        assert namespace.exec(name, "sh", "-c", f"echo from-{name} > /data/{name}.txt").returncode == 0
    assert namespace.exec("writer-a", "cat", "/data/writer-b.txt").stdout.strip() == "from-writer-b"
    assert namespace.exec("writer-b", "cat", "/data/writer-a.txt").stdout.strip() == "from-writer-a"


@pytest.mark.parametrize("mode", ["ReadWriteOnce"])
def test_read_write_once_claim_is_bound_and_reclaimed(namespace: Namespace, busybox: str, mode: str) -> None:
    namespace.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "single"},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "16Mi"}}},
        }
    )
    poll(
        "the claim to be Bound",
        lambda: namespace.get("pvc", "single").get("status", {}).get("phase") == "Bound",
        timeout=60,
    )
    manifest = pod(
        busybox, "user", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "single"}}]
    )
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    namespace.apply(manifest)
    namespace.wait_pod_ready("user")
    assert namespace.exec("user", "sh", "-c", "echo ok > /data/f && cat /data/f").stdout.strip() == "ok"
    volume = namespace.get("pvc", "single")["spec"]["volumeName"]
    namespace.kubectl("delete", "pod", "user", "--wait=true", timeout=60)
    namespace.kubectl("delete", "pvc", "single", "--wait=true", timeout=60)
    poll(
        f"the released volume {volume} to be reclaimed (reclaim policy Delete)",
        lambda: namespace.cluster.kubectl("get", "pv", volume, check=False).returncode != 0,
        timeout=60,
    )


@pytest.mark.usefixtures("network_policy")
def test_network_policy_egress_deny_blocks_and_allow_rule_allows(namespace: Namespace, busybox: str) -> None:
    namespace.apply(web_deployment(busybox, replicas=1), service(), pod(busybox, "client"))
    wait_available(namespace, "web", 1)
    namespace.wait_pod_ready("client")
    url = f"http://web.{namespace.name}.svc.cluster.local/"
    poll("client reaching web before any policy", lambda: fetch(namespace, "client", url), timeout=60)
    cluster_ip = namespace.get("service", "web")["spec"]["clusterIP"]

    namespace.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "client-deny-egress"},
            "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]},
        }
    )
    poll(
        "egress deny blocking the client",
        lambda: fetch(namespace, "client", f"http://{cluster_ip}/") is None,
        timeout=60,
    )

    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}  # fmt: skip
    namespace.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "client-allow-web-and-dns"},
            "spec": {
                "podSelector": {"matchLabels": {"role": "client"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                     "ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
                    {"to": [dns], "ports": [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]},
                ],
            },
        }
    )  # fmt: skip
    poll(
        "the egress allow rule letting the client reach web by name",
        lambda: fetch(namespace, "client", url),
        timeout=60,
    )
    coredns_ip = namespace.cluster.kubectl(
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ).stdout.strip()
    assert fetch(namespace, "client", f"http://{coredns_ip}:8080/health") is None, (
        "egress outside the rule got out"
    )
