"""The validator's tools: one lookup (yuxi_k8s.pinned_tools), kustomize from the pinned kubectl,
and a missing tool is one line and exit 3 (nothing was checked), never a traceback or a pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import require_tools
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
