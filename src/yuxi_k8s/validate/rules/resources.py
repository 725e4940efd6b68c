"""CPU and memory requests and limits on every container, limits never below requests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

from yuxi_k8s.validate.model import Context, as_mapping
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "resources"
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity as a number (None when unparsable)."""
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except ArithmeticError:  # "1.2.3"
        return None


def _resources(spec: dict) -> tuple[dict, dict]:
    res = as_mapping(spec.get("resources"))
    return as_mapping(res.get("requests")), as_mapping(res.get("limits"))


@rule(
    "YK-RES-001",
    family=FAMILY,
    title="CPU and memory requests",
    message="Without requests the scheduler packs pods blindly and they are the first evicted.",
    fix="Set `resources.requests.cpu` and `resources.requests.memory` on every container.",
)
def requests(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        missing = [r for r in ("cpu", "memory") if r not in _resources(c.spec)[0]]
        if missing:
            yield c.workload.resource, f"{c.label()} has no {' or '.join(missing)} request"


@rule(
    "YK-RES-002",
    family=FAMILY,
    title="CPU and memory limits",
    message="Without limits one container can starve its neighbours on the node.",
    fix="Set `resources.limits.cpu` and `resources.limits.memory` on every container.",
)
def limits(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        missing = [r for r in ("cpu", "memory") if r not in _resources(c.spec)[1]]
        if missing:
            yield c.workload.resource, f"{c.label()} has no {' or '.join(missing)} limit"


@rule(
    "YK-RES-003",
    family=FAMILY,
    title="Limit not below request",
    message="A limit below its request is rejected by the API server.",
    fix="Raise the limit to at least the request (or lower the request).",
)
def limit_below_request(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        req, lim = _resources(c.spec)
        for name in sorted(set(req) & set(lim)):
            r, limit = quantity(req[name]), quantity(lim[name])
            if r is not None and limit is not None and limit < r:
                yield (
                    c.workload.resource,
                    f"{c.label()} {name} limit {lim[name]} is below request {req[name]}",
                )


@rule(
    "YK-RES-004",
    family=FAMILY,
    title="Resource quantities are valid",
    message="A quantity such as `512MB` or `1.5 cores` passes the schema (it is a string) but the API "
    "server rejects it.",
    fix="Use Kubernetes quantities: `500m`, `1`, `512Mi`, `2Gi`.",
)
def valid_quantities(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        req, lim = _resources(c.spec)
        for where, values in (("request", req), ("limit", lim)):
            for name, value in values.items():
                if quantity(value) is None:
                    yield c.workload.resource, f"{c.label()} {name} {where} {value!r} is not a quantity"
