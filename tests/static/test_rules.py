"""Every rule is proven by fixtures: tests/static/rules/<RULE-ID>/{fail,pass}*.yaml.

A `fail*` file must be flagged by that rule id, a `pass*` file must not. The
`# env: <env>` header picks the environment (default prod); a kustomize.config.k8s.io
Kustomization document stands for the validated kustomization.yaml itself. Discovered by
walking the folders, like Polaris' test/checks/<id>/{success,failure}*.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from yuxi_k8s.validate.engine import Violation, evaluate, load_config
from yuxi_k8s.validate.rules import REGISTRY, all_rules

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
    return evaluate(str(path), env, objects, load_config(), own[0] if own else None)


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture(path: Path) -> None:
    rule_id = path.parent.name
    hits = [v for v in run_fixture(path) if v.rule == rule_id and v.suppressed is None]
    if path.name.startswith("fail"):
        assert hits, f"{rule_id} did not flag {path.name}"
    else:
        assert not hits, f"{rule_id} flagged {path.name}: {[v.message for v in hits]}"


def test_every_rule_has_fixtures_and_remediation() -> None:
    problems = []
    for r in all_rules():
        folder = RULES_DIR / r.id
        if not list(folder.glob("fail*.yaml")):
            problems.append(f"{r.id}: no fail*.yaml fixture")
        if not list(folder.glob("pass*.yaml")):
            problems.append(f"{r.id}: no pass*.yaml fixture")
        for field in ("title", "message", "fix"):
            if not getattr(r, field).strip():
                problems.append(f"{r.id}: empty {field}")
        if not re.fullmatch(r"YK-[A-Z]+-\d{3}", r.id):
            problems.append(f"{r.id}: id is not YK-<FAMILY>-<NNN>")
    assert not problems, "\n".join(problems)


def test_every_fixture_folder_names_a_rule() -> None:
    all_rules()
    unknown = sorted(p.name for p in RULES_DIR.iterdir() if p.is_dir() and p.name not in REGISTRY)
    assert not unknown, f"fixture folders without a registered rule: {unknown}"


def test_pass_fixtures_parse_as_kubernetes_objects() -> None:
    for path in fixtures():
        for doc in yaml.load_all(path.read_text(), Loader=Loader):
            assert doc and doc.get("apiVersion") and doc.get("kind"), path
