"""The e2e overlay changes overlays/dev only where tests/e2e/README.md says (static tier, no cluster).

Both are rendered from one copy of the tree (this run's namespaces and generated
credentials); every object is compared after undoing the listed changes. Anything
else that differs (a new patch, a changed field) fails here until the README lists it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import OVERLAY, prepare_tree, render, write_kustomization

pytestmark = pytest.mark.static

LITE_DROPPED = {
    (kind, name)
    for name in ("milvus", "milvus-etcd", "neo4j")
    for kind in ("StatefulSet", "Service", "NetworkPolicy")
}
STANDIN = {("Deployment", "model-standin"), ("Service", "model-standin"), ("NetworkPolicy", "model-standin"),
           ("NetworkPolicy", "app-to-model-standin")}  # fmt: skip
LITE_SETTINGS = ("MILVUS_URI", "NEO4J_URI", "NEO4J_USERNAME")
DEPENDENCY_IMAGES = {"postgres": "yuxi-k8s-postgres", "redis": "yuxi-k8s-redis", "minio": "yuxi-k8s-minio"}
HASHED = re.compile(r"^(api-settings|web-nginx|app-credentials|provider-keys|postgres-app)-[a-z0-9]{10}$")


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    name = doc["metadata"]["name"]
    match = HASHED.match(name)
    return doc["kind"], match.group(1) if match else name


def _unhash(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unhash(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unhash(v) for v in value]
    if isinstance(value, str) and (match := HASHED.match(value)):
        return match.group(1)
    return value


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _undo_listed_changes(doc: dict[str, Any]) -> dict[str, Any]:
    doc = _unhash(copy.deepcopy(doc))
    kind, name = _key(doc)
    for container in _containers(doc):
        image = container["image"]
        for dep, repo in DEPENDENCY_IMAGES.items():  # change 2: kit-built dependency images
            if f"/{repo}:" in image:
                container["image"] = f"<{dep} image>"
        env = container.get("env") or []
        if (kind, name) == ("Deployment", "api"):  # change 5: the test hooks
            env[:] = [e for e in env if e["name"] != "YUXI_K8S_TEST_HOOKS"]
        if (kind, name) == ("Deployment", "sandbox-provisioner"):  # change 6: memory backend
            for e in env:
                if e["name"] == "PROVISIONER_BACKEND":
                    e["value"] = "<backend>"
    if (kind, name) == ("Deployment", "api"):  # change 3: two replicas
        doc["spec"]["replicas"] = "<replicas>"
    if (kind, name) == ("ConfigMap", "api-settings"):  # change 1: LITE_MODE
        doc["data"].pop("LITE_MODE", None)
        for setting in LITE_SETTINGS:
            doc["data"].pop(setting, None)
    return doc


def _dev_side(doc: dict[str, Any]) -> dict[str, Any]:
    """The same normalisation on overlays/dev's own render."""
    doc = _undo_listed_changes(doc)
    for container in _containers(doc):
        image = container["image"]
        for dep in DEPENDENCY_IMAGES:
            if image.startswith((f"docker.io/library/{dep}:", f"docker.io/minio/{dep}:")):
                container["image"] = f"<{dep} image>"
    return doc


def test_the_e2e_overlay_changes_dev_only_as_listed(tmp_path: Path) -> None:
    tree = prepare_tree(tmp_path, "yx-diff-app")
    dev = render(tree / "overlays" / "dev")
    built = {dep: f"localhost/yuxi-k8s/{repo}:test" for dep, repo in DEPENDENCY_IMAGES.items()}
    folder = write_kustomization(tmp_path, "e2e", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], built)
    e2e = render(folder)
    dev_by_key = {_key(d): d for d in dev}
    e2e_by_key = {_key(d): d for d in e2e}
    assert set(dev_by_key) - set(e2e_by_key) == LITE_DROPPED  # change 1: Milvus, its etcd, Neo4j
    assert set(e2e_by_key) - set(dev_by_key) == STANDIN  # change 4: the model stand-in
    readme = (OVERLAY.parent / "README.md").read_text()
    assert "What `overlay/` changes" in readme
    for key in sorted(set(dev_by_key) & set(e2e_by_key)):
        assert _undo_listed_changes(e2e_by_key[key]) == _dev_side(dev_by_key[key]), f"{key} differs unlisted"
    api = e2e_by_key[("Deployment", "api")]
    assert api["spec"]["replicas"] == 2
    images = {c["image"] for d in e2e for c in _containers(d)}
    assert not any(i.startswith("docker.io/") for i in images), images  # nothing is pulled


def test_every_object_of_the_e2e_render_is_in_the_runs_namespaces(tmp_path: Path) -> None:
    """Nothing lands in `default` (or anywhere the run does not own and delete)."""
    tree = prepare_tree(tmp_path, "yx-ns-app")
    built = {dep: f"localhost/yuxi-k8s/{repo}:test" for dep, repo in DEPENDENCY_IMAGES.items()}
    folder = write_kustomization(tmp_path, "e2e", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], built)
    cluster_scoped = {"Namespace"}
    wrong = [
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
        for d in render(folder)
        if d["kind"] not in cluster_scoped
        and d["metadata"].get("namespace") not in ("yx-ns-app", "yx-ns-app-sbx")
    ]
    assert not wrong, wrong
