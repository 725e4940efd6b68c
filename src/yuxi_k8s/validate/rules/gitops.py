"""GitOps entry points: Argo CD Applications in a restricted AppProject, Flux Kustomizations applied as a
ServiceAccount of their own rather than as the controller."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource, as_mapping, as_mappings
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "gitops"
ARGO = "argoproj.io"
FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io"


def _project_problems(project: Resource) -> list[str]:
    """What makes an AppProject open: any repository, any destination, any cluster-scoped kind."""
    spec = project.spec
    problems = []
    repos = spec.get("sourceRepos")
    if not isinstance(repos, list) or not repos or "*" in repos:
        problems.append("sourceRepos is not a list of repositories")
    for dest in as_mappings(spec.get("destinations")) or [{}]:
        if "*" in (str(dest.get("namespace", "*")), str(dest.get("server") or dest.get("name") or "*")):
            problems.append(f"destination {dest or '(none)'} is a wildcard")
    for item in as_mappings(spec.get("clusterResourceWhitelist")):
        if "*" in (str(item.get("group")), str(item.get("kind"))):
            problems.append(f"clusterResourceWhitelist allows {item.get('group')}/{item.get('kind')}")
    return problems


@rule(
    "YK-GIT-001",
    family=FAMILY,
    title="Argo CD Applications use a restricted AppProject",
    message="Argo CD's `default` project lets an Application sync any repository into any namespace of "
    "any cluster, cluster-scoped objects (ClusterRoleBindings, webhooks) included: a change to the "
    "watched branch can then take the cluster.",
    fix="Put the Application in an AppProject of the render with its repository in `sourceRepos`, its "
    "namespaces in `destinations` and only `Namespace` in `clusterResourceWhitelist` "
    "(gitops/argocd/<env>.AppProject.yaml).",
)
def restricted_projects(ctx: Context) -> Iterator[Finding]:
    for app in ctx.of_kind("Application"):
        if app.group != ARGO:
            continue
        name = str(app.spec.get("project") or "default")
        project = ctx.find("AppProject", app.namespace, name)
        if name == "default" or project is None:
            yield app, f"project {name} is {'the open default' if name == 'default' else 'not in the render'}"
            continue
        for problem in _project_problems(project):
            yield project, problem


@rule(
    "YK-GIT-002",
    family=FAMILY,
    title="Flux applies as a ServiceAccount of its own",
    message="A Flux Kustomization without `serviceAccountName` is applied with kustomize-controller's own "
    "identity, cluster-admin: whatever lands on the watched branch is applied with every right.",
    fix="Set `spec.serviceAccountName` to a ServiceAccount in the Kustomization's namespace, bound by "
    "RoleBindings in the environment's namespaces only (gitops/flux/<env>/deployer.ServiceAccount.yaml).",
)
def impersonation(ctx: Context) -> Iterator[Finding]:
    for ks in ctx.of_kind("Kustomization"):
        if ks.group != FLUX_KUSTOMIZE:
            continue
        account = ks.spec.get("serviceAccountName")
        if not account:
            yield ks, "no serviceAccountName: applied as kustomize-controller itself"
        elif ctx.find("ServiceAccount", ks.namespace, str(account)) is None:
            yield ks, f"ServiceAccount {ks.namespace}/{account} is not in the render"
        elif not any(
            as_mapping(s).get("kind") == "ServiceAccount"
            and as_mapping(s).get("name") == account
            and as_mapping(s).get("namespace") == ks.namespace
            for b in ctx.of_kind("RoleBinding")
            for s in as_mappings(b.obj.get("subjects"))
        ):
            yield ks, f"ServiceAccount {ks.namespace}/{account} has no RoleBinding in the render"


@rule(
    "YK-GIT-003",
    family=FAMILY,
    title="Flux forces no whole stage",
    message="`spec.force: true` on a Flux Kustomization makes kustomize-controller delete and recreate every "
    "object of it whose change the API server refuses as immutable or invalid (422): a resized "
    "PersistentVolumeClaim, and the data on it, is deleted with the rest. Only the objects that must be "
    "recreated (a Job, whose pod template is immutable) should be forced, each by its own annotation.",
    fix="Remove `spec.force` and annotate the object to recreate with `kustomize.toolkit.fluxcd.io/force: "
    "enabled` (base/migrate.Job.yaml).",
)
def whole_stage_forced(ctx: Context) -> Iterator[Finding]:
    for ks in ctx.of_kind("Kustomization"):
        if ks.group == FLUX_KUSTOMIZE and ks.spec.get("force") is True:
            yield (
                ks,
                "spec.force: true recreates any object of the stage whose change is refused, PVCs included",
            )
