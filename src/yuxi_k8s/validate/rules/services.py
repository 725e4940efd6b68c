"""Services and Ingresses: selectors that match pods, ports that exist, no stray exposure."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource, Workload, map_matches, selector_matches
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "services"


def backends(ctx: Context, svc: Resource) -> list[Workload]:
    selector = svc.spec.get("selector")
    return [
        w for w in ctx.selectable_pods if w.namespace == svc.namespace and map_matches(selector, w.pod_labels)
    ]


@rule(
    "YK-SVC-001",
    family=FAMILY,
    title="Service selector matches pods",
    message="A Service whose selector matches no pod template has no endpoints: a dangling Service.",
    fix="Make `spec.selector` a subset of the workload's pod template labels.",
)
def selector_matches_pods(ctx: Context) -> Iterator[Finding]:
    for svc in ctx.of_kind("Service"):
        if svc.spec.get("selector") and not backends(ctx, svc):
            yield svc, f"selector {svc.spec['selector']} matches no pod template in the render"


@rule(
    "YK-SVC-002",
    family=FAMILY,
    title="Service targetPort exists",
    message="A targetPort (name or number) that no selected container declares sends traffic nowhere.",
    fix="Set `targetPort` to a container port name or number of the selected pods.",
)
def target_ports(ctx: Context) -> Iterator[Finding]:
    for svc in ctx.of_kind("Service"):
        pods = backends(ctx, svc)
        if not pods:
            continue
        ports = [p for w in pods for c in w.main_containers for p in c.ports]
        names = {p.get("name") for p in ports}
        numbers = {p.get("containerPort") for p in ports}
        for port in svc.spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            ok = (
                target in names
                if isinstance(target, str) and not target.isdigit()
                else int(target) in numbers
            )
            if not ok:
                yield (
                    svc,
                    f"port {port.get('name') or port.get('port')} targets {target}, not a container port",
                )


@rule(
    "YK-SVC-003",
    family=FAMILY,
    title="No NodePort/LoadBalancer exposure",
    message="The api (and the web front that proxies it) are reached only through the Ingress; "
    "a NodePort or LoadBalancer Service bypasses it, its TLS and its NetworkPolicy peer.",
    fix="Use `type: ClusterIP` and route external traffic through the Ingress (components/ingress).",
)
def service_type(ctx: Context) -> Iterator[Finding]:
    for svc in ctx.of_kind("Service"):
        kind = svc.spec.get("type", "ClusterIP")
        if kind in ("NodePort", "LoadBalancer"):
            yield svc, f"type {kind} in {ctx.env}"


@rule(
    "YK-SVC-004",
    family=FAMILY,
    title="Ingress backends exist",
    message="An Ingress path pointing at a missing Service or port answers 503.",
    fix="Point the backend at a Service in the render and one of its port names or numbers.",
)
def ingress_backends(ctx: Context) -> Iterator[Finding]:
    for ing in ctx.of_kind("Ingress"):
        backs = [ing.spec.get("defaultBackend")] if ing.spec.get("defaultBackend") else []
        for r in ing.spec.get("rules") or []:
            backs += [p.get("backend") for p in ((r.get("http") or {}).get("paths") or [])]
        for back in backs:
            service = (back or {}).get("service")
            if not service:
                continue
            svc = ctx.find("Service", ing.namespace, service.get("name", ""))
            if svc is None:
                yield ing, f"backend Service {service.get('name')} is not in the render"
                continue
            want = service.get("port") or {}
            ports = svc.spec.get("ports") or []
            if "name" in want and want["name"] not in {p.get("name") for p in ports}:
                yield ing, f"Service {svc.name} has no port named {want['name']}"
            if "number" in want and want["number"] not in {p.get("port") for p in ports}:
                yield ing, f"Service {svc.name} has no port {want['number']}"


@rule(
    "YK-SVC-005",
    family=FAMILY,
    title="Prod Ingress terminates TLS",
    message="A production Ingress without `tls` serves logins and tokens over plain HTTP.",
    fix="Add `spec.tls` with the hosts and a certificate Secret (e.g. from cert-manager).",
    envs=("prod",),
)
def ingress_tls(ctx: Context) -> Iterator[Finding]:
    for ing in ctx.of_kind("Ingress"):
        hosts = {r.get("host") for r in ing.spec.get("rules") or [] if r.get("host")}
        covered = {h for t in ing.spec.get("tls") or [] for h in t.get("hosts") or []}
        if not ing.spec.get("tls") or hosts - covered:
            missing = ", ".join(sorted(hosts - covered)) or "all hosts"
            yield ing, f"no TLS for {missing}"


@rule(
    "YK-SVC-006",
    family=FAMILY,
    title="Service selects one component",
    message="A selector that matches the pods of several components (e.g. only app.kubernetes.io/name) "
    "load-balances requests onto the wrong workloads.",
    fix="Add `app.kubernetes.io/component` to the Service selector.",
)
def one_component(ctx: Context) -> Iterator[Finding]:
    for svc in ctx.of_kind("Service"):
        pods = backends(ctx, svc)
        components = sorted({w.component or w.resource.name for w in pods})
        if len(components) > 1:
            yield svc, f"selector {svc.spec['selector']} matches pods of {', '.join(components)}"


@rule(
    "YK-SVC-007",
    family=FAMILY,
    title="ServiceMonitor selects a Service and its port",
    message="A ServiceMonitor whose selector matches no Service, or whose endpoint port name the Service "
    "does not have, scrapes nothing and its alerts never fire.",
    fix="Match the Service's labels in `spec.selector` and use one of its port names in `endpoints[].port`.",
)
def service_monitors(ctx: Context) -> Iterator[Finding]:
    for sm in ctx.of_kind("ServiceMonitor"):
        ns_selector = sm.spec.get("namespaceSelector") or {}
        if ns_selector.get("any") or [n for n in ns_selector.get("matchNames") or [] if n != sm.namespace]:
            continue  # scrapes other namespaces: not checkable from this render
        services = [
            s
            for s in ctx.of_kind("Service")
            if s.namespace == sm.namespace and selector_matches(sm.spec.get("selector") or {}, s.labels)
        ]
        if not services:
            yield sm, f"selector {sm.spec.get('selector')} matches no Service in the render"
            continue
        names = {p.get("name") for s in services for p in s.spec.get("ports") or []}
        for ep in sm.spec.get("endpoints") or []:
            if ep.get("port") and ep["port"] not in names:
                yield (
                    sm,
                    f"endpoint port {ep['port']} is not a port name of {', '.join(s.name for s in services)}",
                )
