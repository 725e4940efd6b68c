"""Every ConfigMap, Secret, key, PVC and ServiceAccount a pod references exists or is declared external.

Declared external: the workload's annotation
``yuxi-k8s.io/external-refs: "Secret/name, ConfigMap/name"`` or the config's
``external_references`` list. Secrets that an ExternalSecret, a SealedSecret
or a CloudNativePG Cluster produces count as present.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from yuxi_k8s.validate.model import Context, Resource, Workload
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "references"
EXTERNAL_ANNOTATION = "yuxi-k8s.io/external-refs"
CNPG_SECRETS = ("app", "superuser", "ca", "server", "replication")


@dataclass(frozen=True)
class Ref:
    kind: str  # ConfigMap | Secret | PersistentVolumeClaim | ServiceAccount
    name: str
    key: str | None
    optional: bool
    where: str


def references(w: Workload) -> Iterator[Ref]:
    """Everything one pod spec points at, with where it is used."""
    spec = w.pod_spec
    for c in w.containers:
        for src in c.spec.get("envFrom") or []:
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if field in src:
                    ref = src[field] or {}
                    yield Ref(
                        kind, ref.get("name", ""), None, bool(ref.get("optional")), f"{c.label()} envFrom"
                    )
        for env in c.spec.get("env") or []:
            source = env.get("valueFrom") or {}
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if field in source:
                    ref = source[field] or {}
                    yield Ref(
                        kind,
                        ref.get("name", ""),
                        ref.get("key"),
                        bool(ref.get("optional")),
                        f"{c.label()} env {env.get('name')}",
                    )
    for vol in w.volumes:
        where = f"volume {vol.get('name')}"
        if "configMap" in vol:
            cm = vol["configMap"] or {}
            yield Ref("ConfigMap", cm.get("name", ""), None, bool(cm.get("optional")), where)
            for item in cm.get("items") or []:
                yield Ref("ConfigMap", cm.get("name", ""), item.get("key"), bool(cm.get("optional")), where)
        if "secret" in vol:
            sec = vol["secret"] or {}
            yield Ref("Secret", sec.get("secretName", ""), None, bool(sec.get("optional")), where)
            for item in sec.get("items") or []:
                yield Ref(
                    "Secret", sec.get("secretName", ""), item.get("key"), bool(sec.get("optional")), where
                )
        if "persistentVolumeClaim" in vol:
            claim = (vol["persistentVolumeClaim"] or {}).get("claimName", "")
            yield Ref("PersistentVolumeClaim", claim, None, False, where)
        for source in (vol.get("projected") or {}).get("sources") or []:
            for kind, field in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if field in source:
                    ref = source[field] or {}
                    yield Ref(kind, ref.get("name", ""), None, bool(ref.get("optional")), where)
                    for item in ref.get("items") or []:
                        yield Ref(
                            kind, ref.get("name", ""), item.get("key"), bool(ref.get("optional")), where
                        )
    for pull in spec.get("imagePullSecrets") or []:
        yield Ref("Secret", pull.get("name", ""), None, False, "imagePullSecrets")
    account = spec.get("serviceAccountName")
    if account and account != "default":
        yield Ref("ServiceAccount", account, None, False, "serviceAccountName")


def declared_external(ctx: Context, w: Workload, kind: str, name: str) -> bool:
    listed = {s.strip() for s in str(w.resource.annotations.get(EXTERNAL_ANNOTATION, "")).split(",")}
    listed |= set(ctx.setting("external_references", []) or [])
    return f"{kind}/{name}" in listed


def available_keys(ctx: Context, kind: str, namespace: str, name: str) -> set[str] | bool | None:
    """False: not in the render; None: present, keys unknown; else: the keys."""
    res = ctx.find(kind, namespace, name)
    if res is not None:
        return (
            set(res.obj.get("data") or {})
            | set(res.obj.get("stringData") or {})
            | set(res.obj.get("binaryData") or {})
        )
    if kind == "Secret":
        for es in ctx.of_kind("ExternalSecret"):
            target = (es.spec.get("target") or {}).get("name") or es.name
            if es.namespace == namespace and target == name:
                template = (es.spec.get("target") or {}).get("template") or {}
                if es.spec.get("dataFrom") or template.get("templateFrom"):
                    return None
                return {d.get("secretKey") for d in es.spec.get("data") or []} | set(
                    template.get("data") or {}
                )
        for sealed in ctx.of_kind("SealedSecret"):
            if sealed.namespace == namespace and sealed.name == name:
                return None
        for cluster in ctx.of_kind("Cluster"):
            produced = {f"{cluster.name}-{suffix}" for suffix in CNPG_SECRETS}
            if cluster.group == "postgresql.cnpg.io" and cluster.namespace == namespace and name in produced:
                return None
    return False


def _missing(ctx: Context, kind: str) -> Iterator[Finding]:
    for w in ctx.workloads:
        reported = set()
        for ref in references(w):
            if ref.kind != kind or ref.optional or ref.name in reported:
                continue
            if declared_external(ctx, w, kind, ref.name):
                continue
            if available_keys(ctx, kind, w.namespace, ref.name) is False:
                reported.add(ref.name)
                yield w.resource, f"{ref.where} references {kind} {ref.name}, not in the render"


FIX_EXTERNAL = (
    "Add it to the kustomization, or declare it external with the workload annotation "
    '`yuxi-k8s.io/external-refs: "{kind}/<name>"` (or `external_references` in the config).'
)

rule(
    "YK-REF-001",
    family=FAMILY,
    title="Referenced ConfigMaps exist",
    message="A pod referencing a missing ConfigMap never starts (CreateContainerConfigError).",
    fix=FIX_EXTERNAL.format(kind="ConfigMap"),
)(lambda ctx: _missing(ctx, "ConfigMap"))

rule(
    "YK-REF-002",
    family=FAMILY,
    title="Referenced Secrets exist",
    message="A pod referencing a missing Secret never starts. Secrets produced by an ExternalSecret, "
    "SealedSecret or CloudNativePG Cluster in the render count as present.",
    fix=FIX_EXTERNAL.format(kind="Secret"),
)(lambda ctx: _missing(ctx, "Secret"))


@rule(
    "YK-REF-003",
    family=FAMILY,
    title="Referenced keys exist",
    message="A key missing from a ConfigMap or Secret in the render fails the pod at start.",
    fix="Add the key to the ConfigMap/Secret (or ExternalSecret data), or fix the key name.",
)
def missing_keys(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for ref in references(w):
            if ref.key is None or ref.optional or ref.kind not in ("ConfigMap", "Secret"):
                continue
            keys = available_keys(ctx, ref.kind, w.namespace, ref.name)
            if isinstance(keys, set) and ref.key not in keys:
                yield w.resource, f"{ref.where} references key {ref.key} missing from {ref.kind} {ref.name}"


@rule(
    "YK-REF-004",
    family=FAMILY,
    title="Referenced PersistentVolumeClaims exist",
    message="A pod whose claim does not exist stays Pending.",
    fix=FIX_EXTERNAL.format(kind="PersistentVolumeClaim"),
)
def missing_claims(ctx: Context) -> Iterator[Finding]:
    yield from _missing(ctx, "PersistentVolumeClaim")


@rule(
    "YK-REF-005",
    family=FAMILY,
    title="Referenced ServiceAccounts exist",
    message="A pod naming a missing ServiceAccount is rejected by the ReplicaSet controller.",
    fix=FIX_EXTERNAL.format(kind="ServiceAccount"),
)
def missing_accounts(ctx: Context) -> Iterator[Finding]:
    yield from _missing(ctx, "ServiceAccount")


@rule(
    "YK-REF-006",
    family=FAMILY,
    title="Volume mounts name a volume",
    message="A volumeMount whose volume is not declared in the pod (or in volumeClaimTemplates) is "
    "rejected by the API server.",
    fix="Add the volume to `spec.volumes` (or fix the mount's name).",
)
def mounts_have_volumes(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        names = {v.get("name") for v in w.volumes}
        names |= {
            (t.get("metadata") or {}).get("name") for t in w.resource.spec.get("volumeClaimTemplates") or []
        }
        for c in w.containers:
            for mount in c.spec.get("volumeMounts") or []:
                if mount.get("name") not in names:
                    yield (
                        w.resource,
                        f"{c.label()} mounts volume {mount.get('name')}, not declared in the pod",
                    )


@rule(
    "YK-REF-007",
    family=FAMILY,
    title="GitOps dependencies exist",
    message="A Flux Kustomization whose dependsOn names a Kustomization absent from the render waits forever "
    "(and the migration ordering it expresses never happens).",
    fix="Point dependsOn at a Kustomization in the same render (name and namespace).",
)
def flux_depends_on(ctx: Context) -> Iterator[Finding]:
    flux = [r for r in ctx.of_kind("Kustomization") if r.group == "kustomize.toolkit.fluxcd.io"]
    names = {(r.namespace, r.name) for r in flux}
    for res in flux:
        for dep in res.spec.get("dependsOn") or []:
            key = (dep.get("namespace") or res.namespace, dep.get("name"))
            if key not in names:
                yield res, f"dependsOn {key[0]}/{key[1]} is not in the render"


# host:port of an in-cluster Service, as written in configuration: `redis:6379`, `http://api:5050/`,
# `postgres.yuxi.svc.cluster.local:5432`; not `0.0.0.0:7687`, not `ghcr.io/x/postgresql:16.6`.
SERVICE_ADDRESS = re.compile(
    r"(?<![\w/.@-])(?:[a-z][a-z0-9+.-]*://)?(?:[^\s/@:]+(?::[^\s/@]*)?@)?"
    r"(?P<host>[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*):(?P<port>\d{2,5})(?![\w.])"
)
CLUSTER_SUFFIXES = (".svc.cluster.local", ".svc")


def _service_of(host: str, namespace: str) -> str | None:
    """The Service name a host means in *namespace*, None when it is not an in-namespace name."""
    for suffix in CLUSTER_SUFFIXES:
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    name, _, ns = host.partition(".")
    if name == "localhost" or (ns and ns != namespace) or "." in ns:
        return None
    return name


def _config_texts(ctx: Context) -> Iterator[tuple[Resource, str, str]]:
    """(object, where, text) of every configuration value that may name a Service."""
    for cm in ctx.of_kind("ConfigMap"):
        for key, value in (cm.obj.get("data") or {}).items():
            yield cm, f"key {key}", str(value or "")
    for secret in ctx.of_kind("Secret"):
        if isinstance(secret.obj.get("sops"), dict):
            continue
        for key, value in (secret.obj.get("stringData") or {}).items():
            yield secret, f"key {key}", str(value or "")
        for key, value in (secret.obj.get("data") or {}).items():
            try:
                yield (
                    secret,
                    f"key {key}",
                    base64.b64decode(str(value), validate=True).decode("utf-8", "replace"),
                )
            except (binascii.Error, ValueError):
                continue
    for c in ctx.containers():
        for env in c.spec.get("env") or []:
            if isinstance(env, dict) and env.get("value"):
                yield c.workload.resource, f"{c.label()} env {env.get('name')}", str(env["value"])


@rule(
    "YK-REF-008",
    family=FAMILY,
    title="In-cluster addresses name a Service and its port",
    message="A host:port in configuration (MILVUS_URI, an nginx proxy_pass, a database URL) that names no "
    "Service of the render, or a port the Service does not expose, fails at run time with a DNS or "
    "connection error.",
    fix="Use the Service's name (after any name prefix) and one of its ports, or declare an external "
    'host with `yuxi-k8s.io/external-refs: "Service/<name>"` on the object.',
)
def service_addresses(ctx: Context) -> Iterator[Finding]:
    for res, where, text in _config_texts(ctx):
        external = {s.strip() for s in str(res.annotations.get(EXTERNAL_ANNOTATION, "")).split(",")}
        external |= set(ctx.setting("external_references", []) or [])
        for match in SERVICE_ADDRESS.finditer(text):
            name = _service_of(match.group("host"), res.namespace)
            if name is None or f"Service/{name}" in external:
                continue
            svc = ctx.find("Service", res.namespace, name)
            port = int(match.group("port"))
            if svc is None:
                yield res, f"{where}: {match.group('host')}:{port} names no Service in the render"
            elif port not in {p.get("port") for p in svc.spec.get("ports") or []}:
                yield res, f"{where}: Service {name} has no port {port}"


@rule(
    "YK-REF-009",
    family=FAMILY,
    title="ExternalSecrets name an existing SecretStore",
    message="An ExternalSecret whose namespaced SecretStore is not in the render never syncs, so the "
    "Secret the pods wait for never appears. (A ClusterSecretStore is cluster-wide, usually provided by "
    "the platform, and is not required in the render.)",
    fix="Add the SecretStore to the kustomization, fix `secretStoreRef.name`, or use the platform's "
    "ClusterSecretStore (`kind: ClusterSecretStore`).",
)
def secret_stores(ctx: Context) -> Iterator[Finding]:
    for es in ctx.of_kind("ExternalSecret"):
        refs = [es.spec.get("secretStoreRef") or {}]
        refs += [(d.get("sourceRef") or {}).get("storeRef") or {} for d in es.spec.get("data") or []]
        refs += [(d.get("sourceRef") or {}).get("storeRef") or {} for d in es.spec.get("dataFrom") or []]
        for ref in refs:
            name = ref.get("name")
            if (
                name
                and ref.get("kind", "SecretStore") == "SecretStore"
                and not ctx.find("SecretStore", es.namespace, name)
            ):
                yield es, f"SecretStore {name} is not in the render"
