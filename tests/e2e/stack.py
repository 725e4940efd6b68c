"""Render, seed and deploy the e2e overlay into one throwaway namespace.

The manifests are rendered from a copy of the tree under the run folder
(``.run/e2e/<run-id>/tree``), so per-run credentials (``scripts/dev-secrets.sh
--force`` in the copy) never touch the user's ``overlays/dev/secrets.env``. A
run kustomization (``.run/e2e/<run-id>/<name>/kustomization.yaml``) on top of
``tests/e2e/overlay`` sets the namespace and the tag of the image the run built.

Deployment order: everything but the workloads that read the saves volume
(Namespace, Secrets, ConfigMaps, PVCs, policies, Services, PostgreSQL, Redis);
then the seeding pod copies ``tests/e2e/seed/saves`` into the ``saves`` PVC;
then the full set (the migrate Job, api, web).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kube import (
    E2E_ROLE,
    Kube,
    client_pod,
    kustomize_build,
    wait_pod_ready,
    wait_pod_succeeded,
)
from yuxi_k8s.cluster.kube import poll

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "tests" / "e2e" / "overlay"
SEED = ROOT / "tests" / "e2e" / "seed" / "saves"
TREE_PARTS = ("base", "components", "overlays", "tests/e2e/overlay", "scripts/dev-secrets.sh")
WORKLOADS_AFTER_SEED = {("Job", "migrate"), ("Deployment", "api"), ("Deployment", "web")}
API = "app.kubernetes.io/name=yuxi-know,app.kubernetes.io/component=api"
WEB = "app.kubernetes.io/name=yuxi-know,app.kubernetes.io/component=web"


def prepare_tree(run_dir: Path) -> Path:
    """Copy the manifests into the run folder once and generate this run's credentials there."""
    tree = run_dir / "tree"
    if (tree / ".ready").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    for part in TREE_PARTS:
        src = ROOT / part
        dst = tree / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("secrets.env", "provider-keys.env"))
        else:
            shutil.copy2(src, dst)
    # Fresh random passwords for this run; provider keys from the user's shell stay out.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    subprocess.run(
        ["bash", str(tree / "scripts" / "dev-secrets.sh"), "--force"],
        env=env,
        check=True,
        capture_output=True,
    )
    (tree / ".ready").write_text("ok\n")
    return tree


def split_image(image: str) -> tuple[str, str]:
    name, tag = image.rsplit(":", 1)
    return name, tag


