"""docs/rules.md is generated from the registry; it must not be stale."""

from __future__ import annotations

from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.docs import rules_markdown


def test_rules_doc_is_current() -> None:
    committed = (REPO_ROOT / "docs" / "rules.md").read_text()
    assert committed == rules_markdown(), (
        "docs/rules.md is stale: run `yuxi-k8s validate --rules-doc --output docs/rules.md`"
    )
