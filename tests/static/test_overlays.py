"""The shipped overlays render, pass the schemas and break no rule (allowances carry reasons)."""

from __future__ import annotations

import pytest

from tests.support import require
from yuxi_k8s.validate import pipeline
from yuxi_k8s.validate.engine import load_config
from yuxi_k8s.validate.render import REPO_ROOT
from yuxi_k8s.validate.report import to_text

OVERLAYS = ("overlays/dev", "overlays/staging", "overlays/prod")


@pytest.fixture(scope="module")
def report() -> pipeline.Report:
    for tool in ("kustomize", "kubeconform"):
        require((REPO_ROOT / "bin" / tool).exists(), f"bin/{tool}: run `make tools-validate`")
    return pipeline.run([str(REPO_ROOT / p) for p in OVERLAYS], config=load_config())


@pytest.mark.parametrize("index", range(len(OVERLAYS)), ids=OVERLAYS)
def test_overlay_is_clean(report: pipeline.Report, index: int) -> None:
    overlay = report.overlays[index]
    assert overlay.env == OVERLAYS[index].split("/")[1]
    assert not overlay.failed(), to_text(pipeline.Report([overlay]))


GITOPS = ("gitops/flux/dev", "gitops/flux/staging", "gitops/flux/prod", "gitops/argocd")


def test_gitops_entry_points_are_clean() -> None:
    """Flux Kustomizations / GitRepositories and Argo CD Applications pass their CRD schemas and rules."""
    present = [str(REPO_ROOT / p) for p in GITOPS if (REPO_ROOT / p).exists()]
    require(bool(present), "gitops/ entry points (issue 2)")
    result = pipeline.run(present, config=load_config())
    assert not result.failed, to_text(result)
    assert all(o.objects for o in result.overlays)
