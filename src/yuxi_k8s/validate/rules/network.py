"""NetworkPolicy: default deny both ways, every pod covered, no allow-everything rule, ports that
exist, DNS reachable, and exactly the pod-to-pod flows of the architecture (config `network_flows`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, collapse_addresses, ip_network
from typing import Any

from yuxi_k8s.validate.model import Context, Resource, as_mapping, as_mappings, selector_matches
from yuxi_k8s.validate.rules import Finding, rule
from yuxi_k8s.validate.rules.jobs import _wave

FAMILY = "network"
DNS_PORTS = {53, "53", "dns", "dns-tcp"}
# The whole address space of each IP version: ipBlocks whose CIDRs together cover one of them are open
# to every address (their `except` lists notwithstanding: a few holes do not make a rule narrow).
EVERYWHERE: tuple[IPv4Network | IPv6Network, ...] = (ip_network("0.0.0.0/0"), ip_network("::/0"))


def _types(policy: Resource) -> list[str]:
    types = policy.spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", "Egress"] if "egress" in policy.spec else ["Ingress"]


def _denies_all(policy: Resource, direction: str) -> bool:
    """Selects every pod, has the direction in policyTypes, and allows nothing that way."""
    return (
        not policy.spec.get("podSelector")
        and direction in _types(policy)
        and not policy.spec.get(direction.lower())
    )


def _namespaces(ctx: Context) -> list[tuple[str, Resource]]:
    """Every namespace the render creates (its Namespace objects) or runs pods in, with the object a
    finding is reported on: the Namespace, else the first workload there."""
    seen: dict[str, Resource] = {ns.name: ns for ns in ctx.of_kind("Namespace")}
    for w in ctx.workloads:
        seen.setdefault(w.namespace, w.resource)
    return sorted(seen.items(), key=lambda item: item[0])


def _deny_rule(direction: str) -> Any:
    def check(ctx: Context) -> Iterator[Finding]:
        for ns, first in _namespaces(ctx):
            if not any(p.namespace == ns and _denies_all(p, direction) for p in ctx.of_kind("NetworkPolicy")):
                yield first, f"namespace {ns or '(unset)'} has no default-deny {direction} NetworkPolicy"

    return check


rule(
    "YK-NET-001",
    family=FAMILY,
    title="Default deny ingress",
    message="Without a default-deny ingress policy every pod accepts connections from anywhere "
    "in the cluster. Every namespace the render creates needs one, also those whose pods are made at "
    "run time (the sandboxes').",
    fix="Add a NetworkPolicy with `podSelector: {}`, `policyTypes: [Ingress]` and no ingress rules.",
)(_deny_rule("Ingress"))

rule(
    "YK-NET-002",
    family=FAMILY,
    title="Default deny egress",
    message="Without a default-deny egress policy a compromised pod can reach anything. Every namespace "
    "the render creates needs one, also those whose pods are made at run time (the sandboxes').",
    fix="Add a NetworkPolicy with `podSelector: {}`, `policyTypes: [Egress]` and no egress rules.",
)(_deny_rule("Egress"))


@rule(
    "YK-NET-003",
    family=FAMILY,
    title="Every pod has its own NetworkPolicy",
    message="A pod covered only by the namespace-wide deny has no declared flows: it is either broken "
    "or relies on an unreviewed exception.",
    fix="Add a NetworkPolicy whose podSelector matches the pod and allows exactly the flows it needs.",
)
def pod_selected(ctx: Context) -> Iterator[Finding]:
    policies = [p for p in ctx.of_kind("NetworkPolicy") if p.spec.get("podSelector")]
    for w in ctx.selectable_pods:
        if not any(
            p.namespace == w.namespace and selector_matches(p.spec["podSelector"], w.pod_labels)
            for p in policies
        ):
            yield w.resource, "no NetworkPolicy selects its pods"


def _ports_only_dns(rule_: dict[str, Any]) -> bool:
    ports = rule_.get("ports") or []
    return bool(ports) and all(p.get("port") in DNS_PORTS for p in ports)


def _selects_all(selector: Any) -> bool:
    """A label selector that any object can satisfy: absent, empty, or only `Exists` expressions (a
    label anyone creating a pod or namespace can set)."""
    selector = as_mapping(selector)
    if as_mapping(selector.get("matchLabels")):
        return False
    return all(e.get("operator") == "Exists" for e in as_mappings(selector.get("matchExpressions")))


def _open_peer(peer: dict[str, Any]) -> str | None:
    if (
        "namespaceSelector" in peer
        and _selects_all(peer["namespaceSelector"])
        and _selects_all(peer.get("podSelector"))
    ):
        return f"every pod of every namespace (namespaceSelector: {peer['namespaceSelector']})"
    return None


def _open_blocks(peers: list[Any]) -> str | None:
    """The rule's ipBlocks when together they cover every IPv4 or every IPv6 address."""
    blocks = [as_mapping(as_mapping(p).get("ipBlock")) for p in peers]
    cidrs = [str(b["cidr"]) for b in blocks if b.get("cidr")]
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ip_network(cidr, strict=False))
        except ValueError:
            continue  # not a CIDR: the schema check's to report
    for everything in EVERYWHERE:
        same = [n for n in networks if n.version == everything.version]
        if same and list(collapse_addresses(same)) == [everything]:  # type: ignore[arg-type,type-var]
            excepts = any(b.get("except") for b in blocks)
            return f"every address (ipBlock {', '.join(cidrs)}{' whatever its except' if excepts else ''})"
    return None


