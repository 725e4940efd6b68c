"""The rendered objects as rules see them: resources, workloads, selectors.

Pod specs are found once here (Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob, Pod) so every rule walks the same containers the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
REPLICATED_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
COMPONENT = "app.kubernetes.io/component"
# Namespaces where pods are made at run time, not from the render: the sandbox provisioner's
# (kubernetes backend) creates its sandbox pods in the namespace its variable names, and the kit
# labels the Namespace it makes for them with this component.
RUN_TIME_POD_VARIABLES = ("K8S_NAMESPACE",)
SANDBOXES = "sandboxes"
# Pods an operator creates from a custom resource in the render: CloudNativePG instances carry the
# Cluster's inheritedMetadata labels plus these, and listen on these ports.
CNPG_PORTS = (
    {"name": "postgresql", "containerPort": 5432},
    {"name": "metrics", "containerPort": 9187},
    {"name": "status", "containerPort": 8000},
)


def as_mapping(value: Any) -> dict[str, Any]:
    """The value if it is a mapping, else {} (malformed input is the schema check's to report)."""
    return value if isinstance(value, dict) else {}


def as_mappings(value: Any) -> list[dict[str, Any]]:
    """The mapping items of a list (others are the schema check's to report)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


@dataclass(eq=False)
class Resource:
    """One rendered object."""

    obj: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def meta(self) -> dict[str, Any]:
        return as_mapping(self.obj.get("metadata"))

    @property
    def name(self) -> str:
        return str(self.meta.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.meta.get("namespace", ""))

    @property
    def labels(self) -> dict[str, str]:
        return as_mapping(self.meta.get("labels"))

    @property
    def annotations(self) -> dict[str, str]:
        return as_mapping(self.meta.get("annotations"))

    @property
    def spec(self) -> dict[str, Any]:
        return as_mapping(self.obj.get("spec"))

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(eq=False)
class Container:
    """A container of a workload; ``init`` for initContainers."""

    workload: Workload
    spec: dict[str, Any]
    init: bool = False

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def security(self) -> dict[str, Any]:
        return as_mapping(self.spec.get("securityContext"))

    @property
    def ports(self) -> list[dict[str, Any]]:
        return as_mappings(self.spec.get("ports"))

    def label(self) -> str:
        return f"{'initContainer' if self.init else 'container'} {self.name}"


@dataclass(eq=False)
class Workload:
    """An object that carries a pod spec (directly or through a template)."""

    resource: Resource
    pod_spec: dict[str, Any]
    pod_meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def namespace(self) -> str:
        return self.resource.namespace

    @property
    def pod_labels(self) -> dict[str, str]:
        return as_mapping(self.pod_meta.get("labels"))

    @property
    def component(self) -> str:
        return self.resource.labels.get(COMPONENT) or self.pod_labels.get(COMPONENT) or ""

    @property
    def long_running(self) -> bool:
        return self.kind in LONG_RUNNING_KINDS

    @property
    def replicas(self) -> int | None:
        if self.kind not in REPLICATED_KINDS:
            return None
        value = self.resource.spec.get("replicas", 1)
        return int(value) if isinstance(value, int) else 1

    @property
    def pod_security(self) -> dict[str, Any]:
        return as_mapping(self.pod_spec.get("securityContext"))

    @cached_property
    def containers(self) -> list[Container]:
        """Init containers first, then the main ones (ephemeral ones count as main)."""
        init = [Container(self, c, True) for c in as_mappings(self.pod_spec.get("initContainers"))]
        main = [Container(self, c) for c in as_mappings(self.pod_spec.get("containers"))]
        main += [Container(self, c) for c in as_mappings(self.pod_spec.get("ephemeralContainers"))]
        return init + main

    @property
    def main_containers(self) -> list[Container]:
        return [c for c in self.containers if not c.init]

    @property
    def primary(self) -> Container | None:
        """The container named after the component, else the first one."""
        main = self.main_containers
        for c in main:
            if c.name == self.component:
                return c
        return main[0] if main else None

    @property
    def volumes(self) -> list[dict[str, Any]]:
        return as_mappings(self.pod_spec.get("volumes"))


def _carries_pods(template: dict[str, Any]) -> bool:
    spec = as_mapping(template.get("spec"))
    return bool(as_mappings(spec.get("containers")) or as_mappings(spec.get("initContainers")))


def pod_template(res: Resource) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(pod spec, pod metadata) of an object that makes pods, or None.

    Every kind that carries a pod template goes through the pod rules: the workload kinds,
    ReplicationController, a bare PodTemplate (``template`` at the top), CronJob, and any other
    kind (a custom resource) whose ``spec.template`` or ``spec.jobTemplate`` holds containers,
    so a kind the rules do not know is never waved through.
    """
    if res.kind == "Pod":
        return res.spec, res.meta
    job_template = as_mapping(as_mapping(as_mapping(res.spec.get("jobTemplate")).get("spec")).get("template"))
    if res.kind == "PodTemplate":
        template = as_mapping(res.obj.get("template"))
    elif res.kind == "CronJob" or _carries_pods(job_template):
        template = job_template
    elif res.kind in POD_TEMPLATE_KINDS or _carries_pods(as_mapping(res.spec.get("template"))):
        template = as_mapping(res.spec.get("template"))
    else:
        return None
    return as_mapping(template.get("spec")), as_mapping(template.get("metadata"))


def operator_pods(res: Resource) -> list[Workload]:
    """Stand-ins for the pods an operator will create (for selector and port checks only)."""
    if res.kind != "Cluster" or res.group != "postgresql.cnpg.io":
        return []
    inherited = as_mapping(as_mapping(res.spec.get("inheritedMetadata")).get("labels"))
    base = {**inherited, "cnpg.io/cluster": res.name, "cnpg.io/podRole": "instance"}
    instances = res.spec.get("instances", 1)
    roles = ["primary"] + (["replica"] if isinstance(instances, int) and instances > 1 else [])
    spec = {"containers": [{"name": "postgres", "ports": [dict(p) for p in CNPG_PORTS]}]}
    return [Workload(res, spec, {"labels": {**base, "cnpg.io/instanceRole": r, "role": r}}) for r in roles]


def job_spec(res: Resource) -> dict[str, Any] | None:
    if res.kind == "Job":
        return res.spec
    if res.kind == "CronJob":
        return as_mapping(as_mapping(res.spec.get("jobTemplate")).get("spec"))
    return None


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; {} matches all."""
    if not isinstance(selector, dict):  # None, or malformed (the schema check reports that)
        return False
    for key, value in as_mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in as_mappings(selector.get("matchExpressions")):
        key, op = str(expr.get("key")), expr.get("operator")
        raw = expr.get("values")
        values: list[Any] = raw if isinstance(raw, list) else []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def map_matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A plain selector map (Services); an empty map selects nothing."""
    return (
        isinstance(selector, dict) and bool(selector) and all(labels.get(k) == v for k, v in selector.items())
    )


@dataclass
class Context:
    """What a rule sees: one overlay's objects, its environment and the policy config."""

    overlay: str
    env: str
    resources: list[Resource]
    config: dict[str, Any] = field(default_factory=dict)
    # rule id -> ids of the objects it flagged so far (for rules that run after the others)
    findings: dict[str, set[int]] = field(default_factory=dict)
    # ids of the rules that crashed on this render: what they flagged is not all there is
    crashed: set[str] = field(default_factory=set)
    # the validated path's own kustomization.yaml (None for plain manifests), for checks of its fields
    kustomization: dict[str, Any] | None = None
    # (dir, kustomization) of every local layer the render is built from, the validated path first
    layers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @cached_property
    def by_kind(self) -> dict[str, list[Resource]]:
        index: dict[str, list[Resource]] = defaultdict(list)
        for res in self.resources:
            index[res.kind].append(res)
        return index

    def of_kind(self, *kinds: str) -> list[Resource]:
        return [r for k in kinds for r in self.by_kind.get(k, [])]

    def find(self, kind: str, namespace: str, name: str) -> Resource | None:
        for res in self.by_kind.get(kind, []):
            if res.name == name and res.namespace == namespace:
                return res
        return None

    @cached_property
    def workloads(self) -> list[Workload]:
        found = []
        for res in self.resources:
            template = pod_template(res)
            if template is not None:
                found.append(Workload(res, *template))
        return found

    @cached_property
    def selectable_pods(self) -> list[Workload]:
        """The render's workloads plus the pods operators create from it (CloudNativePG instances):
        what Service, NetworkPolicy and PDB selectors can match."""
        return self.workloads + [p for res in self.resources for p in operator_pods(res)]

    def containers(self) -> Iterator[Container]:
        for w in self.workloads:
            yield from w.containers

    @cached_property
    def sandbox_namespaces(self) -> dict[str, Resource]:
        """namespace -> the object naming it, for every namespace whose pods are made at run time: the
        Namespaces labelled component `sandboxes` and the K8S_NAMESPACE given to a container."""
        found = {ns.name: ns for ns in self.of_kind("Namespace") if ns.labels.get(COMPONENT) == SANDBOXES}
        for c in self.containers():
            for entry in as_mappings(c.spec.get("env")):
                value = entry.get("value")
                if entry.get("name") in RUN_TIME_POD_VARIABLES and isinstance(value, str) and value:
                    found.setdefault(value, c.workload.resource)
        return found

    def pods_in(self, namespace: str) -> list[Workload]:
        return [w for w in self.workloads if w.namespace == namespace]

    def hpa_for(self, workload: Workload) -> Resource | None:
        for hpa in self.by_kind.get("HorizontalPodAutoscaler", []):
            ref = as_mapping(hpa.spec.get("scaleTargetRef"))
            if (
                hpa.namespace == workload.namespace
                and ref.get("kind") == workload.kind
                and ref.get("name") == workload.resource.name
            ):
                return hpa
        return None

    def effective_replicas(self, workload: Workload) -> int | None:
        """spec.replicas, or the HPA's minReplicas when an HPA scales the workload."""
        hpa = self.hpa_for(workload)
        if hpa is not None:
            value = hpa.spec.get("minReplicas", 1)
            return value if isinstance(value, int) else 1
        return workload.replicas

    def setting(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)
