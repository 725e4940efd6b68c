"""Realistic defects injected into the real overlays' render must each be caught by the named rule.

The render is taken once per overlay (the pinned kustomize), then each case mutates a copy the
way a careless edit of base/, components/ or an overlay would, and runs the policy engine.
"""

from __future__ import annotations

import base64
import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import require, require_tools
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.engine import evaluate, load_config
from yuxi_k8s.validate.render import render_one

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def renders() -> dict[str, Objects]:
    require_tools("kubectl")
    out = {}
    for env in ("dev", "staging", "prod"):
        rendered = render_one(str(REPO_ROOT / "overlays" / env))
        require(rendered.error is None, f"overlays/{env} renders ({rendered.error})")
        out[env] = rendered.objects
    return out


def one(objs: Objects, kind: str, component: str | None = None) -> dict[str, Any]:
    for o in objs:
        labels = (o.get("metadata") or {}).get("labels") or {}
        if o["kind"] == kind and (
            component is None or labels.get("app.kubernetes.io/component") == component
        ):
            return o
    raise LookupError(f"no {kind} {component} in the render")


def pod(objs: Objects, kind: str = "Deployment", component: str = "api") -> dict[str, Any]:
    return one(objs, kind, component)["spec"]["template"]["spec"]


def main(objs: Objects, component: str = "api") -> dict[str, Any]:
    spec = pod(objs, component=component)
    return next((c for c in spec["containers"] if c["name"] == component), spec["containers"][0])


def drop(objs: Objects, kind: str, component: str | None = None) -> None:
    objs.remove(one(objs, kind, component))


def plaintext_secret(objs: Objects) -> None:
    ns = one(objs, "Namespace")["metadata"]["name"]
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "db",
                "namespace": ns,
                "labels": one(objs, "Namespace")["metadata"]["labels"],
            },
            "data": {"password": base64.b64encode(b"s3cr3t").decode()},
        }
    )


def allow_all_ingress(objs: Objects) -> None:
    policy = copy.deepcopy(one(objs, "NetworkPolicy"))
    policy["metadata"]["name"] = "allow-all"
    policy["spec"] = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}
    objs.append(policy)


def settings(objs: Objects) -> dict[str, Any]:
    cm = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("api-settings")
    )
    return cm["data"]


def nginx_typo(objs: Objects) -> None:
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("web-nginx"))
    key = next(k for k, v in cm["data"].items() if "proxy_pass" in v)
    cm["data"][key] = cm["data"][key].replace(":5050", ":5000")


def configmap_credential(objs: Objects) -> None:
    cm = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("api-settings")
    )
    cm["data"]["REDIS_PASSWORD"] = "hunter2"


def configmap_url(objs: Objects) -> None:
    cm = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("api-settings")
    )
    cm["data"]["MINIO_URI"] = "http://minio:minio123@minio:9000"


def policies_for(objs: Objects, component: str) -> list[dict[str, Any]]:
    return [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and ((p["spec"].get("podSelector") or {}).get("matchLabels") or {}).get("app.kubernetes.io/component")
        == component
    ]


def drop_dns(objs: Objects) -> None:
    for p in [p for p in objs if p["kind"] == "NetworkPolicy"]:
        p["spec"]["egress"] = [
            r
            for r in p["spec"].get("egress") or []
            if not any(str(x.get("port")) == "53" for x in r.get("ports") or [])
        ]


def web_to_postgres(objs: Objects) -> None:
    policy = copy.deepcopy(policies_for(objs, "postgres")[0])
    policy["metadata"]["name"] = "web-to-postgres"
    policy["spec"] = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "postgres"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}}}]}],
    }
    objs.append(policy)


def drop_api_ingress(objs: Objects) -> None:
    for p in policies_for(objs, "api"):
        if "Ingress" in p["spec"].get("policyTypes", []):
            objs.remove(p)


def sandbox_namespace(objs: Objects) -> dict[str, Any]:
    return one(objs, "Namespace", "sandboxes")


def drop_sandbox_deny(objs: Objects) -> None:
    ns = sandbox_namespace(objs)["metadata"]["name"]
    objs.remove(
        next(
            p
            for p in objs
            if p["kind"] == "NetworkPolicy"
            and p["metadata"]["namespace"] == ns
            and p["metadata"]["name"] == "default-deny"
        )
    )


