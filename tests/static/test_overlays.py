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
