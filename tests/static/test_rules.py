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

from tests.static.rule_fixtures import RULES_DIR, Loader, fixtures, run_fixture
from yuxi_k8s.validate.rules import REGISTRY, all_rules


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


def test_each_rule_lives_in_the_file_named_after_its_family() -> None:
    """`family="opt-outs"` lives in rules/opt_outs.py: the file says what it holds."""
    misplaced = [
        f"{r.id}: family {r.family!r} in {r.check.__module__}"
        for r in all_rules()
        if r.check.__module__ != f"yuxi_k8s.validate.rules.{r.family.replace('-', '_')}"
    ]
    assert not misplaced, misplaced
