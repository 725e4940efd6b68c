"""The e2e overlay changes overlays/dev only where tests/e2e/README.md says (static tier, no cluster).

Both are rendered from a copy of the tree with generated credentials; every
object is then compared after undoing the listed changes. Anything else that
differs (a new patch, a changed field) fails here until the README lists it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import OVERLAY, prepare_tree, render, write_kustomization

pytestmark = pytest.mark.static

DROPPED = {
    (kind, name)
    for name in ("milvus", "milvus-etcd", "neo4j", "minio")
    for kind in ("StatefulSet", "Service", "NetworkPolicy")
}
EMPTIED_SETTINGS = ("MILVUS_URI", "NEO4J_URI", "MINIO_URI")
RUNTIME_IMAGE = "localhost/yuxi-k8s/runtime:test"
HASHED = re.compile(r"^(api-settings|web-nginx|app-credentials|provider-keys)-[a-z0-9]{10}$")


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
    for container in _containers(doc):
        container["image"] = "<image>"  # change 1: every image is the runtime image
        if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "postgres":
            container.pop("command", None)  # change 2: yuxi-postgres entrypoint
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "api":
            container.pop("readinessProbe", None)  # change 4: /api/system/ready
    if _key(doc) == ("ConfigMap", "api-settings"):
        for name in EMPTIED_SETTINGS:  # change 3: URIs of the dropped dependencies
            doc["data"].pop(name, None)
    return doc


def test_e2e_overlay_changes_only_what_its_readme_lists(tmp_path: Path) -> None:
    tree = prepare_tree(tmp_path)
    dev = {
        _key(d): d
        for d in render(write_kustomization(tmp_path, "dev", "ns", RUNTIME_IMAGE, [tree / "overlays/dev"]))
    }
    e2e_folder = write_kustomization(
        tmp_path, "e2e", "ns", RUNTIME_IMAGE, [tree / OVERLAY.relative_to(OVERLAY.parents[2])]
    )
    e2e = {_key(d): d for d in render(e2e_folder)}

    assert set(dev) - set(e2e) == DROPPED, "the overlay drops exactly Milvus, its etcd, Neo4j and MinIO"
    assert set(e2e) <= set(dev), f"objects the overlay adds: {set(e2e) - set(dev)}"
    images = {c["image"] for d in e2e.values() for c in _containers(d)}
    assert images == {RUNTIME_IMAGE}, images
    assert e2e[("StatefulSet", "postgres")]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "yuxi-postgres"
    ]
    api = e2e[("Deployment", "api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/system/ready"
    assert (
        api["command"] == dev[("Deployment", "api")]["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    settings = e2e[("ConfigMap", "api-settings")]["data"]
    assert all(settings[name] == "" for name in EMPTIED_SETTINGS), settings
    for key, doc in e2e.items():
        assert _undo_listed_changes(doc) == _undo_listed_changes(dev[key]), (
            f"{key} differs beyond the README's list"
        )
