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

ETCD_DROPPED = {(kind, "milvus-etcd") for kind in ("StatefulSet", "Service", "NetworkPolicy")}
STANDIN = {("Deployment", "model-standin"), ("Service", "model-standin"), ("NetworkPolicy", "model-standin"),
           ("NetworkPolicy", "app-to-model-standin")}  # fmt: skip
SANDBOX_STANDIN = "localhost/yuxi-k8s/yuxi-k8s-sandbox-standin:test"  # the run's SANDBOX_IMAGE (change 6)
DEPENDENCY_IMAGES = {
    "postgres": "yuxi-k8s-postgres",
    "redis": "yuxi-k8s-redis",
    "minio": "yuxi-k8s-minio",
    "neo4j": "yuxi-k8s-neo4j",
    "milvus": "yuxi-k8s-milvus",
}
DEV_IMAGES = ("docker.io/library/", "docker.io/minio/", "docker.io/milvusdb/")
# Change 1: what the patches replace in the Milvus and Neo4j containers (compared on their own below).
MILVUS_CHANGED = ("command", "args", "env", "ports", "startupProbe", "readinessProbe", "resources")
NEO4J_CHANGED = ("startupProbe", "readinessProbe", "resources")
NEO4J_ENV_CHANGED = {
    "NEO4J_server_http_listen__address",
    "NEO4J_server_memory_heap_max__size",
    "JDK_JAVA_OPTIONS",
}
SIDECAR = "embeddings-standin"  # change 7, in the api and worker pods
TIKTOKEN_CACHE_DIR = "/app/.venv/lib/python3.13/site-packages/llama_index/core/_static/tiktoken_cache"
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
    if (kind, name) in (("Deployment", "api"), ("Deployment", "worker")):  # change 7: the sidecar
        pod = doc["spec"]["template"]["spec"]
        pod["containers"] = [c for c in pod["containers"] if c["name"] != SIDECAR]
        pod.pop("hostAliases", None)
    for container in _containers(doc):
        image = container["image"]
        for dep, repo in DEPENDENCY_IMAGES.items():  # change 2: kit-built dependency images
            if f"/{repo}:" in image:
                container["image"] = f"<{dep} image>"
        env = container.get("env") or []
        if (kind, name) in (("Deployment", "api"), ("Deployment", "worker")):  # change 7
            env[:] = [e for e in env if e["name"] != "TIKTOKEN_CACHE_DIR"]
        if (kind, name) == ("StatefulSet", "milvus"):  # change 1: milvus-lite's server
            for field in MILVUS_CHANGED:
                container[field] = "<milvus-lite>"
        if (kind, name) == ("StatefulSet", "neo4j"):  # change 1: Bolt only, heap
            for field in NEO4J_CHANGED:
                container[field] = "<neo4j>"
            container["ports"] = [p for p in container["ports"] if p["name"] == "bolt"]
            env[:] = [e for e in env if e["name"] not in NEO4J_ENV_CHANGED]
        if (kind, name) == ("Deployment", "api"):  # change 5: the test hooks
            env[:] = [e for e in env if e["name"] != "YUXI_K8S_TEST_HOOKS"]
    if (kind, name) == ("Deployment", "api"):  # change 3: two replicas
        doc["spec"]["replicas"] = "<replicas>"
    return doc


def _dev_side(doc: dict[str, Any]) -> dict[str, Any]:
    """The same normalisation on overlays/dev's own render."""
    doc = _undo_listed_changes(doc)
    for container in _containers(doc):
        image = container["image"]
        for dep in DEPENDENCY_IMAGES:
            if image.startswith(tuple(f"{registry}{dep}:" for registry in DEV_IMAGES)):
                container["image"] = f"<{dep} image>"
    return doc