def write_kustomization(
    run_dir: Path,
    name: str,
    namespace: str,
    image: str,
    resources: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    folder = run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    repo, tag = split_image(image)
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [os.path.relpath(r, folder) for r in resources],
        "images": [{"name": repo, "newTag": tag}],
        **(extra or {}),
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def render(folder: Path) -> list[dict[str, Any]]:
    text = kustomize_build(folder)
    (folder / "rendered.yaml").write_text(text)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Stack:
    kube: Kube
    namespace: str
    image: str
    run_dir: Path
    folder: Path
    manifests: list[dict[str, Any]] = field(default_factory=list)

    # --- lookups in the rendered manifests -------------------------------------------
    def find(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.manifests:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name} not in the rendered manifests")

    def generated_name(self, kind: str, base_name: str) -> str:
        """The hash-suffixed name kustomize gave a generated Secret or ConfigMap."""
        for doc in self.manifests:
            name = doc["metadata"]["name"]
            if doc["kind"] == kind and name.rsplit("-", 1)[0] == base_name:
                return str(name)
        raise KeyError(f"no generated {kind} {base_name}")

    def secret_ref(self, env_name: str, key: str | None = None) -> dict[str, Any]:
        return {
            "name": env_name,
            "valueFrom": {
                "secretKeyRef": {
                    "name": self.generated_name("Secret", "app-credentials"),
                    "key": key or env_name,
                }
            },
        }

    # --- deployment --------------------------------------------------------------------
    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kube.apply(docs)

    def deploy(self) -> None:
        first = [d for d in self.manifests if (d["kind"], d["metadata"]["name"]) not in WORKLOADS_AFTER_SEED]
        self.apply(first)
        self.seed_saves()
        self.apply(self.manifests)

    def seed_saves(self) -> None:
        """Copy the seeded saves/ tree into the saves PVC (before the migrate Job reads it)."""
        files: dict[str, str] = {}
        paths: dict[str, str] = {}
        for i, path in enumerate(sorted(p for p in SEED.rglob("*") if p.is_file())):
            key = f"f{i}"
            files[key] = path.read_text()
            paths[key] = str(path.relative_to(SEED))
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "e2e-seed-saves", "labels": {E2E_ROLE: "seed"}},
            "data": files,
        }
        copy = (
            "import os, shutil, json\n"
            f"paths = json.loads({json.dumps(json.dumps(paths))})\n"
            "os.umask(0o002)\n"
            "for key, rel in paths.items():\n"
            "    dst = os.path.join('/app/saves', rel)\n"
            "    os.makedirs(os.path.dirname(dst), exist_ok=True)\n"
            "    shutil.copyfile(os.path.join('/seed', key), dst)\n"
            "print(json.dumps(sorted(paths.values())))\n"
        )
        uid = self.api_uid()
        pod = client_pod(
            "e2e-seed-saves",
            self.image,
            ["python3", "-c", copy],
            role="seed",
            uid=uid,
            volumes=[
                {"name": "saves", "persistentVolumeClaim": {"claimName": "saves"}},
                {"name": "seed", "configMap": {"name": "e2e-seed-saves"}},
            ],
            mounts=[{"name": "saves", "mountPath": "/app/saves"}, {"name": "seed", "mountPath": "/seed"}],
        )
        self.kube.apply([configmap, pod], ns=self.namespace)
        wait_pod_succeeded(self.kube, self.namespace, "e2e-seed-saves", timeout=180)

    def api_uid(self) -> int:
        ctx = self.find("Deployment", "api")["spec"]["template"]["spec"].get("securityContext", {})
        return int(ctx.get("runAsUser", 10001))

    def wait_ready(self, timeout: float = 300) -> None:
        self.wait_job("migrate", timeout)
        self.kube.wait_deployment(self.namespace, "api", timeout)
        self.kube.wait_deployment(self.namespace, "web", timeout)

    def wait_job(self, name: str, timeout: float = 300) -> None:
        def complete() -> bool:
            job = self.kube.json("get", "job", name, ns=self.namespace)
            st = job.get("status", {})
            for cond in st.get("conditions", []):
                if cond["type"] == "Failed" and cond["status"] == "True":
                    raise AssertionError(f"job {name} failed: {cond.get('message')}")
            return bool(st.get("succeeded"))

        poll(f"job {self.namespace}/{name} to complete", complete, timeout, interval=2)

    # --- clients inside the namespace --------------------------------------------------
    def allow_e2e_clients(self) -> None:
        """Policies for the run's own client pods (the stack's policies stay as rendered).

        ``e2e-clients-egress``: pods with the e2e role client/stranger may send anywhere
        (so a refused connection proves the *receiver's* policy). ``e2e-client-to-api``:
        the api pods accept the role ``client`` on 5050, as they accept web.
        """
        policies = [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "e2e-clients-egress"},
                "spec": {
                    "podSelector": {
                        "matchExpressions": [
                            {"key": E2E_ROLE, "operator": "In", "values": ["client", "stranger"]}
                        ]
                    },
                    "policyTypes": ["Egress"],
                    "egress": [{}],
                },
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "e2e-client-to-api"},
                "spec": {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "yuxi-know",
                            "app.kubernetes.io/component": "api",
                        }
                    },
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {E2E_ROLE: "client"}}}],
                            "ports": [{"protocol": "TCP", "port": 5050}],
                        }
                    ],
                },
            },
        ]
        self.kube.apply(policies, ns=self.namespace)

    def start_idle_pod(self, name: str, role: str = "client", **kw: Any) -> str:
        pod = client_pod(name, self.image, ["sleep", "3600"], role=role, **kw)
        self.kube.apply([pod], ns=self.namespace)
        wait_pod_ready(self.kube, self.namespace, name)
        return name

    def py(self, pod: str, code: str, timeout: float = 60) -> Any:
        return self.kube.python(self.namespace, pod, code, timeout=timeout)

    def api_pods(self) -> dict[str, str]:
        """Ready api pods: name -> pod IP."""
        return {
            p["metadata"]["name"]: p["status"]["podIP"] for p in self.kube.ready_pods(self.namespace, API)
        }


# Code run inside client pods (python3 of the runtime image, standard library only).
HTTP_HELPERS = """
import json, socket, time, urllib.request, urllib.error
def call(url, method="GET", body=None, timeout=3.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")
def tcp(host, port, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "open"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
"""
