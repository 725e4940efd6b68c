"""Fixtures of the static tier shared by its modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import require


@pytest.fixture(scope="session")
def pinned_tree() -> Path:
    """The pinned Yuxi-Know source tree (YUXI_K8S_APP_SOURCE, or a clone of the tag); a test that
    needs it and cannot have it fails naming what is missing."""
    from yuxi_k8s.app import source

    try:
        return source.resolve().tree
    except source.SourceError as exc:
        require(False, f"the pinned Yuxi-Know source (YUXI_K8S_APP_SOURCE, or a clone of the tag): {exc}")
        raise
