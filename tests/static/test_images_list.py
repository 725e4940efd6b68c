"""`yuxi-k8s validate --list-images`: every image a deploy pulls, for mirroring; and the render's
YAML is read as kustomize wrote it (a timestamp-like value stays a string)."""

from __future__ import annotations

import pytest

from tests.support import require_tools
from yuxi_k8s.cli import main
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.render import load_documents


def _listed(capsys: pytest.CaptureFixture[str], *paths: str) -> dict[str, str]:
    require_tools("kubectl")
    assert main(["validate", "--list-images", *(str(REPO_ROOT / p) for p in paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return dict(line.split("\t", 1) for line in lines)


def test_prod_lists_every_image_it_pulls_on_one_registry_by_digest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = _listed(capsys, "overlays/prod")
    names = {image.split("@")[0].rsplit(":", 1)[0] for image in listed}
    assert names == {
        "registry.example.invalid/yuxi-know/yuxi-know-api",
        "registry.example.invalid/yuxi-know/yuxi-know-web",
        "registry.example.invalid/yuxi-know/yuxi-know-sandbox-provisioner",
        "registry.example.invalid/all-in-one-sandbox",
        "registry.example.invalid/cloudnative-pg/postgresql",
    }
    assert all("@sha256:" in image for image in listed)
    api = next(where for image, where in listed.items() if "yuxi-know-api" in image)
    assert "Deployment yuxi-prod/worker" in api and "Job yuxi-prod/migrate initContainer db-upgrade" in api


def test_dev_lists_the_in_cluster_dependencies_too(capsys: pytest.CaptureFixture[str]) -> None:
    listed = _listed(capsys, "overlays/dev")
    assert any(image.startswith("localhost/yuxi-k8s/yuxi-know-api:") for image in listed)
    assert len(listed) >= 8, (
        listed
    )  # the app's three, the sandbox image, PostgreSQL, Redis, MinIO, Milvus, ...


def test_a_timestamp_stays_the_string_kustomize_wrote() -> None:
    [doc] = load_documents("spec:\n  targetTime: 2026-05-04 13:30:00+00\n")
    assert doc["spec"]["targetTime"] == "2026-05-04 13:30:00+00"
    [doc] = load_documents("a: 2026-05-04\n", strict=True)
    assert doc["a"] == "2026-05-04"
