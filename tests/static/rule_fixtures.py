"""Runs the rule fixtures (tests/static/rules/<RULE-ID>/{fail,pass}*.yaml) through the engine, strictly.

The `# env: <env>` header picks the environment (default prod); a kustomize.config.k8s.io
Kustomization document stands for the validated kustomization.yaml itself. Strict: a rule that
crashes raises ``RuleCrash`` instead of being reported, so no fixture passes by accident.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from yuxi_k8s.validate.engine import Violation, evaluate, load_config

RULES_DIR = Path(__file__).parent / "rules"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ENV_HEADER = re.compile(r"^# env: (\w+)$", re.MULTILINE)


def fixtures() -> list[Path]:
    return sorted(p for p in RULES_DIR.glob("*/*.yaml") if p.name.startswith(("fail", "pass")))


def run_fixture(path: Path) -> list[Violation]:
    text = path.read_text()
    match = ENV_HEADER.search(text)
    env = match.group(1) if match else "prod"
    docs = [d for d in yaml.load_all(text, Loader=Loader) if d]
    # A kustomize.config.k8s.io Kustomization document stands for the validated path's kustomization.yaml.
    own = [d for d in docs if str(d.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")]
    objects = [d for d in docs if d not in own]
    return evaluate(str(path), env, objects, load_config(), own[0] if own else None, strict=True)
