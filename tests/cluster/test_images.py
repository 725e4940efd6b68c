"""Image archives built without an engine: deterministic, cached, and in a layout importers take."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from yuxi_k8s.cluster import oci


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(oci, "IMAGES_DIR", tmp_path / "images")
    monkeypatch.setattr(oci, "LAYERS_DIR", tmp_path / "layers")
    return tmp_path


def _stage(root: Path, text: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text(text)
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    return root


def test_same_inputs_give_the_same_image_and_reuse_the_archive(cache: Path, tmp_path: Path) -> None:
    first = oci.build_from_directory(_stage(tmp_path / "a", "v1"), "localhost/test/tool", cmd=["/bin/tool"])
    mtime = first.archive.stat().st_mtime_ns
    again = oci.build_from_directory(_stage(tmp_path / "b", "v1"), "localhost/test/tool", cmd=["/bin/tool"])
    assert again == first
    assert first.archive.stat().st_mtime_ns == mtime, "a cached archive was rebuilt"
    changed = oci.build_from_directory(_stage(tmp_path / "c", "v2"), "localhost/test/tool", cmd=["/bin/tool"])
    assert changed.name != first.name


def test_archive_is_an_oci_layout_with_a_docker_manifest(cache: Path, tmp_path: Path) -> None:
    image = oci.build_from_directory(
        _stage(tmp_path / "a", "v1"), "localhost/test/tool", tag="1.0", entrypoint=["/bin/tool"], user="1000"
    )
    assert image.name == "localhost/test/tool:1.0"
    with tarfile.open(image.archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))  # type: ignore[arg-type]
        layer = tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}")
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            members = {m.name: m for m in inner.getmembers()}
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == image.name
    assert docker[0]["RepoTags"] == [image.name]
    assert config["config"]["Entrypoint"] == ["/bin/tool"] and config["config"]["User"] == "1000"
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert members["bin/tool"].uid == 0 and members["bin/tool"].mode & 0o111
    assert members["bin/alias"].issym() and members["bin/alias"].linkname == "tool"
