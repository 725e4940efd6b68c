"""The validator's tools: one lookup (yuxi_k8s.pinned_tools), kustomize from the pinned kubectl,
and a missing tool is one line and exit 3 (nothing was checked), never a traceback or a pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import require_tools
from yuxi_k8s import pinned_tools
from yuxi_k8s.cli import main
from yuxi_k8s.pinned_tools import pinned_tool
from yuxi_k8s.validate import render
from yuxi_k8s.validate.errors import EXIT_INCOMPLETE
from yuxi_k8s.validate.versions import KUSTOMIZE_VERSION


def test_the_pinned_kubectl_carries_the_expected_kustomize() -> None:
    require_tools("kubectl")
    kubectl = pinned_tool("kubectl")
    assert kubectl is not None
    out = subprocess.run([str(kubectl), "version", "--client"], capture_output=True, text=True, check=True)
    found = re.search(r"Kustomize Version: (\S+)", out.stdout)
    assert found and found.group(1) == KUSTOMIZE_VERSION, out.stdout


def test_a_missing_tool_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    monkeypatch.setattr(render, "pinned_tool", lambda name: None)
    assert main(["validate", "-q", "--no-schema", str(tmp_path)]) == EXIT_INCOMPLETE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["yuxi-k8s validate: error: kubectl not found: run " + render.HOW_TO_GET["kubectl"]]


def test_a_builder_missing_a_tool_is_told_which_build_brings_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pinned_tools, "bin_dir", lambda: Path("/nonexistent"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pinned_tools.ToolMissingError) as missing:
        pinned_tools.require_tool("kubeadm-of-no-one", "kubernetes")
    assert str(missing.value) == (
        "kubeadm-of-no-one is not built: run `scripts/tools.sh kubernetes` (or `make tools`)"
    )


def test_the_pinned_versions_are_read_in_one_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (pinned_tools.REPO_ROOT / "tools" / "versions.env").read_text()
    kind = re.search(r"^KIND_VERSION=(\S+)$", text, re.M)
    assert kind and pinned_tools.pinned_version("KIND_VERSION") == kind.group(1)
    assert pinned_tools.pinned_versions()["KIND_VERSION"] == kind.group(1)
    assert pinned_tools.pinned_version("NO_SUCH_PIN") == ""
    monkeypatch.setattr(pinned_tools, "REPO_ROOT", tmp_path)  # an installed wheel: no checkout
    assert pinned_tools.pinned_versions() == {} and pinned_tools.pinned_version("KIND_VERSION") == ""
