"""Helpers shared by every tier."""

from __future__ import annotations

import os
import platform

import pytest


def must_serve() -> bool:
    """True where every test must run: in CI, and as root on Linux."""
    return bool(os.environ.get("CI")) or (platform.system() == "Linux" and os.geteuid() == 0)


def require(condition: bool, missing: str) -> None:
    """Fail (where tests must run) or skip (elsewhere) when *condition* is false.

    *missing* names what is absent and how to get it; it appears in the run's
    summary either way, so no test disappears silently.
    """
    if condition:
        return
    if must_serve():
        pytest.fail(f"cannot run here, missing: {missing}", pytrace=False)
    pytest.skip(f"not available on this platform: {missing}")


def require_schemas() -> None:
    """kubeconform and the prepared core and CRD schemas (Go only fetches CRDs not yet cached)."""
    import shutil

    from yuxi_k8s.validate import crds, schemas

    require_tools("kubeconform")
    require(crds.prepared() or shutil.which("go") is not None, "go (to fetch the pinned CRD modules)")
    schemas.kubernetes_schema_dir()
    crds.schema_dir()


def require_tools(*names: str) -> None:
    """The pinned tools (``yuxi_k8s.pinned_tools``: bin/, the venv, PATH) are there, else fail or skip."""
    from yuxi_k8s.pinned_tools import pinned_tool

    missing = [name for name in names if pinned_tool(name) is None]
    require(not missing, f"{', '.join(missing)}: run `make venv tools-validate`")
