"""kubeconform -strict with the pinned core and CRD schemas: nothing slips through as "missing schema"."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.support import require_schemas
from yuxi_k8s.validate import crds, schemas

CLEAN = [d for d in yaml.safe_load_all((Path(__file__).parent / "clean" / "app.yaml").read_text()) if d]


@pytest.fixture(scope="module", autouse=True)
def prepared() -> None:
    require_schemas()


def check(*objects: dict) -> list[schemas.SchemaResult]:
    return schemas.check({"t": list(objects)})


def deployment() -> dict:
    return copy.deepcopy(next(o for o in CLEAN if o["kind"] == "Deployment"))


def statuses(results: list[schemas.SchemaResult]) -> list[tuple[str, str]]:
    return [(r.kind, r.status) for r in results]


def test_clean_objects_are_valid() -> None:
    results = check(*CLEAN)
    assert {r.status for r in results} == {"valid"}, [(r.kind, r.messages) for r in results]
    assert len(results) == len(CLEAN)


def test_unknown_field_fails() -> None:
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    [result] = check(bad)
    assert result.status == "invalid"
    assert "imagePullPolicyy" in result.messages[0]


def test_wrong_type_fails() -> None:
    bad = deployment()
    bad["spec"]["replicas"] = "three"
    assert check(bad)[0].status == "invalid"


def test_misspelled_core_kind_is_an_error_naming_it() -> None:
    [result] = check({"apiVersion": "v1", "kind": "ConfigMapp", "metadata": {"name": "x"}})
    assert result.status == "error"
    assert "ConfigMapp" in result.messages[0]


def test_core_kind_with_wrong_version_is_never_skipped() -> None:
    old = deployment()
    old["apiVersion"] = "apps/v1beta1"
    [result] = check(old)
    assert result.status == "error"


def test_unknown_crd_group_is_an_error() -> None:
    [result] = check({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "x"}})
    assert result.status == "error"
    assert "IngressRoute" in result.messages[0]


def test_pinned_crds_of_the_production_pieces_are_strict() -> None:
    """The Barman Cloud ObjectStore, cert-manager, Gateway API and VolumeSnapshot kinds are checked
    strictly: a known kind passes, an unknown field fails."""
    good = {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": "x"},
        "spec": {"configuration": {"destinationPath": "s3://bucket/path"}},
    }
    bad = {**good, "spec": {"configuration": {"destinationPath": "s3://b/p", "typo": 1}}}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "x"},
        "spec": {"rules": [{"timeouts": {"request": "1h"}}]},
    }
    results = [check(obj)[0] for obj in (good, bad, route)]
    assert [r.status for r in results] == ["valid", "invalid", "valid"], [r.messages for r in results]


def test_every_core_kind_compiles() -> None:
    """A schema that fails to compile reads as 'could not find schema' in kubeconform: check some."""
    objects = [
        {"apiVersion": v, "kind": k, "metadata": {"name": "x"}}
        for v, k in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("v1", "Namespace"),
            ("v1", "ServiceAccount"),
            ("v1", "PersistentVolumeClaim"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("networking.k8s.io/v1", "Ingress"),
            ("policy/v1", "PodDisruptionBudget"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("batch/v1", "CronJob"),
            ("rbac.authorization.k8s.io/v1", "Role"),
        ]
    ]
    bad = [(r.kind, r.messages) for r in check(*objects) if r.status == "error"]
    assert not bad


CRD_SAMPLES = {
    ("postgresql.cnpg.io/v1", "Cluster"): {"instances": 3, "storage": {"size": "10Gi"}},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "selector": {"matchLabels": {"a": "b"}},
        "endpoints": [{"port": "http"}],
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]
    },
    ("external-secrets.io/v1", "ExternalSecret"): {
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": "s"},
        "target": {"name": "t"},
        "data": [{"secretKey": "k", "remoteRef": {"key": "r"}}],
    },
    ("external-secrets.io/v1", "SecretStore"): {"provider": {"fake": {"data": [{"key": "k", "value": "v"}]}}},
    ("external-secrets.io/v1", "ClusterSecretStore"): {
        "provider": {"fake": {"data": [{"key": "k", "value": "v"}]}}
    },
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): {
        "interval": "10m",
        "path": "./overlays/prod",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "yuxi"},
        "dependsOn": [{"name": "migrate"}],
    },
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): {
        "interval": "5m",
        "url": "https://github.com/example/yuxi-k8s",
        "ref": {"branch": "main"},
    },
    ("argoproj.io/v1alpha1", "Application"): {
        "project": "default",
        "source": {
            "repoURL": "https://github.com/example/yuxi-k8s",
            "path": "overlays/prod",
            "targetRevision": "main",
        },
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "yuxi-prod"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
    },
}


@pytest.mark.parametrize(("api_version", "kind"), sorted(CRD_SAMPLES), ids=lambda x: str(x))
def test_pinned_crd_valid_and_strict(api_version: str, kind: str) -> None:
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": CRD_SAMPLES[(api_version, kind)],
    }
    [ok] = check(obj)
    assert ok.status == "valid", ok.messages
    bad = copy.deepcopy(obj)
    bad["spec"]["notAField"] = 1
    [result] = check(bad)
    assert result.status == "invalid", f"{kind}: unknown spec field accepted"
    assert "notAField" in result.messages[0]


def test_preserve_unknown_fields_kept() -> None:
    """Argo CD's helm valuesObject preserves unknown fields: anything goes below it."""
    spec = copy.deepcopy(CRD_SAMPLES[("argoproj.io/v1alpha1", "Application")])
    spec["source"]["helm"] = {"valuesObject": {"anything": {"nested": True}}}
    [result] = check(
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "x"}, "spec": spec}
    )
    assert result.status == "valid", result.messages


def test_sops_secret_is_checked_without_encrypted_values() -> None:
    fixture = Path(__file__).parent / "rules" / "YK-CRED-004" / "pass.yaml"
    sops = next(d for d in yaml.safe_load_all(fixture.read_text()) if "sops" in d)
    results = check(sops)
    assert ("Secret", "valid") in statuses(results)
    assert any(r.status == "note" and "SOPS" in r.messages[0] for r in results)


def test_crd_files_are_available_for_server_side_dry_run() -> None:
    paths = crds.crd_paths()
    names = {p.name for p in paths}
    assert "postgresql.cnpg.io_clusters.yaml" in names and "application-crd.yaml" in names
    for path in paths:  # a text check: parsing 3 MB of CRDs would dominate the tier
        assert "kind: CustomResourceDefinition" in path.read_text(), path


def test_the_manifests_in_deploy_md_pass_their_schemas() -> None:
    """The recipes of docs/deploy.md (the saves/ VolumeSnapshot and the PVC restored from it) are
    whole objects that pass the pinned schemas, strictly."""
    text = (Path(__file__).resolve().parents[2] / "docs/deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    objects = [d for b in blocks for d in yaml.safe_load_all(b) if isinstance(d, dict) and "apiVersion" in d]
    kinds = {o["kind"] for o in objects}
    assert {"VolumeSnapshot", "PersistentVolumeClaim"} <= kinds, kinds
    results = check(*objects)
    assert {r.status for r in results} == {"valid"}, [(r.kind, r.messages) for r in results]