@rule(
    "YK-NET-004",
    family=FAMILY,
    title="No allow-everything rule",
    message="A rule without peers, or with every address (0.0.0.0/0 with or without `except`, CIDRs that "
    "together cover every IPv4 or IPv6 address such as 0.0.0.0/1 + 128.0.0.0/1) or every namespace "
    "(a namespaceSelector of `Exists` expressions only) as peer, undoes the default deny.",
    fix="Name the peers (podSelector/namespaceSelector/ipBlock with a narrow CIDR) and the ports.",
)
def allow_everything(ctx: Context) -> Iterator[Finding]:
    for policy in ctx.of_kind("NetworkPolicy"):
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for i, item in enumerate(policy.spec.get(direction) or []):
                item = item or {}
                peers = item.get(peers_key) or []
                if not peers:
                    if direction == "egress" and _ports_only_dns(item):
                        continue  # DNS to any resolver; the usual exception
                    yield policy, f"{direction}[{i}] has no `{peers_key}`: allows every peer"
                    continue
                if direction == "egress" and _ports_only_dns(item):
                    continue
                for why in [_open_peer(as_mapping(peer)) for peer in peers] + [_open_blocks(peers)]:
                    if why:
                        yield policy, f"{direction}[{i}] allows {why}"


@rule(
    "YK-NET-005",
    family=FAMILY,
    title="NetworkPolicy selects pods",
    message="A NetworkPolicy whose podSelector matches no pod is dead configuration, often a label typo.",
    fix="Fix the podSelector labels, or remove the policy from this render.",
)
def policy_selects(ctx: Context) -> Iterator[Finding]:
    for policy in ctx.of_kind("NetworkPolicy"):
        selector = policy.spec.get("podSelector")
        if not selector:
            continue
        if not any(
            w.namespace == policy.namespace and selector_matches(selector, w.pod_labels)
            for w in ctx.selectable_pods
        ):
            yield policy, f"podSelector {selector} matches no pod in the render"


def _declares(pods: list[Any], port: Any) -> bool:
    for w in pods:
        for c in w.main_containers:
            for p in c.ports:
                if port == p.get("name") or str(port) == str(p.get("containerPort")):
                    return True
    return False


def _selected(ctx: Context, namespace: str, selector: dict[str, Any]) -> list[Any]:
    return [
        w
        for w in ctx.selectable_pods
        if w.namespace == namespace and selector_matches(selector, w.pod_labels)
    ]


@rule(
    "YK-NET-006",
    family=FAMILY,
    title="NetworkPolicy ports exist",
    message="A policy port that the selected pods (ingress) or the peer pods in the render (egress) do not "
    "declare opens nothing useful and usually hides a typo that blocks the real flow.",
    fix="Use the container port (name or number) the pods actually listen on.",
)
def policy_ports(ctx: Context) -> Iterator[Finding]:
    for policy in ctx.of_kind("NetworkPolicy"):
        selector = policy.spec.get("podSelector") or {}
        targets = _selected(ctx, policy.namespace, selector) if selector else []
        for i, item in enumerate(policy.spec.get("ingress") or [] if targets else []):
            for port in (item or {}).get("ports") or []:
                if "port" in port and "endPort" not in port and not _declares(targets, port["port"]):
                    yield (
                        policy,
                        f"ingress[{i}] allows port {port['port']}, not declared by the selected pods",
                    )
        for i, item in enumerate(policy.spec.get("egress") or []):
            item = item or {}
            peers = [
                w
                for peer in item.get("to") or []
                if peer.get("podSelector") and "namespaceSelector" not in peer
                for w in _selected(ctx, policy.namespace, peer["podSelector"])
            ]
            for port in (item.get("ports") or []) if peers else []:
                if "port" in port and "endPort" not in port and not _declares(peers, port["port"]):
                    yield policy, f"egress[{i}] allows port {port['port']}, not declared by the peer pods"