def privileged_exception(objs: Objects) -> None:
    labels = sandbox_namespace(objs)["metadata"]["labels"]
    labels["pod-security.kubernetes.io/enforce"] = "privileged"
    for mode in ("audit", "warn"):
        labels.pop(f"pod-security.kubernetes.io/{mode}")


def sandbox_token(objs: Objects) -> None:
    ns = sandbox_namespace(objs)["metadata"]["name"]
    objs.remove(
        next(
            o
            for o in objs
            if o["kind"] == "ServiceAccount"
            and o["metadata"]["name"] == "default"
            and o["metadata"]["namespace"] == ns
        )
    )


def provisioner_account(objs: Objects) -> dict[str, Any]:
    sa = one(objs, "ServiceAccount", "sandbox-provisioner")
    return {
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": sa["metadata"]["namespace"],
    }


def cluster_admin(objs: Objects) -> None:
    objs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "provisioner-admin", "labels": one(objs, "Role")["metadata"]["labels"]},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [provisioner_account(objs)],
        }
    )


def role_secrets_exec(objs: Objects) -> None:
    one(objs, "Role")["rules"].append(
        {"apiGroups": [""], "resources": ["secrets", "pods/exec"], "verbs": ["*"]}
    )


def egress_halves(objs: Objects) -> None:
    policy = copy.deepcopy(one(objs, "NetworkPolicy"))
    policy["metadata"]["name"] = "api-anywhere"
    policy["spec"] = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/1"}}, {"ipBlock": {"cidr": "128.0.0.0/1"}}]}],
    }
    objs.append(policy)


