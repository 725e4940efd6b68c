"""`yuxi-k8s validate --format sarif`: SARIF 2.1.0 whose findings name the source file of the object
(kustomize's origin annotations), for code scanning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_schemas, require_tools
from yuxi_k8s.cli import main
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.rules import all_rules

CLEAN = Path(__file__).parent / "clean"


@pytest.fixture(autouse=True)
def tools() -> None:
    require_tools("kubectl")
    require_schemas()


def sarif(capsys: pytest.CaptureFixture[str], *paths: str | Path, code: int) -> dict[str, Any]:
    assert main(["validate", "-q", "--format", "sarif", *map(str, paths)]) == code
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    return doc["runs"][0]


def located(result: dict[str, Any]) -> tuple[str, int]:
    where = result["locations"][0]["physicalLocation"]
    return where["artifactLocation"]["uri"], where.get("region", {}).get("startLine", 0)


def test_a_finding_lands_on_the_file_and_line_of_its_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "prod"
    shutil.copytree(CLEAN, overlay)
    app = overlay / "app.yaml"
    text = app.read_text()
    start = text.index("image: ghcr.io/xerrors/yuxi-know-api:0.6.0")
    end = text.index("\n", start)
    app.write_text(text[:start] + "image: ghcr.io/xerrors/yuxi-know-api:latest" + text[end:])
    run = sarif(capsys, overlay, code=1)
    [latest] = [r for r in run["results"] if r["ruleId"] == "YK-IMG-001"]
    assert latest["level"] == "error" and "suppressions" not in latest
    uri, line = located(latest)
    assert uri == app.resolve().as_uri()  # outside the checkout: an absolute file URI
    lines = app.read_text().splitlines()
    assert lines[line - 1] == "kind: Deployment"
    assert "Fix: Pin a released version tag" in latest["message"]["text"]
    ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r.id for r in all_rules()} <= ids


def test_prod_findings_name_files_of_the_checkout_and_allowances_are_suppressions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = sarif(capsys, "--kit-example", REPO_ROOT / "overlays/prod", code=0)  # the kit's placeholders pass
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == REPO_ROOT.resolve().as_uri() + "/"
    by_object = {(r["ruleId"], r["properties"]["object"]): r for r in run["results"]}
    api = by_object[("YK-IMG-004", "Deployment yuxi-prod/api")]
    assert located(api) == ("base/api.Deployment.yaml", 2)
    assert api["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert (
        api["suppressions"][0]["kind"] == "inSource"
        and "DELETE" not in api["suppressions"][0]["justification"]
    )
    cluster = by_object[("YK-IMG-004", "Cluster yuxi-prod/postgres")]
    assert located(cluster)[0] == "components/cloudnative-pg/postgres.Cluster.yaml"
    assert all(r.get("suppressions") for r in run["results"])  # prod is clean: only its allowances


def test_a_kustomization_finding_and_a_render_failure_land_on_kustomization_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(CLEAN, tmp_path / "base")
    prod = tmp_path / "overlays" / "prod"
    prod.mkdir(parents=True)
    (prod / "kustomization.yaml").write_text(
        "resources: [../../base]\nimages:\n  - name: yuxi-know-api\n    newTag: 0.7.0\n"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    run = sarif(capsys, prod, broken, code=1)
    [pin] = [r for r in run["results"] if r["ruleId"] == "YK-IMG-003"]
    assert located(pin) == ((prod / "kustomization.yaml").resolve().as_uri(), 1)
    [render] = [r for r in run["results"] if r["ruleId"] == "YK-RENDER"]
    assert located(render)[0] == (broken / "kustomization.yaml").resolve().as_uri()
