"""Health probes: present, pointed at real ports, distinct, and a startupProbe for slow starters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from yuxi_k8s.validate.model import Container, Context, map_matches
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "probes"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")
SLOW_START_ANNOTATION = "yuxi-k8s.io/slow-start"


def _serving(ctx: Context) -> Iterator[Container]:
    """Main containers of long-running workloads (Jobs and init containers need no probes)."""
    for w in ctx.workloads:
        if w.long_running:
            yield from w.main_containers


@rule(
    "YK-PRB-001",
    family=FAMILY,
    title="Readiness probe present",
    message="Without a readinessProbe, a Service sends traffic to a pod before it can serve and during "
    "its shutdown (checked for pods a Service selects).",
    fix="Add a `readinessProbe` that checks the dependencies the container needs to serve.",
)
def readiness(ctx: Context) -> Iterator[Finding]:
    # Like kube-score: readiness matters where a Service routes traffic to the pod.
    services = [s for s in ctx.of_kind("Service") if s.spec.get("selector")]
    for c in _serving(ctx):
        w = c.workload
        served = any(
            s.namespace == w.namespace and map_matches(s.spec["selector"], w.pod_labels) for s in services
        )
        if served and not c.spec.get("readinessProbe"):
            yield c.workload.resource, f"{c.label()} has no readinessProbe"


@rule(
    "YK-PRB-002",
    family=FAMILY,
    title="Liveness probe present",
    message="Without a livenessProbe, a hung process is never restarted.",
    fix="Add a cheap `livenessProbe` (process-local, no dependency checks).",
)
def liveness(ctx: Context) -> Iterator[Finding]:
    for c in _serving(ctx):
        if not c.spec.get("livenessProbe"):
            yield c.workload.resource, f"{c.label()} has no livenessProbe"


def _probe_port(probe: dict[str, Any]) -> Any:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            return (probe[handler] or {}).get("port")
    return None


@rule(
    "YK-PRB-003",
    family=FAMILY,
    title="Probe ports exist",
    message="A probe on a port the container does not declare always fails (or checks the wrong thing).",
    fix="Point the probe at a declared container port, by name or number.",
)
def probe_ports(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for c in w.containers:
            names = {p.get("name") for p in c.ports if p.get("name")}
            numbers = {p.get("containerPort") for p in c.ports}
            for kind in PROBES:
                port = _probe_port(c.spec.get(kind) or {})
                if port is None:
                    continue
                if (isinstance(port, str) and not port.isdigit() and port not in names) or (
                    (isinstance(port, int) or str(port).isdigit()) and int(port) not in numbers
                ):
                    yield w.resource, f"{c.label()} {kind} uses port {port}, not declared by the container"


@rule(
    "YK-PRB-004",
    family=FAMILY,
    title="startupProbe for slow starters",
    message="A slow-starting container (the api imports for minutes) is killed by its livenessProbe "
    "before it is up unless a startupProbe holds the other probes back.",
    fix="Add a `startupProbe` whose initialDelaySeconds + failureThreshold x periodSeconds covers the start "
    "(`slow_start_seconds` in the config, default 150).",
)
def startup_probe(ctx: Context) -> Iterator[Finding]:
    slow = set(ctx.setting("slow_starters", []))
    for w in ctx.workloads:
        flagged = str(w.resource.annotations.get(SLOW_START_ANNOTATION, "")).lower() == "true"
        if not w.long_running or not (w.component in slow or flagged):
            continue
        c = w.primary
        if c is None:
            continue
        probe = c.spec.get("startupProbe")
        if not probe:
            why = w.component or "annotated"
            yield w.resource, f"{c.label()} starts slowly ({why}) and has no startupProbe"
            continue
        budget = int(probe.get("initialDelaySeconds", 0)) + int(probe.get("failureThreshold", 3)) * int(
            probe.get("periodSeconds", 10)
        )
        need = int(ctx.setting("slow_start_seconds", 150))
        if budget < need:
            yield w.resource, f"{c.label()} startupProbe allows {budget}s to start, needs at least {need}s"


def _handler(probe: dict[str, Any]) -> Any:
    return next(((k, probe[k]) for k in HANDLERS if k in probe), None)


@rule(
    "YK-PRB-005",
    family=FAMILY,
    title="Readiness differs from liveness",
    message="When readiness and liveness run the same check, a dependency outage restarts every pod "
    "instead of just taking them out of the Service.",
    fix="Make liveness process-local (e.g. /healthz) and readiness check dependencies (e.g. /readyz).",
)
def distinct_probes(ctx: Context) -> Iterator[Finding]:
    for c in _serving(ctx):
        ready, live = c.spec.get("readinessProbe"), c.spec.get("livenessProbe")
        if ready and live and _handler(ready) == _handler(live):
            yield c.workload.resource, f"{c.label()} readinessProbe and livenessProbe run the same check"


def _prestop_seconds(pre_stop: dict[str, Any]) -> int | None:
    """Seconds a preStop hook waits (sleep action or `sleep N` command), None when unknown."""
    if "sleep" in pre_stop:
        return int((pre_stop["sleep"] or {}).get("seconds", 0))
    command = " ".join(map(str, (pre_stop.get("exec") or {}).get("command") or []))
    match = re.search(r"\bsleep\s+(\d+)", command)
    return int(match.group(1)) if match else None


@rule(
    "YK-PRB-006",
    family=FAMILY,
    title="Graceful shutdown behind a Service",
    message="A Deployment's pod behind a Service keeps receiving requests for a few seconds after it is "
    "told to stop (endpoints propagate slowly); without a preStop pause, or with a grace period shorter "
    "than the pause, in-flight requests fail on every rollout.",
    fix="Add `lifecycle.preStop.sleep.seconds` (5-15) and a `terminationGracePeriodSeconds` longer than it "
    "plus the longest request.",
)
def graceful_shutdown(ctx: Context) -> Iterator[Finding]:
    services = [s for s in ctx.of_kind("Service") if s.spec.get("selector")]
    for w in ctx.workloads:
        if w.kind != "Deployment":
            continue
        if not any(
            s.namespace == w.namespace and map_matches(s.spec["selector"], w.pod_labels) for s in services
        ):
            continue
        c = w.primary
        if c is None:
            continue
        pre_stop = (c.spec.get("lifecycle") or {}).get("preStop")
        if not pre_stop:
            yield w.resource, f"{c.label()} has no preStop hook"
            continue
        pause = _prestop_seconds(pre_stop)
        grace = int(w.pod_spec.get("terminationGracePeriodSeconds", 30))
        if pause is not None and grace <= pause:
            yield w.resource, f"terminationGracePeriodSeconds {grace} <= preStop pause {pause}s"
