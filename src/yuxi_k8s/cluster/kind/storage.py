"""A ReadWriteMany-capable default StorageClass for kind: the kit's hostpath provisioner as a pod.

kind's own default class (``standard``, rancher's local-path) serves ReadWriteOnce only; the
application's ``saves`` claim and the smoke tests need ReadWriteMany. The local cluster runs
:mod:`yuxi_k8s.cluster.provisioner` as a host process; on kind the same module runs as a
Deployment in ``yuxi-k8s-storage``, with the node's ``/var/lib/yuxi-k8s/volumes`` mounted at the
same path, so the hostPath volumes it creates exist on the node. On one node every pod runs beside
that directory, so RWO, RWX and ROX all hold (the same argument as the local cluster's).

The class is ``yuxi-local`` (the local cluster's name: one name for one thing) and becomes the
default; kind's ``standard`` stays, no longer default. Its image is Debian's ``python3`` and
``python3-kubernetes`` plus the provisioner module, built with :mod:`yuxi_k8s.cluster.oci`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.kind import REPOSITORY
from yuxi_k8s.cluster.kind.nodeimage import tools_rootfs_layer
from yuxi_k8s.cluster.local import addons, layout

NAMESPACE = "yuxi-k8s-storage"
NAME = "hostpath-provisioner"
VOLUMES = "/var/lib/yuxi-k8s/volumes"  # on the kind node
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "yuxi-k8s"}


def provisioner_image() -> oci.BuiltImage:
    """Debian python3 + python3-kubernetes and the provisioner module (cached)."""
    source = Path(__file__).resolve().parents[1] / "provisioner.py"
    with tempfile.TemporaryDirectory(prefix="yuxi-provisioner-") as tmp:
        root = Path(tmp)
        (root / "app").mkdir()
        shutil.copy2(source, root / "app" / "provisioner.py")
        app = oci.directory_layer(root)
    return oci.build_image(
        f"{REPOSITORY}/{NAME}",
        [tools_rootfs_layer(), app],
        entrypoint=["python3", "/app/provisioner.py"],
    )


def manifests(image: str) -> list[dict[str, Any]]:
    rules = next(m for m in addons.rbac() if m["metadata"]["name"] == "yuxi-k8s:provisioner")["rules"]
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    pod_spec = {
        "serviceAccountName": NAME,
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 2,
        "containers": [{
            "name": "provisioner",
            "image": image,
            "imagePullPolicy": "Never",
            "args": ["--root", VOLUMES, "--name", layout.PROVISIONER_NAME],
            # root: it makes world-writable directories on the node for pods of any uid
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False},
            "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "volumes", "mountPath": VOLUMES}],
        }],
        "volumes": [{"name": "volumes", "hostPath": {"path": VOLUMES, "type": "DirectoryOrCreate"}}],
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": LABELS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "yuxi-k8s:provisioner", "labels": LABELS}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "yuxi-k8s:provisioner", "labels": LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "yuxi-k8s:provisioner"},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, **meta},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                  "selector": {"matchLabels": LABELS},
                  "template": {"metadata": {"labels": LABELS}, "spec": pod_spec}}},
        addons.storage_class(),
    ]  # fmt: skip
