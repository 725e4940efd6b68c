"""Availability outside dev: replicas, PodDisruptionBudgets, spread, autoscaling sanity."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource, Workload, selector_matches
from yuxi_k8s.validate.rules import OUTSIDE_DEV, Finding, rule

FAMILY = "availability"


def min_replicas(ctx: Context, w: Workload) -> int:
    by_component = (ctx.setting("min_replicas_by_component", {}) or {}).get(ctx.env, {}) or {}
    default = (ctx.setting("min_replicas", {}) or {}).get(ctx.env, 1)
    return int(by_component.get(w.component, default))


def _multi(ctx: Context) -> Iterator[tuple[Workload, int]]:
    for w in ctx.workloads:
        n = ctx.effective_replicas(w)
        if n is not None and (n >= 2 or ctx.hpa_for(w) is not None):
            yield w, n


def pdbs_for(ctx: Context, w: Workload) -> list[Resource]:
    return [
        pdb
        for pdb in ctx.of_kind("PodDisruptionBudget")
        if pdb.namespace == w.namespace and selector_matches(pdb.spec.get("selector"), w.pod_labels)
    ]


@rule(
    "YK-AVL-001",
    family=FAMILY,
    title="Enough replicas",
    message="Outside dev a single replica means downtime on every rollout, drain and crash "
    "(the api needs at least 3 in prod).",
    fix="Raise `spec.replicas` (or the HPA's minReplicas) to the environment's minimum.",
    envs=OUTSIDE_DEV,
)
def replicas(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        n = ctx.effective_replicas(w)
        if n is not None and n < min_replicas(ctx, w):
            yield w.resource, f"{n} replica(s), {ctx.env} needs at least {min_replicas(ctx, w)}"


@rule(
    "YK-AVL-002",
    family=FAMILY,
    title="PodDisruptionBudget for replicated workloads",
    message="Without a PDB a node drain may evict every replica at once.",
    fix="Add a PodDisruptionBudget (maxUnavailable: 1) whose selector matches the pod labels.",
    envs=OUTSIDE_DEV,
)
def pdb_present(ctx: Context) -> Iterator[Finding]:
    for w, n in _multi(ctx):
        if not pdbs_for(ctx, w):
            yield w.resource, f"{n} replicas and no PodDisruptionBudget selects its pods"


@rule(
    "YK-AVL-003",
    family=FAMILY,
    title="Replicas spread across nodes",
    message="Replicas the scheduler may put on one node all fail with that node.",
    fix="Add `topologySpreadConstraints` on kubernetes.io/hostname (or a podAntiAffinity) whose "
    "labelSelector matches the workload's own pod labels.",
    envs=OUTSIDE_DEV,
)
def spread(ctx: Context) -> Iterator[Finding]:
    for w, n in _multi(ctx):
        anti = (w.pod_spec.get("affinity") or {}).get("podAntiAffinity") or {}
        constraints = w.pod_spec.get("topologySpreadConstraints") or []
        terms = [
            t.get("podAffinityTerm") or t
            for key in (
                "requiredDuringSchedulingIgnoredDuringExecution",
                "preferredDuringSchedulingIgnoredDuringExecution",
            )
            for t in anti.get(key) or []
        ]
        selectors = [c.get("labelSelector") for c in constraints] + [t.get("labelSelector") for t in terms]
        if not selectors:
            yield w.resource, f"{n} replicas without topologySpreadConstraints or podAntiAffinity"
        elif not any(selector_matches(sel, w.pod_labels) for sel in selectors):
            # A spread over a selector that misses the pods themselves spreads nothing.
            yield (
                w.resource,
                f"no spread or anti-affinity labelSelector matches its own pods ({w.pod_labels})",
            )


def _percent(value: object) -> int | None:
    text = str(value)
    return int(text[:-1]) if text.endswith("%") and text[:-1].isdigit() else None


@rule(
    "YK-AVL-004",
    family=FAMILY,
    title="PDB allows evictions",
    message="A PDB with maxUnavailable 0 or minAvailable equal to the replicas blocks every node drain.",
    fix="Use `maxUnavailable: 1` (or minAvailable below the replica count).",
)
def pdb_blocks(ctx: Context) -> Iterator[Finding]:
    for pdb in ctx.of_kind("PodDisruptionBudget"):
        spec = pdb.spec
        if "maxUnavailable" in spec:
            value = spec["maxUnavailable"]
            if value == 0 or _percent(value) == 0 or str(value) == "0":
                yield pdb, "maxUnavailable is 0"
            continue
        if "minAvailable" not in spec:
            continue
        value = spec["minAvailable"]
        if _percent(value) == 100:
            yield pdb, "minAvailable is 100%"
            continue
        for w in ctx.workloads:
            n = ctx.effective_replicas(w)
            if (
                n is not None
                and w.namespace == pdb.namespace
                and selector_matches(spec.get("selector"), w.pod_labels)
                and isinstance(value, int)
                and value >= n
            ):
                yield pdb, f"minAvailable {value} >= {n} replicas of {w.resource}"


@rule(
    "YK-AVL-005",
    family=FAMILY,
    title="HorizontalPodAutoscaler is consistent",
    message="An HPA must target a workload in the render, with minReplicas <= maxReplicas, "
    "at least the environment's minimum, and the workload's own replicas inside that range.",
    fix="Point scaleTargetRef at the workload and fix minReplicas/maxReplicas (or the workload's replicas).",
)
def hpa(ctx: Context) -> Iterator[Finding]:
    for res in ctx.of_kind("HorizontalPodAutoscaler"):
        ref = res.spec.get("scaleTargetRef") or {}
        target = next(
            (
                w
                for w in ctx.workloads
                if w.namespace == res.namespace
                and w.kind == ref.get("kind")
                and w.resource.name == ref.get("name")
            ),
            None,
        )
        low, high = int(res.spec.get("minReplicas", 1)), int(res.spec.get("maxReplicas", 0))
        if target is None:
            yield res, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not in the render"
            continue
        if low > high:
            yield res, f"minReplicas {low} > maxReplicas {high}"
        if ctx.env != "dev" and low < min_replicas(ctx, target):
            yield res, f"minReplicas {low} below the {ctx.env} minimum {min_replicas(ctx, target)}"
        own = target.resource.spec.get("replicas")
        if isinstance(own, int) and not low <= own <= high:
            yield res, f"{target.resource} sets replicas {own}, outside the HPA range {low}-{high}"


@rule(
    "YK-AVL-006",
    family=FAMILY,
    title="PDB selects pods",
    message="A PodDisruptionBudget whose selector matches no pod protects nothing.",
    fix="Make the PDB's selector match the workload's pod template labels.",
)
def pdb_selects(ctx: Context) -> Iterator[Finding]:
    for pdb in ctx.of_kind("PodDisruptionBudget"):
        selector = pdb.spec.get("selector")
        if not any(
            w.namespace == pdb.namespace and selector_matches(selector, w.pod_labels)
            for w in ctx.selectable_pods
        ):
            yield pdb, f"selector {selector} matches no pod in the render"


@rule(
    "YK-AVL-007",
    family=FAMILY,
    title="One PDB per pod",
    message="When several PodDisruptionBudgets select the same pod, the eviction API refuses to evict it "
    "and node drains hang.",
    fix="Narrow the PDB selectors (add app.kubernetes.io/component) so each pod has exactly one.",
)
def overlapping_pdbs(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        found = pdbs_for(ctx, w)
        if len(found) > 1:
            yield w.resource, f"pods selected by {len(found)} PDBs: {', '.join(p.name for p in found)}"


def _absolute(value: object, replicas: int) -> int:
    """An int-or-percent rollout/PDB value as a pod count (percent rounded up, as maxSurge does)."""
    percent = _percent(value)
    if percent is not None:
        return -(-percent * replicas // 100)
    return int(value) if isinstance(value, int) else 0


@rule(
    "YK-AVL-008",
    family=FAMILY,
    title="Rollouts keep serving",
    message="Outside dev a rollout must keep pods serving: `Recreate`, or a rolling update that may take "
    "every replica down at once, is an outage on every deploy.",
    fix="Use `strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}` "
    "(or maxUnavailable below the replica count).",
    envs=OUTSIDE_DEV,
)
def rollout_strategy(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        if w.kind != "Deployment":
            continue
        n = ctx.effective_replicas(w) or 1
        strategy = w.resource.spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            yield w.resource, "strategy Recreate stops every pod before starting new ones"
            continue
        rolling = strategy.get("rollingUpdate") or {}
        unavailable = _absolute(rolling.get("maxUnavailable", "25%"), n)
        if unavailable >= n:
            yield (
                w.resource,
                f"maxUnavailable {rolling.get('maxUnavailable')} lets all {n} replicas go down at once",
            )


@rule(
    "YK-AVL-009",
    family=FAMILY,
    title="Volumes shared by replicas allow it",
    message="A ReadWriteOnce claim mounted by a workload with several replicas (or an HPA) pins every pod to "
    "one node; pods elsewhere stay ContainerCreating (Multi-Attach error).",
    fix="Use a ReadWriteMany claim (or ReadOnlyMany mounted readOnly), or a StatefulSet volumeClaimTemplate.",
)
def shared_claims(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        n = ctx.effective_replicas(w)
        if w.kind != "Deployment" or n is None or (n < 2 and ctx.hpa_for(w) is None):
            continue
        for vol in w.volumes:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            pvc = ctx.find("PersistentVolumeClaim", w.namespace, claim) if claim else None
            if pvc is None:
                continue
            modes = set(pvc.spec.get("accessModes") or [])
            mounts = [
                m
                for c in w.containers
                for m in c.spec.get("volumeMounts") or []
                if m.get("name") == vol.get("name")
            ]
            read_only = bool((vol.get("persistentVolumeClaim") or {}).get("readOnly")) or (
                bool(mounts) and all(m.get("readOnly") for m in mounts)
            )
            if "ReadWriteMany" in modes or ("ReadOnlyMany" in modes and read_only):
                continue
            yield w.resource, f"{n} replicas share claim {claim} with access modes {sorted(modes) or 'unset'}"


@rule(
    "YK-AVL-010",
    family=FAMILY,
    title="Hard spread counts only the nodes the pods may use",
    message="A topologySpreadConstraint with `whenUnsatisfiable: DoNotSchedule` counts, by default "
    "(`nodeTaintsPolicy: Ignore`), every node of the topology, also the tainted ones the pods do not "
    "tolerate (control plane, dedicated pools): they are domains with no pod that never get one, the "
    "skew cannot be met, and the pods an HPA adds stay Pending.",
    fix="Set `nodeTaintsPolicy: Honor` on every DoNotSchedule constraint (base/api.Deployment.yaml).",
)
def spread_honours_taints(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for c in w.pod_spec.get("topologySpreadConstraints") or []:
            hard = isinstance(c, dict) and c.get("whenUnsatisfiable") == "DoNotSchedule"
            if hard and c.get("nodeTaintsPolicy") != "Honor":
                yield (
                    w.resource,
                    f"DoNotSchedule spread over {c.get('topologyKey')} without nodeTaintsPolicy: Honor",
                )