# --- flows between the render's pods -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Flow:
    """Traffic one policy rule allows from src to dst pods; ports None = every port."""

    policy: Resource
    direction: str  # Ingress | Egress
    src: Any
    dst: Any
    ports: frozenset[int] | None
    explicit: bool  # the peer was named (podSelector), not left empty


def _peer_pods(ctx: Context, policy: Resource, peer: dict[str, Any]) -> list[Any]:
    """Pods of the policy's namespace that a peer selects ([] for ipBlocks and other namespaces)."""
    if "ipBlock" in peer:
        return []
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is not None:
        named = (ns_selector.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
        if named != policy.namespace:
            return []
    return _selected(ctx, policy.namespace, peer.get("podSelector") or {})


def _numbers(ports: list[dict[str, Any]], dst: Any) -> frozenset[int] | None:
    if not ports:
        return None
    out: set[int] = set()
    for p in ports:
        port = p.get("port")
        if port is None:
            return None
        if isinstance(port, int) or str(port).isdigit():
            end = p.get("endPort")
            out |= set(range(int(port), int(end) + 1)) if end else {int(port)}
        else:
            out |= {
                cp["containerPort"] for c in dst.main_containers for cp in c.ports if cp.get("name") == port
            }
    return frozenset(out)


def flows(ctx: Context) -> list[Flow]:
    """Every (policy rule, source pod, destination pod) the render's NetworkPolicies allow in-namespace."""
    found = []
    for policy in ctx.of_kind("NetworkPolicy"):
        selected = _selected(ctx, policy.namespace, policy.spec.get("podSelector") or {})
        everyone = _selected(ctx, policy.namespace, {})
        for direction, key, peer_key in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
            if direction not in _types(policy):
                continue
            for item in policy.spec.get(key) or []:
                item = item or {}
                peers = item.get(peer_key) or []
                others = [w for peer in peers for w in _peer_pods(ctx, policy, peer)] if peers else everyone
                for pod in selected:
                    for other in others:
                        src, dst = (other, pod) if direction == "Ingress" else (pod, other)
                        ports = _numbers(item.get("ports") or [], dst)
                        found.append(Flow(policy, direction, src, dst, ports, bool(peers)))
    return found


def _architecture(ctx: Context) -> dict[str, dict[str, set[int]]]:
    table = ctx.setting("network_flows", {}) or {}
    return {src: {dst: set(ports) for dst, ports in (dsts or {}).items()} for src, dsts in table.items()}


@rule(
    "YK-NET-007",
    family=FAMILY,
    title="DNS egress allowed",
    message="Under a default-deny egress policy a pod without an egress rule to port 53 cannot resolve "
    "any Service name.",
    fix="Allow egress to the cluster DNS (kube-system/kube-dns) on UDP and TCP 53 for every pod.",
)
def dns_egress(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        policies = [
            p
            for p in ctx.of_kind("NetworkPolicy")
            if p.namespace == w.namespace
            and "Egress" in _types(p)
            and selector_matches(p.spec.get("podSelector") or {}, w.pod_labels)
        ]
        if not policies:
            continue  # egress not restricted for this pod
        if not any(_allows_dns(p) for p in policies):
            yield w.resource, "egress is restricted and no rule allows DNS (port 53)"


def _allows_dns(policy: Resource) -> bool:
    return any(
        not (item or {}).get("ports")
        or any(str(x.get("port")) in {"53", "dns", "dns-tcp"} for x in item["ports"])
        for item in policy.spec.get("egress") or []
    )


# The order a delivery path applies objects in. Flux and plain kubectl: the rollout stages
# (gitops/flux/stages; an object without the annotation belongs to the migrate stage), each applied
# and waited for before the next. Argo CD: the sync waves.
ROLLOUT_STAGE = "yuxi-k8s.io/rollout-stage"
STAGES = {"database": 0, "migrate": 1, "app": 2}


def _stage(res: Resource) -> float:
    return STAGES.get(str(res.annotations.get(ROLLOUT_STAGE, "migrate")), 1)


def _moment(what: str, value: float) -> str:
    if what == "rollout stage":
        return next((name for name, n in STAGES.items() if n == value), f"{value:g}")
    return f"{value:g}"


ORDERS: tuple[tuple[str, Any], ...] = (("rollout stage", _stage), ("Argo CD sync wave", _wave))


@rule(
    "YK-NET-010",
    family=FAMILY,
    title="DNS egress arrives with the pods",
    message="A pod whose egress a NetworkPolicy restricts must be able to resolve names from the moment "
    "it runs. When the policy that allows DNS is applied in a later rollout stage (or Argo CD wave) "
    "than the pod and the policy that restricts it, the pod cannot resolve any name until then, and "
    "a stage that waits for the pod to be ready never finishes: e.g. the CloudNativePG replicas "
    "stream through `postgres-rw` and the backup sidecar resolves the object store.",
    fix="Allow DNS (kube-system/kube-dns, UDP and TCP 53) in a policy of the pod's own stage and wave, "
    "e.g. in the egress-restricting policy itself (components/cloudnative-pg's `postgres-cluster`).",
)
def dns_egress_in_stage(ctx: Context) -> Iterator[Finding]:
    egress = [p for p in ctx.of_kind("NetworkPolicy") if "Egress" in _types(p)]
    reported: set[tuple[int, str]] = set()
    for w in ctx.selectable_pods:
        selecting = [
            p
            for p in egress
            if p.namespace == w.namespace and selector_matches(p.spec.get("podSelector") or {}, w.pod_labels)
        ]
        for what, order in ORDERS:
            start = order(w.resource)
            moments = sorted({start} | {order(p) for p in selecting if order(p) > start})
            for moment in moments:
                applied = [p for p in selecting if order(p) <= moment]
                if (id(w.resource), what) in reported:
                    break
                if applied and not any(_allows_dns(p) for p in applied):
                    reported.add((id(w.resource), what))
                    names = ", ".join(sorted(p.name for p in applied))
                    later = sorted(p.name for p in selecting if _allows_dns(p))
                    yield (
                        w.resource,
                        f"its pods' egress is restricted ({names}) at {what} {_moment(what, moment)} "
                        "and no policy applied by then allows DNS"
                        + (f" ({', '.join(later)} comes later)" if later else ""),
                    )
                    break


@rule(
    "YK-NET-008",
    family=FAMILY,
    title="Only the architecture's flows",
    message="Every pod-to-pod flow a NetworkPolicy opens must be one the architecture needs "
    "(config `network_flows`: web -> api 5050, api -> postgres 5432, ...); anything else widens "
    "the blast radius of a compromised pod.",
    fix="Remove the extra peer or port, or add the flow to `network_flows` in the config if the "
    "architecture really changed. (Components the table does not mention are not checked.)",
)
def extra_flows(ctx: Context) -> Iterator[Finding]:
    table = _architecture(ctx)
    known = set(table) | {dst for dsts in table.values() for dst in dsts}
    reported = set()
    for f in flows(ctx):
        if not f.explicit or f.src.component not in known or f.dst.component not in known:
            continue  # empty peer lists are YK-NET-004's; components outside the table are not described
        allowed = table.get(f.src.component, {}).get(f.dst.component, set())
        extra = "every port" if f.ports is None else ", ".join(map(str, sorted(f.ports - allowed)))
        key = (f.policy.name, f.direction, f.src.component, f.dst.component, extra)
        if extra and key not in reported:
            reported.add(key)
            yield f.policy, f"{f.direction.lower()} allows {f.src.component} -> {f.dst.component} on {extra}"


@rule(
    "YK-NET-009",
    family=FAMILY,
    title="The architecture's flows are open",
    message="A flow the architecture needs (config `network_flows`) that the policies block breaks the "
    "app at run time: e.g. the api cannot reach PostgreSQL.",
    fix="Allow the flow on both sides: egress from the source pods and ingress to the destination pods.",
)
def required_flows(ctx: Context) -> Iterator[Finding]:
    table = _architecture(ctx)
    allowed = flows(ctx)
    policies = ctx.of_kind("NetworkPolicy")

    def isolated(pod: Any, direction: str) -> bool:
        return any(
            p.namespace == pod.namespace
            and direction in _types(p)
            and selector_matches(p.spec.get("podSelector") or {}, pod.pod_labels)
            for p in policies
        )

    for src in ctx.selectable_pods:
        for dst in ctx.selectable_pods:
            if src.namespace != dst.namespace or src is dst:
                continue  # a pod does not need a policy to talk to itself
            for port in sorted(table.get(src.component, {}).get(dst.component, set())):
                for direction in ("Egress", "Ingress"):
                    side = src if direction == "Egress" else dst
                    if not isolated(side, direction):
                        continue
                    if not any(
                        f.direction == direction
                        and f.src is src
                        and f.dst is dst
                        and (f.ports is None or port in f.ports)
                        for f in allowed
                    ):
                        verb = "egress from" if direction == "Egress" else "ingress to"
                        flow = f"{src.component} -> {dst.component}:{port}"
                        yield side.resource, f"{flow} is blocked ({verb} {side.component})"
