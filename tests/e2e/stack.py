"""Render, seed and deploy the e2e overlay (the real application) into throwaway namespaces.

The manifests are rendered from a copy of the tree under the run folder
(``.run/e2e/<run-id>/tree``): there the copy of ``overlays/dev`` gets this run's
namespaces (the application's and the sandboxes') and fresh credentials
(``scripts/dev-secrets.sh --force`` in the copy, so the user's files are never
read or written), and a run kustomization (``.run/e2e/<run-id>/<name>/``) on top
of ``tests/e2e/overlay`` pins the images this run built.

Deployment order: everything but the workloads that read the saves volume; then
a pod copies the real v0.6.1 settings files (``tests/fixtures/saves-0.6.1``, written
by the application itself) into the ``saves`` PVC, as a first deploy of an existing
install would find them; then the rest (the migrate Job imports them, then the api).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kube import E2E_ROLE, Kube, client_pod, wait_pod_ready, wait_pod_succeeded
from yuxi_k8s.cluster.kube import poll
from yuxi_k8s.validate.render import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "tests" / "e2e" / "overlay"
SEED = ROOT / "tests" / "fixtures" / "saves-0.6.1"
STANDIN_KUSTOMIZATION = "tests/e2e/overlay/standin/kustomization.yaml"
CREDENTIAL_FILES = ("postgres.env", "secrets.env", "provider-keys.env")
TREE_PARTS = ("base", "components", "overlays", "tests/e2e/overlay", "scripts/dev-secrets.sh")
WORKLOADS_AFTER_SEED = {("Job", "migrate"), ("Deployment", "api"), ("Deployment", "worker")}
API = "app.kubernetes.io/name=yuxi-know,app.kubernetes.io/component=api"
WEB = "app.kubernetes.io/name=yuxi-know,app.kubernetes.io/component=web"
WORKER = "app.kubernetes.io/name=yuxi-know,app.kubernetes.io/component=worker"
WEB_URL = "http://web"  # nginx (the web Service, port 80), as users reach the app
# The one provider key the api needs to start (the stand-in answers whatever key it gets).
PROVIDER_ENV = {"OPENAI_API_KEY": "e2e-stand-in"}
# Which image names of the manifests each image the run built replaces.
BUILT_FOR = {
    "api": "localhost/yuxi-k8s/yuxi-know-api",
    "web": "localhost/yuxi-k8s/yuxi-know-web",
    "sandbox-provisioner": "localhost/yuxi-k8s/yuxi-know-sandbox-provisioner",
    "postgres": "localhost/yuxi-k8s/yuxi-k8s-postgres",
    "redis": "localhost/yuxi-k8s/yuxi-k8s-redis",
    "minio": "localhost/yuxi-k8s/yuxi-k8s-minio",
    "neo4j": "localhost/yuxi-k8s/yuxi-k8s-neo4j",
    "milvus": "localhost/yuxi-k8s/yuxi-k8s-milvus",
    # No image field names it: prepare_tree writes it into SANDBOX_IMAGE of the site settings.
    "sandbox-standin": "localhost/yuxi-k8s/yuxi-k8s-sandbox-standin",
}
# The sandbox image dev names (a third-party registry, unreachable here): the run puts the
# kit's stand-in in its place.
DEV_SANDBOX_IMAGE = "enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest"


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise AssertionError(f"{path}: expected `{old}` once (the e2e run renames it); the overlay changed")
    path.write_text(text.replace(old, new))


def prepare_tree(run_dir: Path, namespace: str, sandbox_image: str) -> Path:
    """Copy the manifests into the run folder once: this run's namespaces, credentials and
    sandbox image (the kit's stand-in the run built, *sandbox_image*)."""
    tree = run_dir / "tree"
    marker = tree / ".ready"
    if marker.exists() and marker.read_text() == namespace:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    for part in TREE_PARTS:
        src, dst = ROOT / part, tree / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            # The user's credentials stay where they are; the copy gets its own below.
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*CREDENTIAL_FILES))
        else:
            shutil.copy2(src, dst)
    rename_namespaces(tree, "dev", namespace)
    site = tree / "overlays" / "dev" / "app" / "site.ConfigMap.yaml"
    _replace_once(site, f"SANDBOX_IMAGE: {DEV_SANDBOX_IMAGE}\n", f"SANDBOX_IMAGE: {sandbox_image}\n")
    _replace_once(tree / STANDIN_KUSTOMIZATION, "namespace: yuxi-dev\n", f"namespace: {namespace}\n")
    # Fresh random passwords for this run; only the stand-in's provider key from here.
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ACCESS_TOKEN"))}
    subprocess.run(
        ["bash", str(tree / "scripts" / "dev-secrets.sh"), "--force"],
        env={**env, **PROVIDER_ENV},
        check=True,
        capture_output=True,
    )
    (tree / ".ready").write_text(namespace)
    return tree


