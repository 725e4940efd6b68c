"""The rule registry: each rule is data (id, family, severity, title, message,
fix, environments) plus a small function over the rendered objects.

One file per family in this package; each registers its rules with
:func:`rule` at import. :func:`all_rules` imports them all, in id order.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from yuxi_k8s.validate.model import Context, Resource

ENVS = ("dev", "staging", "prod")
OUTSIDE_DEV = ("staging", "prod")
# error and warning fail the run (warning only with --fail-on warning, the default);
# info is reported and never fails; off disables the rule.
SEVERITIES = ("error", "warning", "info", "off")

# A finding: the object at fault and what exactly is wrong with it.
Finding = tuple[Resource, str]
Check = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True, kw_only=True)
class Rule:
    id: str
    family: str
    severity: str
    title: str
    message: str
    fix: str
    envs: tuple[str, ...]
    check: Check
    # Runs after every other rule and sees their findings in ``ctx.findings`` (stale opt-outs).
    after_others: bool = False
    # False for the rules that check opt-out annotations: an annotation cannot silence them.
    suppressible: bool = True

    def applies_to(self, env: str) -> bool:
        return env in self.envs


REGISTRY: dict[str, Rule] = {}


def rule(
    id: str,
    *,
    family: str,
    title: str,
    message: str,
    fix: str,
    severity: str = "error",
    envs: tuple[str, ...] = ENVS,
    after_others: bool = False,
    suppressible: bool = True,
) -> Callable[[Check], Check]:
    """Register the decorated check under *id* (ids are stable: never reuse one)."""
    assert severity in SEVERITIES, severity

    def register(check: Check) -> Check:
        if id in REGISTRY:
            raise ValueError(f"duplicate rule id {id}")
        REGISTRY[id] = Rule(
            id=id,
            family=family,
            severity=severity,
            title=title,
            message=message.strip(),
            fix=fix.strip(),
            envs=envs,
            check=check,
            after_others=after_others,
            suppressible=suppressible,
        )
        return check

    return register


def all_rules() -> list[Rule]:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return [REGISTRY[k] for k in sorted(REGISTRY)]
