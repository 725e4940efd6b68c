"""The one paths module: the cache root never becomes the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from yuxi_k8s import paths


def test_explicit_cache_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("YUXI_K8S_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "c"
    assert paths.cache_dir("images") == tmp_path / "c" / "images"


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_cache_setting_falls_back_to_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty: str
) -> None:
    monkeypatch.setenv("YUXI_K8S_CACHE", empty)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "yuxi-k8s"


def test_relative_xdg_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("YUXI_K8S_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_root() == tmp_path / ".cache" / "yuxi-k8s"
    assert paths.cache_root().is_absolute()


def test_checkout_is_found() -> None:
    assert paths.in_checkout()
    assert (paths.repo_root() / "pyproject.toml").is_file()
