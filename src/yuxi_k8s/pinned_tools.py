"""Where the pinned tools are: ``bin/`` of the checkout, which scripts/tools.sh fills."""

from __future__ import annotations

import shutil
from pathlib import Path

from yuxi_k8s.paths import bin_dir


def pinned_tool(name: str) -> Path | None:
    """The pinned *name* from bin/, else one on PATH, else None (each caller says how to get it)."""
    local = bin_dir() / name
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None
