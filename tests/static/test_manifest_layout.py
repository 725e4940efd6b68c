"""The manifest tree's own promises: file naming, kustomize v5 fields only, the rollout
stages partition each overlay, the name prefix reaches the strings that embed names, and
the GitOps entry points point at folders that exist."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require, require_tools
from yuxi_k8s.validate.render import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("dev", "staging", "prod")
MANIFEST_DIRS = ("base", "components", "overlays", "gitops")
# Files that are not one Kubernetes object each.
NOT_OBJECTS = ("kustomization.yaml",)
NOT_OBJECT_SUFFIXES = (".patch.yaml", ".replacements.yaml")
FORBIDDEN_FIELDS = ("bases", "patchesStrategicMerge", "patchesJson6902", "commonLabels", "vars")


def kustomize(path: Path) -> list[dict[str, Any]]:
    require_tools("kubectl")
    dev_secrets = ROOT / "overlays/dev/secrets.env"
    require(dev_secrets.exists(), "overlays/dev/secrets.env: run scripts/dev-secrets.sh")
    return [d for d in yaml.safe_load_all(kustomize_build(path)) if d]


def ident(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def manifest_files() -> Iterator[Path]:
    for folder in MANIFEST_DIRS:
        yield from sorted((ROOT / folder).rglob("*.yaml"))


def test_one_object_per_file_named_name_dot_kind() -> None:
    checked = 0
    for path in manifest_files():
        if path.name in NOT_OBJECTS or path.name.endswith(NOT_OBJECT_SUFFIXES):
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.relative_to(ROOT)} holds {len(docs)} objects"
        name, kind = path.name.removesuffix(".yaml").rsplit(".", 1)
        assert docs[0]["kind"] == kind, f"{path.relative_to(ROOT)} holds a {docs[0]['kind']}"
        # Exceptions: the Namespace is renamed by each overlay's `namespace:`, and GitOps
        # objects carry the environment in their name while the folder/file name gives it.
        if kind != "Namespace" and "gitops" not in path.parts:
            held = docs[0]["metadata"]["name"]
            assert held == name, f"{path.relative_to(ROOT)} holds {held}"
        checked += 1
    assert checked > 40


def test_kustomizations_use_v5_fields_only() -> None:
    for path in manifest_files():
        if path.name != "kustomization.yaml":
            continue
        used = set(yaml.safe_load(path.read_text()) or {}) & set(FORBIDDEN_FIELDS)
        assert not used, f"{path.relative_to(ROOT)}: {used}"


def test_every_component_has_a_readme() -> None:
    for kustomization in (ROOT / "components").rglob("kustomization.yaml"):
        assert (kustomization.parent / "README.md").exists(), kustomization.parent.relative_to(ROOT)


@pytest.mark.parametrize("env", ENVS)
def test_rollout_stages_partition_the_overlay(env: str) -> None:
    whole = {ident(o): o for o in kustomize(ROOT / "overlays" / env)}
    migrate = {ident(o) for o in kustomize(ROOT / "gitops/flux" / env / "migrate")}
    app_objects = kustomize(ROOT / "gitops/flux" / env / "app")
    app = {ident(o) for o in app_objects}
    assert not migrate & app, "an object would be owned by both stages"
    assert migrate | app == set(whole), "an object of the overlay is in no stage"
    assert ("Job", "migrate") in migrate
    assert {("Deployment", "api"), ("Deployment", "web")} <= app
    # The app stage's references resolve to the (hash-suffixed) objects stage 1 applies.
    refs = {
        env_from[key]["name"]
        for o in app_objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
        for env_from in c.get("envFrom", [])
        for key in ("configMapRef", "secretRef")
        if key in env_from
    }
    applied = {name for kind, name in migrate if kind in ("ConfigMap", "Secret")}
    generated = {r for r in refs if r.startswith(("api-settings-", "provider-keys-"))}
    assert generated and generated <= applied | {"provider-keys"}


def test_name_prefix_reaches_embedded_names(tmp_path: Path) -> None:
    for folder in ("base", "components", "overlays"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    site = tmp_path / "components/site/kustomization.yaml"
    site.write_text(site.read_text().replace('namePrefix: ""', 'namePrefix: "yx-"'))
    objects = kustomize(tmp_path / "overlays/dev")
    names = [o["metadata"]["name"] for o in objects if o["kind"] != "Namespace"]
    assert all(n.startswith("yx-") for n in names), [n for n in names if not n.startswith("yx-")]
    data = {o["metadata"]["name"].rsplit("-", 1)[0]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    settings = data["yx-api-settings"]
    assert settings["REDIS_HOST"] == "yx-redis"
    assert settings["NEO4J_URI"] == "bolt://yx-neo4j:7687"
    assert settings["MILVUS_URI"] == "http://yx-milvus:19530"
    assert settings["MINIO_URI"] == "http://yx-minio:9000"
    assert data["yx-web-nginx"]["api-proxy-pass.conf"].strip() == "proxy_pass http://yx-api:5050/api/;"
    milvus = next(o for o in objects if ident(o) == ("StatefulSet", "yx-milvus"))
    env = {e["name"]: e.get("value") for e in milvus["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ETCD_ENDPOINTS"] == "yx-milvus-etcd:2379"
    assert env["MINIO_ADDRESS"] == "yx-minio:9000"


def test_without_prefix_the_interface_names_hold() -> None:
    objects = kustomize(ROOT / "overlays/dev")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert {"api", "web", "postgres", "redis", "milvus", "neo4j", "minio"} <= set(services)
    assert services["api"]["spec"]["ports"][0]["port"] == 5050
    assert services["web"]["spec"]["ports"][0]["port"] == 80
    configmaps = [o for o in objects if o["kind"] == "ConfigMap"]
    nginx = next(o for o in configmaps if o["metadata"]["name"].startswith("web-nginx"))
    assert nginx["data"]["api-proxy-pass.conf"].strip() == "proxy_pass http://api:5050/api/;"
    assert "client_max_body_size 20M;" in nginx["data"]["nginx.conf"]
    assert "proxy_read_timeout 600s;" in nginx["data"]["nginx.conf"]


@pytest.mark.parametrize("env", ENVS)
def test_gitops_entry_points_point_at_real_folders(env: str) -> None:
    app = yaml.safe_load((ROOT / f"gitops/argocd/{env}.Application.yaml").read_text())
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
    overlay = yaml.safe_load((ROOT / f"overlays/{env}/kustomization.yaml").read_text())
    assert app["spec"]["destination"]["namespace"] == overlay["namespace"]
    flux = {ident(o): o for o in kustomize(ROOT / f"gitops/flux/{env}")}
    migrate = flux[("Kustomization", f"yuxi-know-{env}-migrate")]["spec"]
    app_ks = flux[("Kustomization", f"yuxi-know-{env}-app")]["spec"]
    for spec in (migrate, app_ks):
        assert (ROOT / spec["path"] / "kustomization.yaml").exists()
    assert migrate["wait"] is True and migrate["force"] is True
    assert app_ks["dependsOn"] == [{"name": f"yuxi-know-{env}-migrate"}]
