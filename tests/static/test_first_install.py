"""Issue 21's defects found by reading, each replayed on the render (what the rules do not cover).

Each test states the operator behaviour it relies on; the rehearsal on a cluster with the real
operators is a separate tier. The rules added for the same issue (YK-NET-010, ...) have their own
fixtures under tests/static/rules/.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
import yaml

from tests.support import require, require_tools
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.model import selector_matches
from yuxi_k8s.validate.render import render_one

Objects = list[dict[str, Any]]
WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
STAGE = "yuxi-k8s.io/rollout-stage"
PUBLIC = ("overlays/staging", "overlays/prod", "tests/static/combinations/prod-gateway")


@cache
def render(path: str) -> Objects:
    require_tools("kubectl")
    rendered = render_one(str(REPO_ROOT / path))
    require(rendered.error is None, f"{path} renders ({rendered.error})")
    return rendered.objects


def notes(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def wave(obj: dict[str, Any]) -> int:
    return int(notes(obj).get(WAVE, "0"))


def of_kind(objs: Objects, kind: str) -> Objects:
    return [o for o in objs if o["kind"] == kind]


def named(objs: Objects, kind: str, name: str) -> dict[str, Any]:
    return next(o for o in of_kind(objs, kind) if o["metadata"]["name"] == name)


# --- 2. HTTP-01 certificates issue under default-deny, and never hold the migration -----------------


@pytest.mark.parametrize("path", PUBLIC)
def test_http01_solver_pods_are_reachable_from_the_ingress_namespace(path: str) -> None:
    """cert-manager's HTTP-01 solver: pods labelled acme.cert-manager.io/http01-solver=true in the
    Certificate's namespace, port 8089, reached through the ingress controller (cert-manager docs,
    "HTTP01"). The namespace's default-deny drops that unless a policy lets the controller in."""
    objs = render(path)
    web = named(objs, "NetworkPolicy", "web")
    ingress_ns = web["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    solver = {"acme.cert-manager.io/http01-solver": "true", "acme.cert-manager.io/http-domain": "1"}
    namespace = named(objs, "Certificate", "web-tls")["metadata"]["namespace"]
    allowed = [
        rule
        for p in of_kind(objs, "NetworkPolicy")
        if p["metadata"]["namespace"] == namespace
        and p["spec"].get("podSelector")
        and selector_matches(p["spec"]["podSelector"], solver)
        for rule in p["spec"].get("ingress") or []
        if any(port.get("port") == 8089 for port in rule.get("ports") or [])
        and any(
            (peer.get("namespaceSelector") or {}).get("matchLabels") == ingress_ns
            for peer in rule.get("from") or []
        )
    ]
    assert allowed, f"{path}: nothing lets {ingress_ns} reach the HTTP-01 solver pods on 8089"


@pytest.mark.parametrize("path", PUBLIC)
def test_the_public_endpoint_never_holds_the_migration_or_the_app(path: str) -> None:
    """Argo CD finishes a wave only when its objects are healthy, and its Certificate health check waits
    for Ready; Flux's `wait: true` waits for every object of a stage (kstatus: a Certificate is in
    progress until Ready). Issuing depends on DNS and an outside CA: the Certificate (and the routes
    in front of the app) come after the migrate Job and the workloads, in both paths."""
    objs = render(path)
    hooks = [wave(o) for o in of_kind(objs, "Job") if HOOK in notes(o)]
    workloads = [wave(o) for o in of_kind(objs, "Deployment")]
    public = of_kind(objs, "Certificate") + of_kind(objs, "Ingress") + of_kind(objs, "HTTPRoute")
    assert of_kind(objs, "Certificate") and hooks and workloads
    for obj in public:
        what = f"{path}: {obj['kind']} {obj['metadata']['name']}"
        assert wave(obj) > max(hooks + workloads), f"{what} is in wave {wave(obj)}, before the app"
    for cert in of_kind(objs, "Certificate"):
        assert notes(cert).get(STAGE) == "app", f"{path}: the Certificate holds the migrate stage"


# --- 3. The restore procedure brings the api back, and runs nothing before the data is checked -------


def restore_steps() -> dict[int, str]:
    text = (REPO_ROOT / "docs/deploy.md").read_text()
    section = text.split("### PostgreSQL: restore to a point in time", 1)[1].split("\n### ", 1)[0]
    steps: dict[int, str] = {}
    for block in section.split("\n")[0:]:
        head = block.split(". ", 1)[0]
        if head.isdigit():
            steps[int(head)] = block
        elif steps and block.startswith("   "):
            steps[max(steps)] += "\n" + block
    return steps


def test_restore_scales_the_api_back_up_by_hand() -> None:
    """Kubernetes turns an HPA off while its target is at 0 replicas ("implicit maintenance-mode
    deactivation", HPA docs) and prod's api manifest has no spec.replicas (components/hpa), so no
    re-apply restores it: a procedure that scales the api to 0 must scale it up itself."""
    objs = render("overlays/prod")
    api = named(objs, "Deployment", "api")
    hpa = named(objs, "HorizontalPodAutoscaler", "api")
    assert "replicas" not in api["spec"] and hpa["spec"]["scaleTargetRef"]["name"] == "api"
    steps = restore_steps()
    down = [n for n, text in steps.items() if "deploy/api" in text and "--replicas=0" in text]
    assert down, "the restore procedure no longer stops the api: revisit this test"
    up = [
        n
        for n, text in steps.items()
        if n > down[0]
        and "scale deploy/api --replicas=" in text.replace("\n", " ")
        and "--replicas=0" not in text.split("scale deploy/api", 1)[1][:15]
    ]
    assert up, f"step {down[0]} scales the api to 0 and no later step scales it up (the HPA will not)"


def test_restore_creates_the_cluster_without_running_the_migration() -> None:
    """Argo CD: a full sync runs the Sync hooks (the migrate Job, wave 1) and re-applies the worker's
    replicas; a selective sync (`--resource`) runs no hooks. The data is checked (step 6) first."""
    steps = restore_steps()
    create = next(text for text in steps.values() if "Create the restored one" in text)
    argo = create.split("Argo CD:", 1)[1].split("kubectl:", 1)[0]
    assert "argocd app sync" in argo and "--resource postgresql.cnpg.io:Cluster:postgres" in argo, argo


# --- 4. Flux recreates the migrate Job, and nothing else of its stage --------------------------------


@pytest.mark.parametrize("env", ("dev", "staging", "prod"))
def test_flux_forces_the_migrate_job_alone(env: str) -> None:
    """kustomize-controller recreates an object whose change is refused only when forced: the whole
    Kustomization (`spec.force`, YK-GIT-003) or one object (`kustomize.toolkit.fluxcd.io/force:
    enabled`, fluxcd/kustomize-controller#787). The Job must be; the saves PVC must not."""
    stage = render(f"gitops/flux/{env}/migrate")
    forced = sorted(
        f"{o['kind']}/{o['metadata']['name']}"
        for o in stage
        if notes(o).get("kustomize.toolkit.fluxcd.io/force") == "enabled"
    )
    assert forced == ["Job/migrate"], forced
    flux = yaml.safe_load((REPO_ROOT / f"gitops/flux/{env}/migrate.Kustomization.yaml").read_text())
    assert "force" not in flux["spec"]


# --- 5. The migrate stage never prunes what the running pods still read ------------------------------

HASHED = re.compile(r"-[bcdfghkmt2-9]{10}$")  # kustomize's name suffix alphabet


def references(workload: dict[str, Any]) -> set[str]:
    spec = workload["spec"]["template"]["spec"]
    out = set()
    for c in spec.get("initContainers", []) + spec["containers"]:
        for source in c.get("envFrom", []):
            out |= {source[k]["name"] for k in ("configMapRef", "secretRef") if k in source}
        for var in c.get("env", []):
            out |= {
                var["valueFrom"][k]["name"]
                for k in ("configMapKeyRef", "secretKeyRef")
                if k in var.get("valueFrom", {})
            }
    for volume in spec.get("volumes", []):
        out |= {volume["configMap"]["name"]} if "configMap" in volume else set()
        out |= {volume["secret"]["secretName"]} if "secret" in volume else set()
    return out


@pytest.mark.parametrize("env", ("dev", "staging", "prod"))
def test_generated_objects_outlive_the_stage_that_replaces_them(env: str) -> None:
    """Flux's migrate stage garbage-collects what left its inventory once it has applied the new
    revision, i.e. the previous hash-suffixed ConfigMaps/Secrets, before the app stage rolls the
    pods that still read them. Each one the app stage's workloads read must be prune: disabled."""
    app = render(f"gitops/flux/{env}/app")
    migrate = {o["metadata"]["name"]: o for o in render(f"gitops/flux/{env}/migrate")}
    read = {name for o in app if o["kind"] == "Deployment" for name in references(o)}
    generated = sorted(n for n in read if n in migrate and HASHED.search(n))
    assert generated, "no hash-suffixed object read by the app stage: the test sees nothing"
    pruned = [
        n for n in generated if notes(migrate[n]).get("kustomize.toolkit.fluxcd.io/prune") != "disabled"
    ]
    assert not pruned, f"the migrate stage would prune the running pods' {pruned}"


# --- 6. Flux waits for the Cluster through its normal transitions ------------------------------------


def test_flux_does_not_fail_the_database_stage_on_a_transition() -> None:
    """CloudNativePG sets the Cluster's Ready condition False (reason ClusterIsNotReady) while it
    bootstraps, adds a replica, switches over, upgrades or restores; a Flux `failed` expression that
    matches it fails the stage at once instead of waiting. And CEL's `all` over an empty list is true,
    so `current` must ask that a Ready=True condition exists."""
    flux = yaml.safe_load((REPO_ROOT / "gitops/flux/prod/database.Kustomization.yaml").read_text())
    check = next(c for c in flux["spec"]["healthCheckExprs"] if c["kind"] == "Cluster")
    assert "Ready" not in check.get("failed", ""), check["failed"]
    assert "exists(" in check["current"] and ".all(" not in check["current"], check["current"]


# --- 12. Argo CD's sync never waits for a volume only run-time pods mount ----------------------------


@pytest.mark.parametrize("env", ("dev", "staging", "prod"))
def test_argo_ignores_the_health_of_volumes_no_rendered_pod_mounts(env: str) -> None:
    """Argo CD's PVC health is Progressing until Bound, and a wave is done only when its objects are
    healthy. With a WaitForFirstConsumer class a claim binds when its first pod is scheduled: for
    sandbox-threads that is the first sandbox, made at run time, so the sync would never finish.
    Such a claim must carry argocd.argoproj.io/ignore-healthcheck: "true"."""
    objs = render(f"overlays/{env}")
    mounted = {
        (o["metadata"]["namespace"], v["persistentVolumeClaim"]["claimName"])
        for o in objs
        if "template" in o.get("spec", {}) and "spec" in o["spec"]["template"]
        for v in o["spec"]["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    unmounted = [
        o
        for o in of_kind(objs, "PersistentVolumeClaim")
        if (o["metadata"]["namespace"], o["metadata"]["name"]) not in mounted
    ]
    assert unmounted, "every claim is mounted by a pod of the render: the test sees nothing"
    for claim in unmounted:
        assert notes(claim).get("argocd.argoproj.io/ignore-healthcheck") == "true", claim["metadata"]["name"]