def test_the_e2e_overlay_changes_dev_only_as_listed(tmp_path: Path) -> None:
    tree = prepare_tree(tmp_path, "yx-diff-app", SANDBOX_STANDIN)
    dev = render(tree / "overlays" / "dev")
    built = {dep: f"localhost/yuxi-k8s/{repo}:test" for dep, repo in DEPENDENCY_IMAGES.items()}
    folder = write_kustomization(tmp_path, "e2e", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], built)
    e2e = render(folder)
    dev_by_key = {_key(d): d for d in dev}
    e2e_by_key = {_key(d): d for d in e2e}
    assert set(dev_by_key) - set(e2e_by_key) == ETCD_DROPPED  # change 1: Milvus' etcd
    assert set(e2e_by_key) - set(dev_by_key) == STANDIN  # change 4: the model stand-in
    readme = (OVERLAY.parent / "README.md").read_text()
    assert "What `overlay/` changes" in readme
    for key in sorted(set(dev_by_key) & set(e2e_by_key)):
        assert _undo_listed_changes(e2e_by_key[key]) == _dev_side(dev_by_key[key]), f"{key} differs unlisted"
    api = e2e_by_key[("Deployment", "api")]
    assert api["spec"]["replicas"] == 2
    images = {c["image"] for d in e2e for c in _containers(d)}
    assert not any(i.startswith("docker.io/") for i in images), images  # nothing is pulled
    assert "LITE_MODE" not in e2e_by_key[("ConfigMap", "api-settings")]["data"]  # full mode


def _container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_the_e2e_milvus_neo4j_and_sidecars_are_what_the_readme_says(tmp_path: Path) -> None:
    """The fields change 1 and 7 replace, checked for their e2e values."""
    tree = prepare_tree(tmp_path, "yx-fields-app", SANDBOX_STANDIN)
    built = {dep: f"localhost/yuxi-k8s/{repo}:test" for dep, repo in DEPENDENCY_IMAGES.items()}
    folder = write_kustomization(tmp_path, "e2e", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], built)
    e2e = {_key(d): d for d in render(folder)}
    milvus = _container(e2e[("StatefulSet", "milvus")], "milvus")
    assert milvus["command"] == ["yuxi-milvus"]
    assert milvus["args"] == ["--data-dir", "/var/lib/milvus", "--host", "0.0.0.0", "--port", "19530"]
    assert not milvus.get("env"), milvus.get("env")  # no etcd, no MinIO
    assert [p["name"] for p in milvus["ports"]] == ["grpc"]
    neo4j = _container(e2e[("StatefulSet", "neo4j")], "neo4j")
    assert [p["name"] for p in neo4j["ports"]] == ["bolt"]
    env = {e["name"]: e.get("value") for e in neo4j["env"]}
    assert env["JDK_JAVA_OPTIONS"].startswith("-Xmx") and "NEO4J_server_memory_heap_max__size" not in env
    for container, port in ((milvus, "grpc"), (neo4j, "bolt")):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe].get("tcpSocket") == {"port": port}, (probe, container[probe])
            assert "httpGet" not in container[probe], (probe, container[probe])
    for workload, main in (("api", "api"), ("worker", "worker")):
        pod = e2e[("Deployment", workload)]["spec"]["template"]["spec"]
        assert pod["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": ["host.docker.internal"]}]
        sidecar = _container(e2e[("Deployment", workload)], SIDECAR)
        assert sidecar["image"].startswith("localhost/yuxi-k8s/yuxi-know-api:"), sidecar["image"]
        assert sidecar["command"][-6:] == ["--host", "127.0.0.1", "--port", "8000", "--chunk-delay", "0"]
        main_env = {e["name"]: e.get("value") for e in _container(e2e[("Deployment", workload)], main)["env"]}
        assert main_env["TIKTOKEN_CACHE_DIR"] == TIKTOKEN_CACHE_DIR


def test_every_object_of_the_e2e_render_is_in_the_runs_namespaces(tmp_path: Path) -> None:
    """Nothing lands in `default` (or anywhere the run does not own and delete); the only
    cluster-scoped objects are the Namespaces and the sandboxes' admission policy, named after
    the run's sandboxes' namespace (the stack deletes them: AppStack.delete_cluster_scoped)."""
    tree = prepare_tree(tmp_path, "yx-ns-app", SANDBOX_STANDIN)
    built = {dep: f"localhost/yuxi-k8s/{repo}:test" for dep, repo in DEPENDENCY_IMAGES.items()}
    folder = write_kustomization(tmp_path, "e2e", [tree / OVERLAY.relative_to(OVERLAY.parents[2])], built)
    rendered = render(folder)
    wrong = [
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
        for d in rendered
        if d["kind"] != "Namespace"
        and d["metadata"].get("namespace") not in ("yx-ns-app", "yx-ns-app-sbx")
        and not d["metadata"]["name"].startswith("yx-ns-app-sbx.")
    ]
    assert not wrong, wrong
    policy = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "sandbox-policy"]
    assert policy[0]["data"]["image"] == SANDBOX_STANDIN, policy
