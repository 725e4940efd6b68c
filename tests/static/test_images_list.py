"""`yuxi-k8s images list`: every image a deploy pulls, for mirroring (the same list the digest rules
check: containers, SANDBOX_IMAGE, CloudNativePG's imageName); and the render's YAML is read as
kustomize wrote it (a timestamp-like value stays a string)."""

from __future__ import annotations

import pytest

from tests.support import require_tools
from yuxi_k8s.cli import main
from yuxi_k8s.paths import REPO_ROOT
from yuxi_k8s.validate.render import load_documents


def _listed(capsys: pytest.CaptureFixture[str], path: str) -> set[str]:
    require_tools("kubectl")
    assert main(["images", "list", str(REPO_ROOT / path)]) == 0
    return {line for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")}


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


def test_dev_lists_the_sandbox_image_and_the_in_cluster_dependencies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = _listed(capsys, "overlays/dev")
    assert any(image.startswith("localhost/yuxi-k8s/yuxi-know-api:") for image in listed)
    assert any("all-in-one-sandbox" in image for image in listed)
    assert len(listed) >= 8, (
        listed
    )  # the app's three, the sandbox image, PostgreSQL, Redis, MinIO, Milvus, ...


def test_a_timestamp_stays_the_string_kustomize_wrote() -> None:
    [doc] = load_documents("spec:\n  targetTime: 2026-05-04 13:30:00+00\n")
    assert doc["spec"]["targetTime"] == "2026-05-04 13:30:00+00"
    [doc] = load_documents("a: 2026-05-04\n", strict=True)
    assert doc["a"] == "2026-05-04"
