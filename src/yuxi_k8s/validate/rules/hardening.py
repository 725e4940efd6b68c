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
