"""Hardening a reviewer expects beyond Pod Security: read-only root, no API token, own ServiceAccount."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "hardening"


@rule(
    "YK-HARD-001",
    family=FAMILY,
    title="Read-only root file system",
    message="A writable root file system lets a compromised process alter the image's binaries.",
    fix="Set `securityContext.readOnlyRootFilesystem: true`; mount an emptyDir where the app must write.",
)
def read_only_root(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        if c.security.get("readOnlyRootFilesystem") is not True:
            yield c.workload.resource, f"{c.label()} has a writable root file system"


@rule(
    "YK-HARD-002",
    family=FAMILY,
    title="No ServiceAccount token mounted",
    message="Pods that do not call the Kubernetes API should not carry a token for it.",
    fix="Set `automountServiceAccountToken: false` on the pod spec (or on its ServiceAccount).",
)
def automount_token(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        value = w.pod_spec.get("automountServiceAccountToken")
        if value is None:
            sa = ctx.find("ServiceAccount", w.namespace, w.pod_spec.get("serviceAccountName") or "default")
            value = sa.obj.get("automountServiceAccountToken") if sa else None
        if value is not False:
            yield w.resource, "the ServiceAccount token is mounted"


@rule(
    "YK-HARD-003",
    family=FAMILY,
    title="Own ServiceAccount, not default",
    message="Workloads sharing the namespace's default ServiceAccount share every permission granted to it.",
    fix="Create a ServiceAccount for the workload and set `serviceAccountName`.",
)
def default_service_account(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        if (w.pod_spec.get("serviceAccountName") or "default") == "default":
            yield w.resource, "pod runs as the default ServiceAccount"


@rule(
    "YK-HARD-004",
    family=FAMILY,
    title="Pods made at run time mount no token",
    message="The sandbox pods the provisioner creates at run time are not in the render, run as the "
    "`default` ServiceAccount of their namespace and carry its token unless that account says otherwise: "
    "an agent's shell command (any chat user's) can read it and call the Kubernetes API.",
    fix="Add a ServiceAccount `default` with `automountServiceAccountToken: false` to the sandboxes' "
    "namespace (components/sandbox-provisioner/namespace does).",
)
def run_time_pods_token(ctx: Context) -> Iterator[Finding]:
    for namespace, res in sorted(ctx.sandbox_namespaces.items(), key=lambda item: item[0]):
        sa = ctx.find("ServiceAccount", namespace, "default")
        if sa is None:
            yield res, f"namespace {namespace} has no ServiceAccount default in the render"
        elif sa.obj.get("automountServiceAccountToken") is not False:
            yield sa, f"ServiceAccount {namespace}/default mounts its token in every pod made at run time"
