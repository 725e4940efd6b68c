"""The opt-out annotations themselves (validate/suppression.py applies them): each carries a reason,
names a real rule and still suppresses something. These rules cannot be opted out of."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context
from yuxi_k8s.validate.rules import REGISTRY, Finding, rule
from yuxi_k8s.validate.suppression import allowances

FAMILY = "opt-outs"


@rule(
    "YK-META-001",
    family=FAMILY,
    title="Opt-outs carry a reason",
    message="An allow annotation without a reason hides a finding without telling the reviewer why; "
    "it does not suppress anything.",
    fix='Write why the rule does not apply: `yuxi-k8s.io/allow-YK-XXX-000: "<reason>"`.',
    suppressible=False,
)
def reason_required(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        for rule_id, reason in allowances(res.annotations).items():
            if not reason:
                yield res, f"allow annotation for {rule_id} has no reason"


@rule(
    "YK-META-002",
    family=FAMILY,
    title="Opt-outs name a known rule",
    message="An allow annotation for an unknown rule id is a typo that suppresses nothing.",
    fix="Use an id from docs/rules.md.",
    suppressible=False,
)
def known_rule(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        for rule_id in allowances(res.annotations):
            if rule_id not in REGISTRY:
                yield res, f"allow annotation names unknown rule {rule_id}"


@rule(
    "YK-META-003",
    family=FAMILY,
    title="Opt-outs still needed",
    message="An allow annotation whose rule no longer flags the object is stale: it would silently hide "
    "the next real finding of that rule on this object. Reported as information, never fails the run.",
    fix="Remove the annotation.",
    severity="info",
    after_others=True,
    suppressible=False,
)
def stale_allowance(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        for rule_id, reason in allowances(res.annotations).items():
            known = REGISTRY.get(rule_id)
            if not reason or known is None or not known.applies_to(ctx.env) or known.after_others:
                continue
            if rule_id in ctx.crashed:  # it did not finish looking: the engine reports that instead
                continue
            if id(res) not in ctx.findings.get(rule_id, set()):
                yield res, f"allow annotation for {rule_id} suppresses nothing in {ctx.env}"
