"""The manifest tree's own promises: file naming, kustomize v5 fields only, the rollout
stages partition each overlay, the name prefix reaches the strings that embed names, and
the GitOps entry points point at folders that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require, require_tools
from yuxi_k8s.app import PINNED_VERSION
from yuxi_k8s.app.contract import load
from yuxi_k8s.validate.render import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("dev", "staging", "prod")
MANIFEST_DIRS = ("base", "components", "overlays", "gitops")
# Files that are not one Kubernetes object each.
NOT_OBJECTS = ("kustomization.yaml",)
NOT_OBJECT_SUFFIXES = (".patch.yaml", ".replacements.yaml", ".kustomizeconfig.yaml")
FORBIDDEN_FIELDS = ("bases", "patchesStrategicMerge", "patchesJson6902", "commonLabels", "vars")


def kustomize(path: Path) -> list[dict[str, Any]]:
    require_tools("kubectl")
    dev_secrets = ROOT / "overlays/dev/app/secrets.env"
    require(dev_secrets.exists(), "overlays/dev/app/secrets.env: run scripts/dev-secrets.sh")
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
    # prod has a first stage: the namespace, the database and the Backup taken before the migration.
    database_dir = ROOT / "gitops/flux" / env / "database"
    database = {ident(o) for o in kustomize(database_dir)} if env == "prod" else set()
    assert database_dir.is_dir() == (env == "prod")
    assert not migrate & app and not database & (migrate | app), "an object would be owned by two stages"
    assert database | migrate | app == set(whole), "an object of the overlay is in no stage"
    assert ("Job", "migrate") in migrate
    if env == "prod":
        assert {("Cluster", "postgres"), ("ObjectStore", "postgres-backup")} <= database
        assert any(kind == "Backup" and name.startswith("pre-migrate-") for kind, name in database)
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


def _settings_and_nginx(objects: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    data = {o["metadata"]["name"].rsplit("-", 1)[0]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    settings = next(v for k, v in data.items() if k.endswith("api-settings"))
    nginx = next(v for k, v in data.items() if k.endswith("web-nginx"))
    return settings, nginx


@pytest.mark.parametrize("env", ("dev", "prod"))
def test_name_prefix_reaches_embedded_names(tmp_path: Path, env: str) -> None:
    """Each environment has its own prefix (overlays/<env>/app); strings follow it."""
    for folder in ("base", "components", "overlays"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    app = tmp_path / f"overlays/{env}/app/kustomization.yaml"
    app.write_text(app.read_text().replace('namePrefix: ""', 'namePrefix: "yx-"'))
    objects = kustomize(tmp_path / f"overlays/{env}")
    app_ns = next(o["metadata"]["namespace"] for o in objects if ident(o) == ("Deployment", "yx-api"))
    names = [
        o["metadata"]["name"]
        for o in objects
        if o["metadata"].get("namespace") == app_ns and o["kind"] != "Namespace"
    ]
    assert all(n.startswith("yx-") for n in names), [n for n in names if not n.startswith("yx-")]
    settings, nginx = _settings_and_nginx(objects)
    assert settings["POSTGRES_HOST"] == "yx-postgres"
    assert settings["REDIS_HOST"] == "yx-redis"
    assert settings["MINIO_URI"] == "http://yx-minio:9000"
    assert settings["SANDBOX_PROVISIONER_URL"] == "http://yx-sandbox-provisioner:8002"
    assert nginx["api-proxy-pass.conf"].strip() == "proxy_pass http://yx-api:5050/api/;"
    assert nginx["minio-proxy-pass.conf"].splitlines()[0] == 'set $minio_service "yx-minio";'
    # The database Secret is <postgres Service>-app everywhere, CloudNativePG's included.
    api = next(o for o in objects if ident(o) == ("Deployment", "yx-api"))
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in api["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith("POSTGRES_") and "valueFrom" in e
    }
    assert {r.split("-app")[0] for r in refs} == {"yx-postgres"}, refs
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "yx-sandbox-provisioner", "namespace": app_ns}
    ]
    # The sandboxes' admission policy checks the provisioner's account by its final name, and
    # admits the image the provisioner runs sandboxes from.
    policy = next(o for o in objects if ident(o) == ("ConfigMap", "sandbox-policy"))["data"]
    provisioner = next(o for o in objects if ident(o) == ("Deployment", "yx-sandbox-provisioner"))
    sandbox_image = next(
        e["value"]
        for e in provisioner["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "SANDBOX_IMAGE"
    )
    assert policy["provisioner"] == f"system:serviceaccount:{app_ns}:yx-sandbox-provisioner", policy
    assert policy["image"] == sandbox_image, (policy, sandbox_image)
    vap = next(o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding")
    sandboxes = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sandbox-policy"
    )
    assert vap["spec"]["paramRef"]["namespace"] == sandboxes["metadata"]["namespace"], vap
    assert (
        vap["metadata"]["name"]
        == vap["spec"]["policyName"]
        == f"{sandboxes['metadata']['namespace']}.sandbox-provisioner"
    )
    if env == "dev":
        assert settings["HOST_IP"] == "yx-web"
        assert settings["NEO4J_URI"] == "bolt://yx-neo4j:7687"
        assert settings["MILVUS_URI"] == "http://yx-milvus:19530"
        milvus = next(o for o in objects if ident(o) == ("StatefulSet", "yx-milvus"))
        env_vars = {
            e["name"]: e.get("value") for e in milvus["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env_vars["ETCD_ENDPOINTS"] == "yx-milvus-etcd:2379"
        assert env_vars["MINIO_ADDRESS"] == "yx-minio:9000"
    else:
        cluster = next(o for o in objects if o["kind"] == "Cluster")
        assert cluster["metadata"]["name"] == "yx-postgres"  # CloudNativePG writes yx-postgres-app


def test_without_prefix_the_interface_names_hold() -> None:
    objects = kustomize(ROOT / "overlays/dev")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert {"api", "web", "postgres", "redis", "milvus", "neo4j", "minio", "sandbox-provisioner"} <= set(
        services
    )
    assert services["api"]["spec"]["ports"][0]["port"] == 5050
    assert {p["port"] for p in services["web"]["spec"]["ports"]} == {80, 9000}
    settings, nginx = _settings_and_nginx(objects)
    assert nginx["api-proxy-pass.conf"].strip() == "proxy_pass http://api:5050/api/;"
    assert settings["HOST_IP"] == "web"


def test_nginx_keeps_upstreams_streaming_settings() -> None:
    """The /api/ location carries what upstream's docker/nginx/default.conf sets (the contract's list)."""
    web = load().components["web"]
    api = web["api_location"]
    conf = (ROOT / "base/config/nginx/nginx.conf").read_text()
    block = conf[conf.index("location /api/ {") :]
    block = block[: block.index("}")]
    directives = {
        line.split()[0]: line.split(None, 1)[1].rstrip(";").strip()
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    for name, value in api["directives"].items():
        assert directives.get(name, "").removesuffix("s") == value, f"{name} {directives.get(name)!r}"
    assert "proxy_set_header Connection ''" in block
    assert f"client_max_body_size {web['api_location']['client_max_body_size']};" in conf


def _location(conf: str, server_port: int, location: str) -> list[str]:
    """The directives (comments dropped) of *location* inside the server listening on *server_port*."""
    server = conf[conf.index(f"listen {server_port};") :]
    block = server[server.index(f"location {location} {{") :]
    block = block[: block.index("\n        }")]
    return [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.split("#")[0].strip()]


def test_the_object_proxy_never_spills_responses_to_the_small_tmp() -> None:
    """Issue 20 item 16: port 9000 buffered MinIO responses into /tmp (a 256Mi emptyDir) up to
    nginx's 1 GiB default per response; a few slow readers of a large object evicted the web pod.
    The web image ships the same files (images.NGINX_CONFIG), so this reads what both use."""
    from yuxi_k8s.app import images

    assert images.NGINX_CONFIG == "base/config/nginx"
    conf = (ROOT / images.NGINX_CONFIG / "nginx.conf").read_text()
    directives = _location(conf, 9000, "^~ /public/")
    assert "include /etc/nginx/yuxi/minio-proxy-pass.conf;" in directives  # the right block
    assert "proxy_max_temp_file_size 0;" in directives or "proxy_buffering off;" in directives, directives
    assert not any(d.startswith("proxy_max_temp_file_size") and d != "proxy_max_temp_file_size 0;"
                   for d in directives)  # fmt: skip


@pytest.mark.parametrize("env", ENVS)
def test_gitops_entry_points_point_at_real_folders(env: str) -> None:
    app = yaml.safe_load((ROOT / f"gitops/argocd/{env}.Application.yaml").read_text())
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
    overlay = yaml.safe_load((ROOT / f"overlays/{env}/app/kustomization.yaml").read_text())
    assert app["spec"]["destination"]["namespace"] == overlay["namespace"]
    flux = {ident(o): o for o in kustomize(ROOT / f"gitops/flux/{env}")}
    migrate = flux[("Kustomization", f"yuxi-know-{env}-migrate")]["spec"]
    app_ks = flux[("Kustomization", f"yuxi-know-{env}-app")]["spec"]
    for spec in (migrate, app_ks):
        assert (ROOT / spec["path"] / "kustomization.yaml").exists()
    assert migrate["wait"] is True and "force" not in migrate  # only the Job is forced (YK-GIT-003)
    assert app_ks["dependsOn"] == [{"name": f"yuxi-know-{env}-migrate"}]


@pytest.mark.parametrize("env", ENVS)
def test_gitops_reach_exactly_the_overlays_namespaces(env: str) -> None:
    """The AppProject's destinations and the Flux deployer's RoleBindings name the namespaces the overlay
    renders (the app's and SANDBOX_NAMESPACE): a SANDBOX_NAMESPACE changed on one side only fails here."""
    rendered = {
        o["metadata"]["name"] for o in kustomize(ROOT / f"overlays/{env}") if o["kind"] == "Namespace"
    }
    project = yaml.safe_load((ROOT / f"gitops/argocd/{env}.AppProject.yaml").read_text())
    app = yaml.safe_load((ROOT / f"gitops/argocd/{env}.Application.yaml").read_text())
    assert app["spec"]["project"] == project["metadata"]["name"]
    assert {d["namespace"] for d in project["spec"]["destinations"]} == rendered
    flux = kustomize(ROOT / f"gitops/flux/{env}")
    [account] = [o for o in flux if o["kind"] == "ServiceAccount"]
    bound = {
        o["metadata"]["namespace"]
        for o in flux
        if o["kind"] == "RoleBinding" and o["subjects"][0]["name"] == account["metadata"]["name"]
    }
    assert bound == rendered
    for ks in (o for o in flux if o["kind"] == "Kustomization"):
        assert ks["spec"]["serviceAccountName"] == account["metadata"]["name"], ks["metadata"]["name"]


# --- patches, pins, generated credentials ----------------------------------------------------

POSITIONAL = re.compile(r"/\d+(/|$)")
PATCH_DIRS = ("base", "components", "overlays", "gitops", "tests/static/combinations")


def _patches() -> Iterator[tuple[str, Any]]:
    """(where, JSON6902 operation) of every patch in the tree: *.patch.yaml files and inline ones."""
    for folder in PATCH_DIRS:
        for path in sorted((ROOT / folder).rglob("*.yaml")):
            where = str(path.relative_to(ROOT))
            if path.name.endswith(".patch.yaml"):
                for doc in yaml.safe_load_all(path.read_text()):
                    for op in doc if isinstance(doc, list) else []:
                        yield where, op
            elif path.name == "kustomization.yaml":
                for entry in (yaml.safe_load(path.read_text()) or {}).get("patches") or []:
                    for doc in yaml.safe_load_all(str(entry.get("patch") or "")):
                        for op in doc if isinstance(doc, list) else []:
                            yield where, op


def test_no_patch_addresses_a_list_item_by_position() -> None:
    """`containers/0` patches whatever comes first: a reordered base makes it patch the wrong item."""
    ops = list(_patches())
    assert ops, "no JSON6902 patch found: the scan is broken"
    positional = [
        f"{where}: {op.get('op')} {op.get('path')}"
        for where, op in ops
        if POSITIONAL.search(str(op.get("path")))
    ]
    assert not positional, "name the item with a strategic-merge patch instead:\n" + "\n".join(positional)


def test_positional_scan_sees_a_positional_patch() -> None:
    assert POSITIONAL.search("/spec/template/spec/containers/0/name")
    assert not POSITIONAL.search("/metadata/annotations/yuxi-k8s.io~1allow-YK-APP-009")


@pytest.mark.parametrize("env", ENVS)
def test_overlays_run_the_pinned_application_version(env: str) -> None:
    """Every image of the application is pinned to yuxi_k8s.app.PINNED_VERSION, where it runs."""
    contract = load()
    images = {str(c["image"]) for c in contract.components.values()}
    doc = yaml.safe_load((ROOT / f"overlays/{env}/kustomization.yaml").read_text())
    pins = {e["name"]: e for e in doc.get("images") or []}
    assert images <= set(pins), f"overlays/{env} pins {sorted(pins)}, the contract names {sorted(images)}"
    for name in images:
        assert str(pins[name].get("newTag")) == PINNED_VERSION, pins[name]
        assert str(pins[name]["newName"]).endswith("/" + name), pins[name]


def test_dev_secrets_writes_passwords_only_and_knows_the_provider_keys(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    (tree / "overlays/dev/app").mkdir(parents=True)
    shutil.copy(ROOT / "scripts/dev-secrets.sh", tree / "scripts")
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-test"}
    subprocess.run(["bash", str(tree / "scripts/dev-secrets.sh")], check=True, env=env, capture_output=True)
    app = tree / "overlays/dev/app"
    values = {}
    for name in ("postgres.env", "secrets.env", "provider-keys.env"):
        for line in (app / name).read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = value
    assert values.pop("OPENAI_API_KEY") == "sk-test"
    assert values.pop("MINIO_ACCESS_KEY") == "yuxi" and values.pop("MILVUS_TOKEN") == ""
    assert all(re.fullmatch(r"[0-9a-f]{48,64}", v) for v in values.values()), values
    assert not any("URL" in k for k in values), "URLs are assembled by the pods, not written here"
    first = (app / "secrets.env").read_text()
    subprocess.run(["bash", str(tree / "scripts/dev-secrets.sh")], check=True, env=env, capture_output=True)
    assert (app / "secrets.env").read_text() == first, "an existing file was rewritten without --force"
    script = (ROOT / "scripts/dev-secrets.sh").read_text()
    listed = set(re.search(r"PROVIDER_KEYS=\(([^)]*)\)", script).group(1).split())
    assert listed == set(load().provider_keys()) | {"TAVILY_API_KEY"}


def test_docs_name_the_deployed_version_and_how_to_build_its_images() -> None:
    """README, deploy.md, manifests.md and every component README say which version and how to pin it."""
    docs = [ROOT / "README.md", ROOT / "docs/deploy.md", ROOT / "docs/manifests.md"]
    docs += sorted((ROOT / "components").rglob("README.md"))
    for path in docs:
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert PINNED_VERSION in text, f"{where} does not name Yuxi-Know {PINNED_VERSION}"
        assert "yuxi-k8s images build" in text and "images.md" in text, (
            f"{where}: how to build and pin images"
        )
