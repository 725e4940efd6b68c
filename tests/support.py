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
