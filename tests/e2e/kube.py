"""kubectl, waits and throwaway pods for the end-to-end scenarios.

Every call goes through ``kubectl`` with the cluster's kubeconfig, so what the
tests do is what a user can repeat by hand. Waits poll with a hard timeout and
say what they waited for when they give up.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yuxi_k8s.cluster.kube import Kubectl, KubectlError, kubectl_binary, poll

ROOT = Path(__file__).resolve().parents[2]

# Labels the client pods of a run carry; the e2e NetworkPolicies select them.
E2E_ROLE = "yuxi-k8s.io/e2e-role"


def kustomize_build(path: Path) -> str:
    """Render *path* with the pinned kustomize (bin/), else kubectl's built-in one."""
    kustomize = ROOT / "bin" / "kustomize"
    cmd = (
        [str(kustomize), "build", str(path)]
        if kustomize.exists()
        else [kubectl_binary(), "kustomize", str(path)]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KubectlError(f"kustomize build {path} failed: {proc.stderr.strip()}")
    return proc.stdout


class Kube(Kubectl):
    """The package's kubectl wrapper plus the pod and deployment queries the scenarios share."""

    def pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return list(self.json("get", "pods", "-l", selector, ns=ns)["items"])

    def ready_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(ns, selector) if is_ready(p)]

    def deployment_complete(self, ns: str, name: str) -> bool:
        """Every wanted replica is updated, ready and available, and no old pod is left."""
        dep = self.json("get", "deployment", name, ns=ns)
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status", {})
        return (
            st.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want
            and st.get("readyReplicas", 0) == want
            and st.get("availableReplicas", 0) == want
            and st.get("replicas", 0) == want
        )

    def wait_deployment(self, ns: str, name: str, timeout: float = 240) -> None:
        poll(f"deployment {ns}/{name} to be complete", lambda: self.deployment_complete(ns, name), timeout)

    def exec(
        self,
        ns: str,
        pod: str,
        *cmd: str,
        container: str | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = ["exec", pod, *(["-c", container] if container else []), "--", *cmd]
        return self.run(*args, ns=ns, timeout=timeout, check=check)

    def python(
        self, ns: str, pod: str, code: str, *, container: str | None = None, timeout: float = 60
    ) -> Any:
        """Run *code* with the pod's python3; it must print one JSON document, which is returned."""
        out = self.exec(ns, pod, "python3", "-c", code, container=container, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def client_pod(
    name: str,
    image: str,
    command: Sequence[str],
    *,
    role: str = "client",
    labels: dict[str, str] | None = None,
    uid: int = 10001,
    restart: str = "Never",
    env: dict[str, str] | None = None,
    volumes: Sequence[dict[str, Any]] = (),
    mounts: Sequence[dict[str, Any]] = (),
    env_from: Sequence[dict[str, Any]] = (),
    secret_env: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A throwaway pod that passes Pod Security "restricted" and runs *command* from the runtime image."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {E2E_ROLE: role, "app.kubernetes.io/managed-by": "yuxi-k8s-e2e", **(labels or {})},
        },
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "fsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": list(command),
                    "env": [{"name": k, "value": v} for k, v in (env or {}).items()] + list(secret_env),
                    "envFrom": list(env_from),
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "securityContext": RESTRICTED_CONTAINER,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
        },
    }


def pod_phase(kube: Kube, ns: str, name: str) -> str:
    return str(kube.json("get", "pod", name, ns=ns).get("status", {}).get("phase", ""))


def wait_pod_succeeded(kube: Kube, ns: str, name: str, timeout: float = 180) -> str:
    """Wait for a run-to-completion pod; return its log. A Failed pod fails at once with its log."""

    def done() -> str | None:
        phase = pod_phase(kube, ns, name)
        if phase == "Failed":
            log = kube.run("logs", name, ns=ns, check=False).stdout
            raise AssertionError(f"pod {ns}/{name} failed:\n{log[-3000:]}")
        return "yes" if phase == "Succeeded" else None

    poll(f"pod {ns}/{name} to succeed", done, timeout)
    return kube.run("logs", name, ns=ns).stdout


def wait_pod_ready(kube: Kube, ns: str, name: str, timeout: float = 120) -> None:
    poll(f"pod {ns}/{name} to be ready", lambda: is_ready(kube.json("get", "pod", name, ns=ns)), timeout)
