"""Opt-outs: an object says a rule does not apply to it, and why.

The annotation ``yuxi-k8s.io/allow-<RULE-ID>: "<reason>"`` on an object
suppresses that rule's findings on that object; the report still lists them
as allowed, with the reason. The engine owns this mechanism; the opt-out
rules (``rules/opt_outs.py``) only check that annotations carry a reason, name
a rule and are still needed. A rule registered with ``suppressible=False``
(those opt-out rules themselves) cannot be opted out of.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yuxi_k8s.validate.model import Resource
    from yuxi_k8s.validate.rules import Rule

ALLOW_PREFIX = "yuxi-k8s.io/allow-"


def allowances(annotations: Mapping[str, object]) -> dict[str, str]:
    """{RULE-ID: reason} from one object's annotations (ids are case-insensitive; a reason may be empty)."""
    return {
        key[len(ALLOW_PREFIX) :].upper(): str(value or "").strip()
        for key, value in annotations.items()
        if isinstance(key, str) and key.startswith(ALLOW_PREFIX)
    }


def suppression_reason(rule: Rule, res: Resource) -> str | None:
    """The reason *res* gives for opting out of *rule*, or None when the finding stands.

    An annotation without a reason suppresses nothing (YK-META-001 reports it).
    """
    if not rule.suppressible:
        return None
    return allowances(res.annotations).get(rule.id) or None
