"""`kubectl apply --dry-run=server` of every overlay, Pod Security admission included.

The API server runs defaulting, validation (strict field validation) and
admission on each object without storing it. Each overlay goes into its own
throwaway namespace (rewritten by a run kustomization); the namespace itself is
created for real from the rendered Namespace object, so its Pod Security labels
are the overlay's. The CRDs the overlays use are installed first (pinned, from
the validation suite's crds helper). Workload objects are only *warned* about by
Pod Security, so each pod template is also dry-run as a Pod, which enforcement
must admit.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kube import Kube
from tests.e2e.run import RUN_ID, forget_namespace, register_namespace
from tests.e2e.stack import ROOT, rename_namespaces, render, sandbox_namespace
from yuxi_k8s.cluster.kube import poll

OVERLAYS = ("dev", "staging", "prod")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


@pytest.fixture(scope="module")
def crds_installed(kube: Kube) -> list[str]:
    from yuxi_k8s.validate.crds import crd_paths

    names = []
    for path in crd_paths():
        # Server-side apply: some CRDs are larger than the last-applied annotation allows.
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(path), timeout=120)
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    for name in names:
        poll(
            f"CRD {name} to be established",
            lambda name=name: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in kube.json("get", "crd", name).get("status", {}).get("conditions", [])
            ),
            60,
        )
    return names


@pytest.fixture(scope="module")
def namespaces(kube: Kube, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    if not request.config.getoption("--keep-cluster"):
        for name in created:
            kube.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
            forget_namespace(name)


def pod_from_template(owner: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    spec = owner.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    if not template:
        return None
    pod_spec = copy.deepcopy(template["spec"])
    # Pod Security does not look at the ServiceAccount; the ServiceAccount admission would
    # refuse the Pod because the dry-run did not create it.
    pod_spec.pop("serviceAccountName", None)
    pod_spec.pop("serviceAccount", None)
    # A StatefulSet's claim templates become the claims its pods mount.
    for claim in spec.get("volumeClaimTemplates", []):
        name = claim["metadata"]["name"]
        pod_spec.setdefault("volumes", []).append(
            {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-{owner['metadata']['name']}-0"}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"psa-{owner['kind'].lower()}-{owner['metadata']['name']}"[:63],
            "namespace": namespace,
            "labels": copy.deepcopy(template.get("metadata", {}).get("labels", {})),
        },
        "spec": pod_spec,
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_side_dry_run_with_pod_security(
    overlay: str, kube: Kube, run_dir: Path, crds_installed: list[str], namespaces: list[str]
) -> None:
    assert (ROOT / "overlays" / overlay / "kustomization.yaml").exists(), f"overlays/{overlay} is missing"
    namespace = f"yx-{RUN_ID}-dry-{overlay}"
    tree = run_dir / f"dry-run-{overlay}" / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for part in ("base", "components", "overlays", "scripts/dev-secrets.sh"):
        (tree / part).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy2)(ROOT / part, tree / part)
    subprocess.run(["bash", str(tree / "scripts/dev-secrets.sh"), "--force"], check=True, capture_output=True)
    rename_namespaces(tree, overlay, namespace)
    # No image swap here: the dry-run pulls nothing, so the overlays' own pinned images stay.
    docs = render(tree / "overlays" / overlay)
    ns_docs = [d for d in docs if d["kind"] == "Namespace"]
    assert sorted(d["metadata"]["name"] for d in ns_docs) == sorted([namespace, sandbox_namespace(namespace)])
    for doc in ns_docs:
        labels = doc["metadata"].get("labels", {})
        level = "restricted" if doc["metadata"]["name"] == namespace else "baseline"
        assert labels.get("pod-security.kubernetes.io/enforce") == level, labels
    kube.apply(ns_docs)
    for doc in ns_docs:
        name = doc["metadata"]["name"]
        namespaces.append(name)
        register_namespace(name)
        poll(f"namespace {name}", lambda name=name: kube.json("get", "namespace", name), 30)

    text = yaml.safe_dump_all(docs, sort_keys=False)
    proc = kube.run("apply", "--dry-run=server", "-f", "-", input=text, timeout=180, check=False)
    assert proc.returncode == 0, f"server-side dry-run of overlays/{overlay} failed:\n{proc.stderr}"
    # The sandboxes' namespace ships its `default` ServiceAccount (no token mounted); the cluster
    # makes one in every new namespace first, so kubectl's client-side apply says it adopts it.
    # That notice only: every other warning (Pod Security above all) fails.
    adopted = "resource serviceaccounts/default is missing the kubectl.kubernetes.io/last-applied"
    warnings = [
        line
        for line in proc.stderr.splitlines()
        if ("PodSecurity" in line or "Warning" in line) and adopted not in line
    ]
    assert not warnings, f"overlays/{overlay}: admission warnings:\n" + "\n".join(warnings)

    pods = [
        p
        for d in docs
        if d["kind"] in WORKLOADS | {"CronJob"}
        if (p := pod_from_template(d, d["metadata"].get("namespace", namespace)))
    ]
    assert pods, f"overlays/{overlay} renders no workload"
    pod_text = yaml.safe_dump_all(pods, sort_keys=False)
    proc = kube.run("create", "--dry-run=server", "-f", "-", input=pod_text, timeout=120, check=False)
    assert proc.returncode == 0, f"overlays/{overlay}: a pod template is refused by admission:\n{proc.stderr}"
    assert "PodSecurity" not in proc.stderr, proc.stderr


def test_overlays_list_is_complete() -> None:
    """Every overlay in the tree is dry-run above (a new one must be added to OVERLAYS)."""
    present = {p.parent.name for p in (ROOT / "overlays").glob("*/kustomization.yaml")}
    assert present <= set(OVERLAYS), f"overlays not covered by the dry-run: {present - set(OVERLAYS)}"
