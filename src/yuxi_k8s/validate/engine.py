"""Run the registered rules over one render; apply opt-outs and severities."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.cli import UserError
from yuxi_k8s.validate.model import Context, Resource
from yuxi_k8s.validate.rules import ENVS, SEVERITIES, all_rules
from yuxi_k8s.validate.rules.meta import allowances


@dataclass
class Violation:
    overlay: str
    rule: str
    severity: str
    kind: str
    namespace: str
    name: str
    message: str
    fix: str
    title: str
    suppressed: str | None = None  # the reason, when an allow annotation suppressed it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | None = None) -> dict[str, Any]:
    """The packaged defaults, with a user config merged over them."""
    text = pkg_resources.files("yuxi_k8s.validate").joinpath("defaults.yaml").read_text()
    config: dict[str, Any] = yaml.safe_load(text) or {}
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(override, dict):
            raise UserError(f"config {path} must be a mapping")
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    # YAML 1.1 reads a bare `off` as false.
    config["severity"] = {
        str(k).upper(): ("off" if v is False else v) for k, v in (config.get("severity") or {}).items()
    }
    for rule_id, severity in config["severity"].items():
        if severity not in SEVERITIES:
            raise UserError(f"config: severity of {rule_id} must be one of {', '.join(SEVERITIES)}")
    return config


def infer_env(path: str, default: str = "prod") -> str:
    """dev | staging | prod from the path's folder names, nearest first (`prod-eu` and `production`
    count as prod); *default* when none names an environment."""
    aliases = {"production": "prod", "stage": "staging", "development": "dev"}
    target = Path(path)
    if target.is_absolute() and target.is_relative_to(Path.cwd()):
        target = target.relative_to(Path.cwd())  # folders above the project say nothing
    for part in reversed(target.parts):
        for word in (part, *part.replace("_", "-").split("-")):  # prod, prod-eu, eu-prod
            name = aliases.get(word, word)
            if name in ENVS:
                return name
    return default


def evaluate(
    overlay: str,
    env: str,
    objects: list[dict],
    config: dict[str, Any],
    kustomization: dict[str, Any] | None = None,
    layers: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[Violation]:
    """Every finding of every rule that applies to *env*, suppressed ones marked.

    Rules marked ``after_others`` (stale opt-outs) run last and see what the others found
    in ``ctx.findings``.
    """
    if layers is None:
        layers = [(overlay, kustomization)] if kustomization is not None else []
    ctx = Context(
        overlay, env, [Resource(o) for o in objects], config, kustomization=kustomization, layers=layers
    )
    overrides = config.get("severity") or {}
    out: list[Violation] = []
    rules = sorted(all_rules(), key=lambda r: r.after_others)
    for r in rules:
        severity = overrides.get(r.id, r.severity)
        if severity == "off" or not r.applies_to(env):
            continue
        try:
            found = list(r.check(ctx))
        except (AttributeError, TypeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
            # A malformed object (e.g. `resources: 1`) that kubeconform also reports: say so, no traceback.
            out.append(
                Violation(
                    overlay,
                    r.id,
                    "error",
                    "Render",
                    "",
                    overlay,
                    f"could not evaluate on malformed objects ({type(exc).__name__}: {exc}); "
                    "fix the schema failures first",
                    r.fix,
                    r.title,
                )
            )
            continue
        for res, detail in found:
            ctx.findings.setdefault(r.id, set()).add(id(res))
            reason = allowances(res.annotations).get(r.id) or None
            if r.id.startswith("YK-META-"):
                reason = None  # the opt-out rules themselves cannot be opted out of
            out.append(
                Violation(
                    overlay, r.id, severity, res.kind, res.namespace, res.name, detail, r.fix, r.title, reason
                )
            )
    return out
