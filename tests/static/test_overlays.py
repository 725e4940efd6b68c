"""The shipped overlays, the component combinations and the GitOps entry points render, pass the
schemas and break no rule (allowances carry reasons); every component is in one of them.

Every list here is explicit: a path that disappears fails, it is never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import require
from yuxi_k8s.validate import pipeline
from yuxi_k8s.validate.engine import load_config
from yuxi_k8s.validate.render import REPO_ROOT
from yuxi_k8s.validate.report import to_text

OVERLAYS = ("overlays/dev", "overlays/staging", "overlays/prod")
# tests/static/combinations/README.md; the same list as COMBINATIONS in the Makefile.
COMBINATIONS = (
    "tests/static/combinations/dev-file-mode",
    "tests/static/combinations/dev-lite-mode",
    "tests/static/combinations/staging-lite-mode",
)
CHECKED = OVERLAYS + COMBINATIONS
GITOPS = ("gitops/flux/dev", "gitops/flux/staging", "gitops/flux/prod", "gitops/argocd")


@pytest.fixture(scope="module")
def report() -> pipeline.Report:
    for tool in ("kustomize", "kubeconform"):
        require((REPO_ROOT / "bin" / tool).exists(), f"bin/{tool}: run `make tools-validate`")
    return pipeline.run([str(REPO_ROOT / p) for p in CHECKED], config=load_config())


@pytest.mark.parametrize("index", range(len(CHECKED)), ids=CHECKED)
def test_overlay_is_clean(report: pipeline.Report, index: int) -> None:
    overlay = report.overlays[index]
    assert overlay.env == Path(CHECKED[index]).name.split("-")[0]
    assert overlay.objects, f"{CHECKED[index]} rendered nothing"
    assert not overlay.failed(), to_text(pipeline.Report([overlay]))


def test_gitops_entry_points_are_clean() -> None:
    """Flux Kustomizations / GitRepositories and Argo CD Applications pass their CRD schemas and rules."""
    result = pipeline.run([str(REPO_ROOT / p) for p in GITOPS], config=load_config())
    assert not result.failed, to_text(result)
    assert all(o.objects for o in result.overlays)


def _components_used(folder: Path, seen: set[Path]) -> set[Path]:
    """Component folders a kustomization reaches: its own `components:` and those of the local
    kustomizations it lists as resources, recursively."""
    folder = folder.resolve()
    if folder in seen or not (folder / "kustomization.yaml").is_file():
        return set()
    seen.add(folder)
    doc = yaml.safe_load((folder / "kustomization.yaml").read_text()) or {}
    used = set()
    for entry in doc.get("components") or []:
        path = (folder / entry).resolve()
        used |= {path} | _components_used(path, seen)
    for entry in doc.get("resources") or []:
        if (folder / entry).is_dir():
            used |= _components_used(folder / entry, seen)
    return used


def test_every_component_is_checked() -> None:
    """Each folder of components/ is rendered by a checked kustomization; each combination is listed."""
    components = {p.parent.resolve() for p in (REPO_ROOT / "components").rglob("kustomization.yaml")}
    used: set[Path] = set()
    for path in CHECKED:
        used |= _components_used(REPO_ROOT / path, set())
    unchecked = sorted(str(p.relative_to(REPO_ROOT)) for p in components - used)
    assert not unchecked, f"components in no checked kustomization (add a combination): {unchecked}"
    folders = {
        f"tests/static/combinations/{p.parent.name}"
        for p in (REPO_ROOT / "tests/static/combinations").glob("*/kustomization.yaml")
    }
    assert folders == set(COMBINATIONS), "tests/static/combinations and COMBINATIONS differ"
    makefile = (REPO_ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("COMBINATIONS"))
    listed = set(line.split(",", 1)[1].rstrip(")").split())
    assert listed == {Path(c).name for c in COMBINATIONS}, line
