"""Namespaces with Pod Security Admission, required labels, duplicates, workload selectors."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import yaml

from yuxi_k8s.validate.model import COMPONENT, POD_TEMPLATE_KINDS, Context, Resource, selector_matches
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "metadata"
PSA = "pod-security.kubernetes.io/"
PSA_ENFORCE = f"{PSA}enforce"
# The one Pod Security exception accepted (the sandboxes' namespace: upstream's sandbox pod runs as
# root): baseline enforced, restricted audited and warned.
PSA_EXCEPTION = {"enforce": "baseline", "audit": "restricted", "warn": "restricted"}
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")


@rule(
    "YK-NS-001",
    family=FAMILY,
    title="Namespace enforces Pod Security restricted",
    message="Without the PSA label the API server admits privileged pods into the namespace.",
    fix="Label the Namespace `pod-security.kubernetes.io/enforce: restricted` (and audit/warn alike).",
)
def psa_labels(ctx: Context) -> Iterator[Finding]:
    for ns in ctx.of_kind("Namespace"):
        value = ns.labels.get(PSA_ENFORCE)
        if value != "restricted":
            yield ns, f"{PSA_ENFORCE} is {value or 'unset'}"


@rule(
    "YK-NS-003",
    family=FAMILY,
    title="Pod Security exceptions stay baseline",
    message="A namespace that does not enforce restricted (an allowed exception of YK-NS-001, such as the "
    "sandboxes') must still enforce baseline and audit and warn restricted: `privileged`, or the audit "
    "and warn labels removed, admits privileged pods with host access in silence. This rule cannot be "
    "opted out of.",
    fix="Label the Namespace `pod-security.kubernetes.io/enforce: baseline`, `audit: restricted` and "
    "`warn: restricted` (or enforce restricted).",
    suppressible=False,
)
def psa_exception(ctx: Context) -> Iterator[Finding]:
    for ns in ctx.of_kind("Namespace"):
        if ns.labels.get(PSA_ENFORCE) == "restricted":
            continue
        wrong = [
            f"{PSA}{mode} is {ns.labels.get(PSA + mode) or 'unset'}"
            for mode, level in PSA_EXCEPTION.items()
            if ns.labels.get(PSA + mode) != level
        ]
        if wrong:
            yield ns, f"{', '.join(wrong)}: an exception must be exactly baseline, audit/warn restricted"


def _reserved(name: str, app_namespaces: set[str]) -> str | None:
    """Why *name* cannot hold sandboxes, or None."""
    if name.startswith("kube-") or name == "default":
        return f"{name} belongs to Kubernetes itself"
    if name in app_namespaces:
        return f"{name} is a namespace of the application's own pods"
    return None


@rule(
    "YK-NS-004",
    family=FAMILY,
    title="The sandboxes' namespace is their own",
    message="The sandboxes' namespace (SANDBOX_NAMESPACE) is relabelled Pod Security baseline, denied all "
    "traffic, capped by a quota and opened to the provisioner's `pods create`: set to kube-system, "
    "default or the application's namespace, that weakens and breaks what already runs there, and the "
    "right to create pods there is the right to read every Secret there.",
    fix="Set SANDBOX_NAMESPACE in overlays/<env>/app/site.ConfigMap.yaml to a namespace of its own "
    "(e.g. `yuxi-prod-sandboxes`): not kube-*, not default, not the application's.",
)
def sandbox_namespace_own(ctx: Context) -> Iterator[Finding]:
    app_namespaces = {w.namespace for w in ctx.workloads} | {
        ns.name for ns in ctx.of_kind("Namespace") if ns.name not in ctx.sandbox_namespaces
    }
    for name, res in sorted(ctx.sandbox_namespaces.items(), key=lambda item: item[0]):
        why = _reserved(name, app_namespaces)
        if why:
            yield res, f"sandboxes' namespace {why}"


@rule(
    "YK-NS-002",
    family=FAMILY,
    title="Workload namespaces are in the render",
    message="Pods in a namespace the render does not define depend on someone else's Pod Security labels.",
    fix="Add the Namespace (with its PSA labels) to the kustomization.",
)
def namespace_defined(ctx: Context) -> Iterator[Finding]:
    defined = {ns.name for ns in ctx.of_kind("Namespace")}
    reported = set()
    for w in ctx.workloads:
        if w.namespace not in defined and w.namespace not in reported:
            reported.add(w.namespace)
            yield w.resource, f"namespace {w.namespace or '(unset)'} is not defined in the render"


@rule(
    "YK-LBL-001",
    family=FAMILY,
    title="Required app.kubernetes.io labels",
    message="Every object carries app.kubernetes.io/name, part-of and managed-by so tools can find, "
    "group and prune what belongs to the kit.",
    fix="Add the labels with kustomize `labels:` (includeSelectors: false) in the kustomization.",
)
def required_labels(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        missing = [k for k in REQUIRED_LABELS if not res.labels.get(k)]
        if missing:
            yield res, f"missing labels {', '.join(missing)}"


@rule(
    "YK-LBL-002",
    family=FAMILY,
    title="Workloads carry a component label",
    message="Selectors, PDBs and NetworkPolicies tell workloads apart by app.kubernetes.io/component.",
    fix="Set `app.kubernetes.io/component` on the workload and its pod template.",
)
def component_label(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        if not w.resource.labels.get(COMPONENT):
            yield w.resource, f"workload has no {COMPONENT} label"
        if not w.pod_labels.get(COMPONENT) and w.kind != "Pod":
            yield w.resource, f"pod template has no {COMPONENT} label"


@rule(
    "YK-OBJ-001",
    family=FAMILY,
    title="No duplicate objects",
    message="Two objects with the same kind, namespace and name: the second silently replaces the first.",
    fix="Rename one of them or remove the duplicate from the kustomization.",
)
def duplicates(ctx: Context) -> Iterator[Finding]:
    counts = Counter((r.group, r.kind, r.namespace, r.name) for r in ctx.resources)
    seen = set()
    for res in ctx.resources:
        key = (res.group, res.kind, res.namespace, res.name)
        if counts[key] > 1 and key not in seen:
            seen.add(key)
            yield res, f"defined {counts[key]} times"


@rule(
    "YK-SEL-001",
    family=FAMILY,
    title="Workload selector matches its pod template",
    message="A selector that does not match the template's labels is rejected by the API server.",
    fix="Make `spec.selector.matchLabels` a subset of `spec.template.metadata.labels`.",
)
def workload_selector(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        if w.kind not in POD_TEMPLATE_KINDS or w.kind == "Job":
            continue
        selector = w.resource.spec.get("selector")
        if selector is None or not selector_matches(selector, w.pod_labels):
            yield w.resource, f"selector {selector} does not match template labels {w.pod_labels}"


@rule(
    "YK-OBJ-002",
    family=FAMILY,
    title="No duplicate env variables",
    message="When a container lists the same env variable twice, the last one silently wins.",
    fix="Keep one entry per variable name.",
)
def duplicate_env(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        counts = Counter(e.get("name") for e in c.spec.get("env") or [])
        for name, n in sorted(counts.items()):
            if n > 1:
                yield c.workload.resource, f"{c.label()} sets env {name} {n} times"


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _label_problem(key: str, value: object) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f"label key {key!r} has an invalid prefix"
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        return f"label key {key!r} is not a valid name"
    if len(str(value)) > 63 or not LABEL_NAME.match(str(value)):
        return f"label {key}={value!r} is not a valid value (63 chars, alphanumerics, -_.)"
    return None


@rule(
    "YK-OBJ-003",
    family=FAMILY,
    title="Names and labels are valid",
    message="Object names, label keys/values and container port names have syntax rules the schemas do not "
    "check; the API server rejects the object at apply time.",
    fix="Use lowercase DNS names (<= 253 chars), label values <= 63 chars of [A-Za-z0-9-_.], "
    "port names <= 15 chars of [a-z0-9-].",
)
def valid_names(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        if res.name and (len(res.name) > 253 or not DNS_SUBDOMAIN.match(res.name)):
            yield res, f"name {res.name!r} is not a lowercase DNS name"
        for key, value in res.labels.items():
            problem = _label_problem(key, value)
            if problem:
                yield res, problem
    for w in ctx.workloads:
        for key, value in w.pod_labels.items():
            problem = _label_problem(key, value)
            if problem:
                yield w.resource, f"pod template {problem}"
        for c in w.containers:
            for port in c.ports:
                name = str(port.get("name") or "")
                if name and (len(name) > 15 or not PORT_NAME.match(name) or not re.search("[a-z]", name)):
                    yield w.resource, f"{c.label()} port name {name!r} is invalid (<= 15 chars, [a-z0-9-])"


# PromQL label matchers that name objects of the render: label -> kind whose name it must be.
ALERT_MATCHERS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "job_name": "Job",
    "ingress": "Ingress",
}
MATCHER = re.compile(
    r'\b(exported_namespace|namespace|deployment|statefulset|job_name|ingress)\s*=\s*"([^"]*)"'
)


@rule(
    "YK-OBJ-004",
    family=FAMILY,
    title="Alerts query this render's objects",
    message="An alert expression that filters on another namespace or on a Deployment/Job/Ingress name the "
    "render does not have (e.g. after a namespace change or a name prefix) never fires.",
    fix="Use the render's namespace and object names in the PrometheusRule (kustomize `replacements` keep "
    "them in step with `namespace:` and `namePrefix:`).",
)
def alert_targets(ctx: Context) -> Iterator[Finding]:
    for pr in ctx.of_kind("PrometheusRule"):
        for group in pr.spec.get("groups") or []:
            for item in group.get("rules") or []:
                expr = str(item.get("expr", ""))
                name = item.get("alert") or item.get("record") or "?"
                for label, value in MATCHER.findall(expr):
                    if label in ("namespace", "exported_namespace"):
                        if value != pr.namespace:
                            yield pr, f'{name}: {label}="{value}" is not this namespace ({pr.namespace})'
                    elif not ctx.find(ALERT_MATCHERS[label], pr.namespace, value):
                        yield pr, f'{name}: {label}="{value}" names no {ALERT_MATCHERS[label]} in the render'


def _name_matches(pattern: str, name: str) -> bool:
    """A kustomize target name (a regex) against a rendered name, which may carry a name prefix/suffix."""
    try:
        return bool(re.fullmatch(pattern, name) or re.search(rf"(^|-)(?:{pattern})($|-)", name))
    except re.error:
        return pattern == name


def _targets(ctx: Context, kind: str | None, name: str | None) -> bool:
    return any(
        (not kind or res.kind == kind) and (not name or _name_matches(name, res.name))
        for res in ctx.resources
    )


@rule(
    "YK-OBJ-005",
    family=FAMILY,
    title="Kustomization patches and replicas hit an object",
    message="kustomize silently ignores a patch whose target matches nothing and a `replicas:` entry naming "
    "no workload: the environment then runs the base's settings while the overlay says otherwise.",
    fix="Fix the target's kind/name (before any name prefix), or remove the dead entry.",
)
def dead_patches(ctx: Context) -> Iterator[Finding]:
    for folder, kustomization in ctx.layers:
        where = Resource(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "metadata": {"name": folder},
            }
        )
        yield from _dead_entries(ctx, folder, kustomization, where)


def _patch_docs(folder: str, patch: dict) -> list[dict]:
    """The documents of a patch entry (inline or from its file); [] when unreadable."""
    text = patch.get("patch")
    if text is None and patch.get("path"):
        try:
            text = (Path(folder) / str(patch["path"])).read_text()
        except OSError:
            return []
    try:
        loaded = list(yaml.safe_load_all(str(text or "")))
    except yaml.YAMLError:
        return []
    return [d for d in loaded if isinstance(d, dict)]


def _deletes(folder: str, patch: dict) -> bool:
    docs = _patch_docs(folder, patch)
    return bool(docs) and all(d.get("$patch") == "delete" for d in docs)


def _dead_entries(ctx: Context, folder: str, kustomization: dict, where: Resource) -> Iterator[Finding]:
    for entry in kustomization.get("replicas") or []:
        if isinstance(entry, dict) and not _targets(ctx, None, re.escape(str(entry.get("name", "")))):
            yield where, f"replicas entry {entry.get('name')} names no object of the render"
    for i, patch in enumerate(kustomization.get("patches") or []):
        if not isinstance(patch, dict):
            continue
        if _deletes(folder, patch):
            continue  # `$patch: delete` removes its target: that it is not in the render is the point
        target = patch.get("target")
        if isinstance(target, dict):
            name = target.get("name")
            # `api|web`: each literal alternative must hit something, not just one of them
            names = (
                name.split("|")
                if isinstance(name, str) and re.fullmatch(r"[\w.-]+(\|[\w.-]+)+", name)
                else [name]
            )
            for part in names:
                if not _targets(ctx, target.get("kind"), part):
                    yield where, f"patches[{i}] target {target.get('kind')}/{part} matches nothing"
            continue
        for doc in _patch_docs(folder, patch):  # a strategic-merge patch names its own target
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
            if kind and name and not _targets(ctx, kind, re.escape(str(name))):
                yield where, f"patches[{i}] patches {kind}/{name}, which is not in the render"
