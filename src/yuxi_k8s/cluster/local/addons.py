"""What the cluster applies to itself once the API server answers: RBAC for the
host-process add-ons, the default StorageClass, and CoreDNS."""

from __future__ import annotations

from typing import Any

from yuxi_k8s.cluster.local import layout

Manifest = dict[str, Any]


def _cluster_role(name: str, user: str, rules: list[dict[str, Any]]) -> list[Manifest]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]  # fmt: skip


READ = ["get", "list", "watch"]


def rbac() -> list[Manifest]:
    kube_router = _cluster_role(
        "yuxi-k8s:kube-router",
        "yuxi-k8s:kube-router",
        [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
             "verbs": READ},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    )  # fmt: skip
    provisioner = _cluster_role(
        "yuxi-k8s:provisioner",
        "yuxi-k8s:provisioner",
        [
            {"apiGroups": [""], "resources": ["persistentvolumes"],
             "verbs": [*READ, "create", "delete", "update", "patch"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": [*READ, "update", "patch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    )  # fmt: skip
    return kube_router + provisioner


def storage_class() -> Manifest:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": layout.STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": layout.PROVISIONER_NAME,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": False,
    }


# No `forward`: names outside the cluster get no answer from here, so nothing in
# the cluster can resolve (and so reach) an outside address by name.
COREFILE = f"""\
.:53 {{
    errors
    health {{
        lameduck 3s
    }}
    ready
    kubernetes {layout.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""

DNS_LABELS = {"k8s-app": "kube-dns", "app.kubernetes.io/name": "coredns"}


def coredns(image: str) -> list[Manifest]:
    ns = "kube-system"
    meta = {"namespace": ns, "labels": DNS_LABELS}
    role = _cluster_role(
        "yuxi-k8s:coredns",
        "system:serviceaccount:kube-system:coredns",
        [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    )
    role[1]["subjects"] = [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]
    pod_spec = {
        "serviceAccountName": "coredns",
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "coredns",
            "image": image,
            "imagePullPolicy": "Never",
            "args": ["-conf", "/etc/coredns/Corefile"],
            # containerd lets pods bind low ports without privileges (enable_unprivileged_ports).
            "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                      {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10,
                              "failureThreshold": 5},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        }],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }  # fmt: skip
    return [
        *role,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **meta}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **meta},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                  "template": {"metadata": {"labels": DNS_LABELS}, "spec": pod_spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", **meta},
         "spec": {"clusterIP": layout.DNS_SERVICE_IP, "selector": {"k8s-app": "kube-dns"},
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
    ]  # fmt: skip
