"""RBAC: no cluster-wide binding to the kit's accounts, no dangerous permissions, and each Role granting
exactly what its component needs (config `rbac_roles`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yuxi_k8s.validate.model import Context, Resource, as_mapping, as_mappings
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "rbac"
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
# Verbs that grant more than an action: every verb, RBAC escalation, acting as someone else.
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate"}
# Resources that hand over credentials or a shell: Secrets, exec/attach into pods, minted tokens.
DANGEROUS_RESOURCES = {"*", "secrets", "pods/exec", "pods/attach", "serviceaccounts/token"}
# Groups every ServiceAccount (or everyone) is in.
BROAD_GROUPS = ("system:serviceaccounts", "system:authenticated", "system:unauthenticated")


def _kit_namespaces(ctx: Context) -> set[str]:
    return {ns.name for ns in ctx.of_kind("Namespace")} | {r.namespace for r in ctx.resources if r.namespace}


def _kit_subjects(ctx: Context, binding: Resource) -> list[str]:
    """The binding's subjects that are accounts of the kit: ServiceAccounts of the render's namespaces,
    or a group they all belong to."""
    namespaces = _kit_namespaces(ctx)
    found = []
    for subject in as_mappings(binding.obj.get("subjects")):
        kind, name = subject.get("kind"), str(subject.get("name", ""))
        namespace = str(subject.get("namespace") or binding.namespace)
        if kind == "ServiceAccount" and namespace in namespaces:
            found.append(f"ServiceAccount {namespace}/{name}")
        elif kind == "Group" and (
            name in BROAD_GROUPS or name.removeprefix("system:serviceaccounts:") in namespaces
        ):
            found.append(f"Group {name}")
    return found


@rule(
    "YK-RBAC-001",
    family=FAMILY,
    title="No cluster-wide binding to the kit's accounts",
    message="A ClusterRoleBinding grants its role in every namespace: bound to one of the kit's "
    "ServiceAccounts (e.g. to cluster-admin), a compromised pod owns the cluster.",
    fix="Bind a Role of the namespace the account works in with a RoleBinding (the provisioner's Role in "
    "the sandboxes' namespace is the model).",
)
def cluster_bindings(ctx: Context) -> Iterator[Finding]:
    for binding in ctx.of_kind("ClusterRoleBinding"):
        for subject in _kit_subjects(ctx, binding):
            role = as_mapping(binding.obj.get("roleRef")).get("name")
            yield binding, f"binds {subject} to ClusterRole {role} in every namespace"


def _rules(role: Resource) -> list[dict[str, Any]]:
    return as_mappings(role.obj.get("rules"))


def _listed(item: dict[str, Any], key: str) -> list[str]:
    value = item.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


@rule(
    "YK-RBAC-002",
    family=FAMILY,
    title="No dangerous permissions",
    message="Secrets, exec and attach into pods, minted tokens, and the verbs escalate, bind, impersonate "
    "or `*` (or `*` resources or API groups) let whoever holds the role read every credential, run code in "
    "other pods or grant itself more.",
    fix="Grant the resources and verbs the component calls, by name (see `rbac_roles` in the config).",
)
def dangerous_permissions(ctx: Context) -> Iterator[Finding]:
    for role in ctx.of_kind(*ROLE_KINDS):
        for i, item in enumerate(_rules(role)):
            resources = set(_listed(item, "resources"))
            bad = sorted(resources & DANGEROUS_RESOURCES) + sorted(
                r for r in resources if r.endswith(("/*", "/exec", "/attach"))
            )
            bad += sorted(set(_listed(item, "verbs")) & DANGEROUS_VERBS)
            bad += ["apiGroups *"] if "*" in _listed(item, "apiGroups") else []
            bad += ["nonResourceURLs *"] if "*" in _listed(item, "nonResourceURLs") else []
            if bad:
                yield role, f"rules[{i}] grants {', '.join(dict.fromkeys(bad))}"


Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def _grants(items: list[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for item in items
        for group in _listed(item, "apiGroups")
        for resource in _listed(item, "resources")
        for verb in _listed(item, "verbs")
    }


def _allowed(ctx: Context, name: str) -> list[dict[str, Any]] | None:
    """The config's grants for a Role of this name (or of a name prefix + this name), None if unlisted."""
    table = as_mapping(ctx.setting("rbac_roles", {}))
    for listed, grants in table.items():
        if name == listed or name.endswith(f"-{listed}"):
            return as_mappings(grants)
    return None


@rule(
    "YK-RBAC-003",
    family=FAMILY,
    title="Each Role grants what its component needs",
    message="Every Role the render ships is listed in the config (`rbac_roles`) with the API calls its "
    "component makes, and grants nothing more; and the kit's accounts are bound only to such Roles, not "
    "to a ClusterRole (cluster-admin, admin, edit) whose rules the render does not show.",
    fix="Remove the extra resources and verbs (or add them to `rbac_roles` when the component really calls "
    "them), and bind the account to a Role of the render.",
)
def pinned_roles(ctx: Context) -> Iterator[Finding]:
    for role in ctx.of_kind(*ROLE_KINDS):
        allowed = _allowed(ctx, role.name)
        if allowed is None:
            yield role, f"{role.kind} {role.name} is not in the config's rbac_roles"
            continue
        extra = sorted(_grants(_rules(role)) - _grants(allowed))
        if extra:
            shown = ", ".join(f"{verb} {group or 'core'}/{resource}" for group, resource, verb in extra)
            yield role, f"grants more than its component needs: {shown}"
    for binding in ctx.of_kind(*BINDING_KINDS):
        ref = as_mapping(binding.obj.get("roleRef"))
        subjects = _kit_subjects(ctx, binding)
        if not subjects:
            continue
        if ref.get("kind") != "Role" or ctx.find("Role", binding.namespace, str(ref.get("name"))) is None:
            where = "" if ref.get("kind") == "Role" else f" {ref.get('kind')}"
            yield binding, f"binds {subjects[0]} to{where} {ref.get('name')}, not a Role of the render"
