"""The kit's own entry points render, pass the schemas and break no rule (allowances carry reasons).

The paths come from the one list `make validate` checks too (src/yuxi_k8s/validate/entry_points.txt);
none is filtered out: a listed path that is gone fails here, as it fails `make validate`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import require_tools
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate import pipeline
from yuxi_k8s.validate.engine import load_config
from yuxi_k8s.validate.entry_points import entry_points
from yuxi_k8s.validate.report import to_text
from yuxi_k8s.validate.rules.images import KIT_EXAMPLE

ENTRY_POINTS = entry_points()


def kit_example_config() -> dict[str, object]:
    """The policy `make validate` runs with (`--kit-example`): the kit's own placeholder images pass."""
    return {**load_config(), KIT_EXAMPLE: True}


@pytest.fixture(scope="module")
def report() -> pipeline.Report:
    require_tools("kubectl", "kubeconform")
    return pipeline.run([str(REPO_ROOT / p) for p in ENTRY_POINTS], config=kit_example_config(), strict=True)


@pytest.mark.parametrize("index", range(len(ENTRY_POINTS)), ids=ENTRY_POINTS)
def test_entry_point_is_clean(report: pipeline.Report, index: int) -> None:
    overlay = report.overlays[index]
    assert overlay.objects, f"{ENTRY_POINTS[index]} rendered no object"
    assert not overlay.failed(), to_text(pipeline.Report([overlay]))


def test_the_three_environments_and_the_gitops_entry_points_are_listed() -> None:
    envs = ("dev", "staging", "prod")
    expected = [f"overlays/{e}" for e in envs] + [f"gitops/flux/{e}" for e in envs] + ["gitops/argocd"]
    missing = [p for p in expected if p not in ENTRY_POINTS]
    assert not missing, f"entry_points.txt no longer lists {missing}"
    assert len(set(ENTRY_POINTS)) == len(ENTRY_POINTS), "a path is listed twice"


def test_the_environment_follows_the_folder(report: pipeline.Report) -> None:
    for path, overlay in zip(ENTRY_POINTS, report.overlays, strict=True):
        if path.startswith("overlays/"):
            assert overlay.env == path.split("/")[1], path


def test_a_missing_entry_point_fails_loudly() -> None:
    """No `exists()` filter anywhere: a listed folder that is gone is a render failure."""
    listed = entry_points("overlays/dev\n# a comment\ngone/folder  # removed by mistake\n")
    assert listed == ["overlays/dev", "gone/folder"]
    result = pipeline.run([str(REPO_ROOT / "gone/folder")], config=load_config(), schema_check=False)
    assert result.failed and "no such file or directory" in (result.overlays[0].render_error or "")


def test_make_validate_reads_the_same_list() -> None:
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "validate"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    # The check runs last, after its set-up (which may prepare the schemas: --prepare-schemas).
    line = [ln for ln in dry.stdout.splitlines() if "yuxi_k8s.validate" in ln][-1]
    assert "--entry-points" in line
    assert "--kit-example" in line


# --- issue 21, defect 7: the placeholders fail closed --------------------------------------------------


@pytest.mark.parametrize("path", ["overlays/staging", "overlays/prod"])
def test_the_shipped_placeholders_fail_without_kit_example(path: str) -> None:
    """`yuxi-k8s validate overlays/prod` on the kit's example, allowances and all, fails: the
    placeholder images are refused by YK-IMG-006, which no annotation suppresses."""
    require_tools("kubectl")
    result = pipeline.run([str(REPO_ROOT / path)], config=load_config(), schema_check=False, strict=True)
    (overlay,) = result.overlays
    assert overlay.failed()
    refused = {v.rule for v in overlay.violations if v.suppressed is None}
    assert refused == {"YK-IMG-006"}, to_text(result)


def test_a_tag_without_digest_is_one_clear_line(tmp_path: Path) -> None:
    """prod names the pre-migrate Backup after the api image's digest: a tag alone made kustomize
    stop with `options.index 1 is out of bounds`; the validator says what to pin."""
    require_tools("kubectl")
    for tree in ("base", "components"):
        (tmp_path / tree).symlink_to(REPO_ROOT / tree)
    overlay = tmp_path / "overlays" / "prod"
    shutil.copytree(REPO_ROOT / "overlays" / "prod", overlay)
    kustomization = overlay / "kustomization.yaml"
    doc = yaml.safe_load(kustomization.read_text())
    api = next(i for i in doc["images"] if i["name"] == "yuxi-know-api")
    del api["digest"]
    kustomization.write_text(yaml.safe_dump(doc))
    result = pipeline.run([str(overlay)], config=kit_example_config(), schema_check=False)
    error = result.overlays[0].render_error or ""
    assert error.startswith("image registry.example.invalid/yuxi-know/yuxi-know-api:0.6.1 has no digest"), (
        error
    )
    assert "pin it in `images:` with `digest: sha256:...`" in error and "\n" not in error


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
    for path in ENTRY_POINTS:
        used |= _components_used(REPO_ROOT / path, set())
    unchecked = sorted(str(p.relative_to(REPO_ROOT)) for p in components - used)
    assert not unchecked, f"components in no checked kustomization (add a combination): {unchecked}"
    folders = {
        f"tests/static/combinations/{p.parent.name}"
        for p in (REPO_ROOT / "tests/static/combinations").glob("*/kustomization.yaml")
    }
    unlisted = sorted(folders - set(ENTRY_POINTS))
    assert not unlisted, f"combinations missing from entry_points.txt: {unlisted}"