CASES: list[tuple[str, str, Callable[[Objects], Any], str]] = [
    (
        "prod",
        "api image latest",
        lambda o: main(o).update(image="ghcr.io/xerrors/yuxi-know-api:latest"),
        "YK-IMG-001",
    ),
    (
        "staging",
        "web image without tag",
        lambda o: main(o, "web").update(image="ghcr.io/xerrors/yuxi-know-web"),
        "YK-IMG-002",
    ),
    ("prod", "privileged api", lambda o: main(o)["securityContext"].update(privileged=True), "YK-PSS-001"),
    (
        "dev",
        "privilege escalation",
        lambda o: main(o)["securityContext"].update(allowPrivilegeEscalation=True),
        "YK-PSS-002",
    ),
    ("prod", "api as root", lambda o: main(o)["securityContext"].update(runAsUser=0), "YK-PSS-003"),
    ("prod", "capabilities kept", lambda o: main(o)["securityContext"].pop("capabilities"), "YK-PSS-004"),
    (
        "prod",
        "NET_ADMIN added",
        lambda o: main(o)["securityContext"].setdefault("capabilities", {}).update(add=["NET_ADMIN"]),
        "YK-PSS-005",
    ),
    (
        "staging",
        "seccomp unconfined",
        lambda o: pod(o)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "YK-PSS-006",
    ),
    ("prod", "hostNetwork", lambda o: pod(o).update(hostNetwork=True), "YK-PSS-007"),
    ("prod", "hostPort", lambda o: main(o)["ports"][0].update(hostPort=5050), "YK-PSS-008"),
    (
        "dev",
        "hostPath volume",
        lambda o: pod(o)["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}),
        "YK-PSS-009",
    ),
    (
        "prod",
        "writable root",
        lambda o: main(o)["securityContext"].update(readOnlyRootFilesystem=False),
        "YK-HARD-001",
    ),
    ("prod", "token mounted", lambda o: pod(o).update(automountServiceAccountToken=True), "YK-HARD-002"),
    ("prod", "no readiness", lambda o: main(o).pop("readinessProbe"), "YK-PRB-001"),
    ("prod", "no liveness", lambda o: main(o).pop("livenessProbe"), "YK-PRB-002"),
    (
        "prod",
        "probe port typo",
        lambda o: main(o)["readinessProbe"].update(httpGet={"path": "/readyz", "port": 5051}),
        "YK-PRB-003",
    ),
    ("prod", "api without startupProbe", lambda o: main(o).pop("startupProbe"), "YK-PRB-004"),
    (
        "prod",
        "readiness = liveness",
        lambda o: main(o).update(readinessProbe=copy.deepcopy(main(o)["livenessProbe"])),
        "YK-PRB-005",
    ),
    ("prod", "no requests", lambda o: main(o)["resources"].pop("requests"), "YK-RES-001"),
    ("staging", "no limits", lambda o: main(o, "web")["resources"].pop("limits"), "YK-RES-002"),
    (
        "prod",
        "limit below request",
        lambda o: main(o)["resources"]["limits"].update(memory="1Mi"),
        "YK-RES-003",
    ),
    (
        "prod",
        "api 2 replicas",
        lambda o: (
            one(o, "Deployment", "api")["spec"].update(replicas=2),
            one(o, "HorizontalPodAutoscaler", "api")["spec"].update(minReplicas=2),
        ),
        "YK-AVL-001",
    ),
    (
        "staging",
        "web single replica",
        lambda o: one(o, "Deployment", "web")["spec"].update(replicas=1),
        "YK-AVL-001",
    ),
    ("prod", "api PDB removed", lambda o: drop(o, "PodDisruptionBudget", "api"), "YK-AVL-002"),
    (
        "prod",
        "no spread",
        lambda o: (pod(o).pop("topologySpreadConstraints", None), pod(o).pop("affinity", None)),
        "YK-AVL-003",
    ),
    (
        "prod",
        "PDB blocks evictions",
        lambda o: one(o, "PodDisruptionBudget", "web")["spec"].update({"maxUnavailable": 0}),
        "YK-AVL-004",
    ),
    (
        "prod",
        "PDB selector typo",
        lambda o: one(o, "PodDisruptionBudget", "web")["spec"].update(
            selector={"matchLabels": {"app.kubernetes.io/component": "wbe"}}
        ),
        "YK-AVL-006",
    ),
    (
        "dev",
        "default deny removed",
        lambda o: o.remove(
            next(
                p
                for p in o
                if p["kind"] == "NetworkPolicy"
                and p["metadata"]["namespace"] == one(o, "Deployment", "api")["metadata"]["namespace"]
                and not p["spec"].get("podSelector")
                and "Ingress" in p["spec"].get("policyTypes", [])
                and not p["spec"].get("ingress")
            )
        ),
        "YK-NET-001",
    ),
    ("prod", "allow-all ingress", allow_all_ingress, "YK-NET-004"),
    (
        "prod",
        "web policy removed",
        lambda o: [
            o.remove(p)
            for p in [
                p
                for p in o
                if p["kind"] == "NetworkPolicy"
                and (p["spec"].get("podSelector") or {})
                .get("matchLabels", {})
                .get("app.kubernetes.io/component")
                == "web"
            ]
        ],
        "YK-NET-003",
    ),
    (
        "prod",
        "Service selector typo",
        lambda o: one(o, "Service", "api")["spec"]["selector"].update(
            {"app.kubernetes.io/component": "apii"}
        ),
        "YK-SVC-001",
    ),
    (
        "prod",
        "targetPort typo",
        lambda o: one(o, "Service", "web")["spec"]["ports"][0].update(targetPort=8081),
        "YK-SVC-002",
    ),
    (
        "staging",
        "api NodePort",
        lambda o: one(o, "Service", "api")["spec"].update(type="NodePort"),
        "YK-SVC-003",
    ),
    (
        "dev",
        "missing ConfigMap",
        lambda o: main(o).setdefault("envFrom", []).append({"configMapRef": {"name": "nope"}}),
        "YK-REF-001",
    ),
    (
        "prod",
        "missing Secret",
        lambda o: (
            main(o)
            .setdefault("env", [])
            .append({"name": "X_TOKEN_FILE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}})
        ),
        "YK-REF-002",
    ),
    (
        "dev",
        "secret key typo",
        lambda o: next(e for e in main(o)["env"] if "secretKeyRef" in e.get("valueFrom", {}))["valueFrom"][
            "secretKeyRef"
        ].update(key="NOPE"),
        "YK-REF-003",
    ),
    (
        "prod",
        "PVC typo",
        lambda o: next(v for v in pod(o)["volumes"] if "persistentVolumeClaim" in v)[
            "persistentVolumeClaim"
        ].update(claimName="savez"),
        "YK-REF-004",
    ),
    ("prod", "ServiceAccount typo", lambda o: pod(o).update(serviceAccountName="apii"), "YK-REF-005"),
    ("staging", "password in ConfigMap", configmap_credential, "YK-CRED-001"),
    (
        "prod",
        "literal env password",
        lambda o: main(o).setdefault("env", []).append({"name": "NEO4J_PASSWORD", "value": "hunter2"}),
        "YK-CRED-002",
    ),
    ("prod", "password inside URL", configmap_url, "YK-CRED-003"),
    ("prod", "plaintext Secret", plaintext_secret, "YK-CRED-004"),
    (
        "staging",
        "placeholder host",
        lambda o: one(o, "Ingress")["spec"]["rules"][0].update(host="yuxi.example.com"),
        "YK-PLH-001",
    ),
    (
        "prod",
        "changeme",
        lambda o: main(o).setdefault("env", []).append({"name": "ADMIN_USER", "value": "changeme"}),
        "YK-PLH-001",
    ),
    ("prod", "Job without backoffLimit", lambda o: one(o, "Job")["spec"].pop("backoffLimit"), "YK-JOB-001"),
    (
        "prod",
        "Job unbounded",
        lambda o: [
            one(o, "Job")["spec"].pop(k, None) for k in ("activeDeadlineSeconds", "ttlSecondsAfterFinished")
        ],
        "YK-JOB-002",
    ),
    (
        "prod",
        "PSA baseline",
        lambda o: one(o, "Namespace")["metadata"]["labels"].update(
            {"pod-security.kubernetes.io/enforce": "baseline"}
        ),
        "YK-NS-001",
    ),
    (
        "prod",
        "part-of label dropped",
        lambda o: one(o, "Deployment", "web")["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
        "YK-LBL-001",
    ),
    (
        "prod",
        "component label dropped",
        lambda o: one(o, "Deployment", "web")["metadata"]["labels"].pop("app.kubernetes.io/component"),
        "YK-LBL-002",
    ),
    (
        "prod",
        "HPA min above max",
        lambda o: one(o, "HorizontalPodAutoscaler")["spec"].update(minReplicas=20),
        "YK-AVL-005",
    ),
    (
        "prod",
        "mount without volume",
        lambda o: main(o).setdefault("volumeMounts", []).append({"name": "cache", "mountPath": "/cache"}),
        "YK-REF-006",
    ),
    (
        "prod",
        "broad Service selector",
        lambda o: one(o, "Service", "api")["spec"].update(selector={"app.kubernetes.io/name": "yuxi-know"}),
        "YK-SVC-006",
    ),
    ("prod", "memory 1GB", lambda o: main(o)["resources"]["limits"].update(memory="1GB"), "YK-RES-004"),
    ("prod", "Ingress TLS removed", lambda o: one(o, "Ingress")["spec"].pop("tls"), "YK-SVC-005"),
    ("dev", "DNS egress removed", drop_dns, "YK-NET-007"),
    (
        "prod",
        "api strategy Recreate",
        lambda o: one(o, "Deployment", "api")["spec"].update(strategy={"type": "Recreate"}),
        "YK-AVL-008",
    ),
    (
        "prod",
        "saves claim ReadWriteOnce",
        lambda o: next(
            p for p in o if p["kind"] == "PersistentVolumeClaim" and p["metadata"]["name"] == "saves"
        )["spec"].update(accessModes=["ReadWriteOnce"]),
        "YK-AVL-009",
    ),
    (
        "staging",
        "MILVUS_URI port typo",
        lambda o: settings(o).update(MILVUS_URI="http://milvus:19531"),
        "YK-REF-008",
    ),
    (
        "prod",
        "NEO4J_URI host typo",
        lambda o: settings(o).update(NEO4J_URI="bolt://neo4j-db:7687"),
        "YK-REF-008",
    ),
    (
        "prod",
        "api renamed, alerts not",
        lambda o: one(o, "Deployment", "api")["metadata"].update(name="yuxi-api"),
        "YK-OBJ-004",
    ),
    (
        "prod",
        "ServiceMonitor port typo",
        lambda o: one(o, "ServiceMonitor")["spec"]["endpoints"][0].update(port="metric"),
        "YK-SVC-007",
    ),
    (
        "prod",
        "spread selector typo",
        lambda o: [
            c.update(labelSelector={"matchLabels": {"app.kubernetes.io/component": "apii"}})
            for c in pod(o).get("topologySpreadConstraints", [])
        ],
        "YK-AVL-003",
    ),
    (
        "prod",
        "migration wave after the api",
        lambda o: one(o, "Job")["metadata"]["annotations"].update({"argocd.argoproj.io/sync-wave": "5"}),
        "YK-JOB-003",
    ),
    ("prod", "api preStop removed", lambda o: main(o).pop("lifecycle"), "YK-PRB-006"),
    (
        "staging",
        "grace period shorter than preStop",
        lambda o: pod(o).update(terminationGracePeriodSeconds=1),
        "YK-PRB-006",
    ),
    ("dev", "web allowed into postgres", web_to_postgres, "YK-NET-008"),
    ("prod", "web allowed into postgres", web_to_postgres, "YK-NET-008"),
    ("prod", "api ingress policy removed", drop_api_ingress, "YK-NET-009"),
    ("prod", "sandboxes' default deny removed", drop_sandbox_deny, "YK-NET-001"),
    ("prod", "sandboxes' default deny removed", drop_sandbox_deny, "YK-NET-002"),
    ("prod", "sandboxes privileged, audit and warn removed", privileged_exception, "YK-NS-003"),
    ("prod", "sandboxes' default ServiceAccount dropped", sandbox_token, "YK-HARD-004"),
    ("prod", "provisioner bound to cluster-admin", cluster_admin, "YK-RBAC-001"),
    ("prod", "provisioner reads Secrets and execs", role_secrets_exec, "YK-RBAC-002"),
    ("prod", "provisioner reads Secrets and execs", role_secrets_exec, "YK-RBAC-003"),
    ("prod", "api egress to 0.0.0.0/1 + 128.0.0.0/1", egress_halves, "YK-NET-004"),
    (
        "dev",
        "postgres port typo in a policy",
        lambda o: policies_for(o, "postgres")[0]["spec"]["ingress"][0]["ports"][0].update(port=5433),
        "YK-NET-006",
    ),
]


@pytest.mark.parametrize(
    ("env", "what", "inject", "rule_id"), CASES, ids=[f"{c[0]}-{c[3]}-{c[1]}" for c in CASES]
)
def test_injected_defect_is_caught(
    renders: dict[str, Objects], env: str, what: str, inject: Callable[[Objects], Any], rule_id: str
) -> None:
    objects = copy.deepcopy(renders[env])
    before = {v.rule for v in evaluate(env, env, objects, load_config(), strict=True) if v.suppressed is None}
    inject(objects)
    found = {v.rule for v in evaluate(env, env, objects, load_config(), strict=True) if v.suppressed is None}
    assert rule_id in found - before, f"{what}: {rule_id} not raised (raised: {sorted(found - before)})"


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "default"])
def test_sandbox_namespace_setting_is_refused(tmp_path: Path, namespace: str) -> None:
    """SANDBOX_NAMESPACE set in prod's site settings to a namespace of Kubernetes or of the app itself:
    the render relabels it and gives the provisioner `pods create` there; validate refuses it. (The app's
    own namespace is refused by kustomize already: the Namespace would be defined twice.)"""
    require_tools("kubectl")
    for folder in ("base", "components", "overlays"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    site = tmp_path / "overlays" / "prod" / "app" / "site.ConfigMap.yaml"
    text = site.read_text()
    assert "SANDBOX_NAMESPACE: yuxi-prod-sandboxes" in text
    site.write_text(text.replace("SANDBOX_NAMESPACE: yuxi-prod-sandboxes", f"SANDBOX_NAMESPACE: {namespace}"))
    rendered = render_one(str(tmp_path / "overlays" / "prod"))
    assert rendered.error is None, rendered.error
    found = [
        v
        for v in evaluate("prod", "prod", rendered.objects, load_config(), strict=True)
        if v.rule == "YK-NS-004" and v.suppressed is None
    ]
    assert found, f"SANDBOX_NAMESPACE={namespace} passed"
