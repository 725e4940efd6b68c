"""Run the registered rules over one render; apply opt-outs and severities."""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.validate.errors import ConfigError
from yuxi_k8s.validate.model import Context, Resource
from yuxi_k8s.validate.rules import ENVS, SEVERITIES, Finding, Rule, all_rules
from yuxi_k8s.validate.suppression import suppression_reason

# Not a rule: the engine's own finding when a rule crashed, so its check is incomplete. It is never
# suppressed, never turned off by the config, and makes the run exit EXIT_INCOMPLETE.
ENGINE_ERROR = "YK-ENGINE-001"
ENGINE_ERROR_TITLE = "A rule crashed: its check is incomplete"
ENGINE_ERROR_FIX = (
    "A bug in the rule, or an object shape it does not expect: report it with this line. "
    "`yuxi-k8s validate --strict PATH` stops at the crash with its traceback."
)


@dataclass(kw_only=True)
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
    crashed_rule: str | None = None  # for ENGINE_ERROR: the rule that crashed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RuleCrash(Exception):
    """Strict mode: a rule raised. The original exception is the cause (its traceback follows)."""


def load_config(path: str | None = None) -> dict[str, Any]:
    """The packaged defaults, with a user config merged over them."""
    text = pkg_resources.files("yuxi_k8s.validate").joinpath("defaults.yaml").read_text()
    config: dict[str, Any] = yaml.safe_load(text) or {}
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(override, dict):
            raise ConfigError(f"config {path} must be a mapping")
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
            raise ConfigError(f"config: severity of {rule_id} must be one of {', '.join(SEVERITIES)}")
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
    *,
    strict: bool = False,
) -> list[Violation]:
    """Every finding of every rule that applies to *env*, suppressed ones marked.

    Rules marked ``after_others`` (stale opt-outs) run last and see what the others found
    in ``ctx.findings``. A rule that raises keeps the findings it yielded before the crash and
    adds one ENGINE_ERROR naming the rule and the object that makes it crash (:func:`_culprits`);
    with *strict* (the tests, ``--strict``) the crash raises :class:`RuleCrash` instead.
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
        found: list[Finding] = []
        try:
            found.extend(r.check(ctx))
        except Exception as exc:  # a crash: report it as one, never as the rule's own finding
            culprits = _culprits(r, ctx)
            if strict:
                raise RuleCrash(f"{r.id} crashed {_where(culprits)}: {_describe(exc)}") from exc
            ctx.crashed.add(r.id)
            out.append(_engine_error(overlay, r, exc, culprits))
        for res, detail in found:
            ctx.findings.setdefault(r.id, set()).add(id(res))
            out.append(
                Violation(
                    overlay=overlay,
                    rule=r.id,
                    severity=severity,
                    kind=res.kind,
                    namespace=res.namespace,
                    name=res.name,
                    message=detail,
                    fix=r.fix,
                    title=r.title,
                    suppressed=suppression_reason(r, res),
                )
            )
    return out


def _culprits(r: Rule, ctx: Context) -> list[Resource]:
    """The objects that make *r* crash on their own: the rule re-run on each one alone.

    Run only after a crash. Empty when the crash needs several objects together (the rule then
    failed over the render as a whole).
    """
    out = []
    for res in ctx.resources:
        alone = Context(
            ctx.overlay, ctx.env, [res], ctx.config, kustomization=ctx.kustomization, layers=ctx.layers
        )
        try:
            for _ in r.check(alone):
                pass
        except Exception:
            out.append(res)
    return out


def _where(culprits: list[Resource]) -> str:
    if not culprits:
        return "over the render"
    more = f" (and {len(culprits) - 1} more)" if len(culprits) > 1 else ""
    return f"on {culprits[0]}{more}"


def _describe(exc: BaseException) -> str:
    """``KeyError: 'x' at pod_security.py:123``: the exception and the line that raised it."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}{': ' + text if text else ''}{at}"


def _engine_error(overlay: str, r: Rule, exc: Exception, culprits: list[Resource]) -> Violation:
    res = culprits[0] if culprits else None
    return Violation(
        overlay=overlay,
        rule=ENGINE_ERROR,
        severity="error",
        kind=res.kind if res is not None else "Render",
        namespace=res.namespace if res is not None else "",
        name=res.name if res is not None else overlay,
        message=f"rule {r.id} crashed {_where(culprits)} ({_describe(exc)}); "
        f"its findings for this render are incomplete",
        fix=ENGINE_ERROR_FIX,
        title=ENGINE_ERROR_TITLE,
        crashed_rule=r.id,
    )