def sandbox_namespace(namespace: str) -> str:
    return f"{namespace}-sbx"


def rename_namespaces(tree: Path, env: str, namespace: str) -> None:
    """In the copied overlays/<env>: the application's namespace and the sandboxes' (the two
    namespaces an environment renders; kustomize's `namespace:` on top would merge them)."""
    app = tree / "overlays" / env / "app"
    _replace_once(app / "kustomization.yaml", f"namespace: yuxi-{env}\n", f"namespace: {namespace}\n")
    _replace_once(
        app / "site.ConfigMap.yaml",
        f"SANDBOX_NAMESPACE: yuxi-{env}-sandboxes\n",
        f"SANDBOX_NAMESPACE: {sandbox_namespace(namespace)}\n",
    )


def write_kustomization(
    run_dir: Path,
    name: str,
    resources: list[Path],
    built: Mapping[str, str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """A run kustomization over *resources*; *built* maps image kind -> the reference this run built."""
    folder = run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for kind, reference in sorted(built.items()):
        repo, tag = reference.rsplit(":", 1)
        images.append({"name": BUILT_FOR[kind], "newName": repo, "newTag": tag})
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(r, folder) for r in resources],
        "images": images,
        **(extra or {}),
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def render(folder: Path) -> list[dict[str, Any]]:
    text = kustomize_build(folder)
    (folder / "rendered.yaml").write_text(text)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class AppStack:
    """The deployed e2e overlay in one namespace, and the calls the scenarios make on it."""

    kube: Kube
    namespace: str
    client_image: str  # the api image: Python and the kit's probes
    run_dir: Path
    folder: Path
    manifests: list[dict[str, Any]] = field(default_factory=list)
    token: str = ""

    # --- lookups in the rendered manifests -------------------------------------------
    def find(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.manifests:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name} not in the rendered manifests")

    def generated_name(self, kind: str, base_name: str) -> str:
        for doc in self.manifests:
            name = doc["metadata"]["name"]
            if doc["kind"] == kind and name.rsplit("-", 1)[0] == base_name:
                return str(name)
        raise KeyError(f"no generated {kind} {base_name}")

    def cluster_scoped(self) -> list[tuple[str, str]]:
        """(kind, name) of the rendered objects outside any namespace but the Namespaces
        (e.g. the sandboxes' admission policy): deleting the namespaces leaves them."""
        return [
            (d["kind"], d["metadata"]["name"])
            for d in self.manifests
            if "namespace" not in d["metadata"] and d["kind"] != "Namespace"
        ]

    def delete_cluster_scoped(self) -> None:
        for kind, name in self.cluster_scoped():
            self.kube.run("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)

    # --- deployment --------------------------------------------------------------------
    def deploy(self) -> None:
        app = [d for d in self.manifests if d["metadata"].get("namespace", self.namespace) == self.namespace]
        first = [d for d in self.manifests if (d["kind"], d["metadata"]["name"]) not in WORKLOADS_AFTER_SEED]
        self.kube.apply(first)
        self.seed_saves()
        self.kube.apply(self.manifests)
        assert app, "nothing rendered for the application's namespace"

    def seed_saves(self) -> None:
        """The real v0.6.1 settings files into the saves PVC, as the api's user, before the migrate Job."""
        files = {p.name: p.read_text() for p in (SEED / "config").iterdir() if p.is_file()}
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "e2e-seed-saves", "labels": {E2E_ROLE: "seed"}},
            "data": files,
        }
        copy = (
            "import json, os, shutil\n"
            "os.makedirs('/app/saves/config', exist_ok=True)\n"
            f"names = {sorted(files)!r}\n"
            "for n in names: shutil.copyfile('/seed/' + n, '/app/saves/config/' + n)\n"
            "print(json.dumps(names))\n"
        )
        pod = client_pod(
            "e2e-seed-saves",
            self.client_image,
            ["python3", "-c", copy],
            role="seed",
            uid=self.api_uid(),
            volumes=[
                {"name": "saves", "persistentVolumeClaim": {"claimName": "saves"}},
                {"name": "seed", "configMap": {"name": "e2e-seed-saves"}},
            ],
            mounts=[{"name": "saves", "mountPath": "/app/saves"}, {"name": "seed", "mountPath": "/seed"}],
        )
        self.kube.apply([configmap, pod], ns=self.namespace)
        wait_pod_succeeded(self.kube, self.namespace, "e2e-seed-saves", timeout=300)

    def api_uid(self) -> int:
        ctx = self.find("Deployment", "api")["spec"]["template"]["spec"].get("securityContext", {})
        return int(ctx.get("runAsUser", 10001))

    def wait_ready(self, timeout: float = 600) -> None:
        self.wait_job("migrate", timeout)
        for doc in self.manifests:
            if doc["kind"] == "Deployment" and doc["metadata"].get("namespace") == self.namespace:
                self.kube.wait_deployment(self.namespace, doc["metadata"]["name"], timeout)

    def wait_job(self, name: str, timeout: float = 600) -> None:
        def complete() -> bool:
            job = self.kube.json("get", "job", name, ns=self.namespace)
            st = job.get("status", {})
            for cond in st.get("conditions", []):
                if cond["type"] == "Failed" and cond["status"] == "True":
                    log = self.kube.run(
                        "logs", f"job/{name}", "--all-containers", ns=self.namespace, check=False
                    )
                    raise AssertionError(f"job {name} failed: {cond.get('message')}\n{log.stdout[-3000:]}")
            return bool(st.get("succeeded"))

        poll(f"job {self.namespace}/{name} to complete", complete, timeout, interval=2)

    def job_log(self, name: str) -> str:
        """The logs of the pod that completed Job *name*.

        Not `kubectl logs job/NAME`: that picks any pod of the Job, and a Job retried while
        the database was still starting (its back-off is meant for that) has a failed one too.
        """
        job = self.kube.json("get", "job", name, ns=self.namespace)
        uid = job["metadata"]["uid"]
        pods = self.kube.pods(self.namespace, f"batch.kubernetes.io/controller-uid={uid}")
        done = [p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
        phases = {p["metadata"]["name"]: p.get("status", {}).get("phase") for p in pods}
        assert len(done) == 1, f"job {self.namespace}/{name}: want one succeeded pod, found {phases}"
        return str(self.kube.run("logs", done[0], "--all-containers", ns=self.namespace).stdout)

    # --- clients inside the namespace --------------------------------------------------
    def allow_e2e_clients(self) -> None:
        """Policies for the run's own client pods (the stack's policies stay as rendered).

        ``e2e-clients-egress``: the e2e roles client/stranger may send anywhere (so a refused
        connection proves the *receiver's* policy). ``e2e-client-to-app``: the api (5050) and
        web (8080, 9000) pods accept the role ``client`` as they accept their real callers.
        """
        component_in = [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "web"]}]
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
                "metadata": {"name": "e2e-client-to-app"},
                "spec": {
                    "podSelector": {"matchExpressions": component_in},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {E2E_ROLE: "client"}}}],
                            "ports": [{"protocol": "TCP", "port": p} for p in (5050, 8080, 9000)],
                        }
                    ],
                },
            },
        ]
        self.kube.apply(policies, ns=self.namespace)

    def start_idle_pod(self, name: str, role: str = "client", **kw: Any) -> str:
        pod = client_pod(name, self.client_image, ["sleep", "36000"], role=role, **kw)
        self.kube.apply([pod], ns=self.namespace)
        wait_pod_ready(self.kube, self.namespace, name, timeout=300)
        return name

    def api_pods(self) -> dict[str, str]:
        """Ready api pods: name -> pod IP."""
        return {
            p["metadata"]["name"]: p["status"]["podIP"] for p in self.kube.ready_pods(self.namespace, API)
        }

    def module_cmd(self, module: str, *args: str, pod: str = "e2e-client", timeout: float = 300) -> Any:
        """``python -m <module> ARGS`` in a client pod; the last line of its output is JSON."""
        out = self.kube.exec(self.namespace, pod, "python3", "-m", module, *args, timeout=timeout)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def client(self, *args: str, base: str = WEB_URL, token: str | None = None, timeout: float = 300) -> Any:
        """One step of ``yuxi_k8s.probes.app_client`` (the app's HTTP API) from the client pod."""
        auth = ["--token", token] if token else []
        return self.module_cmd("yuxi_k8s.probes.app_client", "--base", base, *auth, *args, timeout=timeout)
