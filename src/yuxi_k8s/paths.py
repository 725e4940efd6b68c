"""Where the kit keeps things: the checkout, the cache outside it, the run folder.

One module for every path the kit derives, so a second way of computing one
cannot drift:

- ``REPO_ROOT``: the checkout this package runs from (an editable install).
  From an installed wheel (inside an image) there is no checkout; code that
  needs one calls :func:`repo_root`, which says so in one line.
- ``cache_root()``: ``$YUXI_K8S_CACHE`` if set and non-empty, else
  ``$XDG_CACHE_HOME/yuxi-k8s``, else ``~/.cache/yuxi-k8s``. Always absolute:
  an empty or relative setting never turns into the current directory.
- ``run_root()``: ``<checkout>/.run``, logs and diagnostics of test runs.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class NoCheckoutError(RuntimeError):
    """The package runs from an installed wheel, where a checkout's files do not exist."""


def in_checkout() -> bool:
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "src" / "yuxi_k8s").is_dir()


def repo_root() -> Path:
    """The checkout, or NoCheckoutError naming what was looked for."""
    if not in_checkout():
        raise NoCheckoutError(f"no yuxi-k8s checkout at {REPO_ROOT} (this needs the repository, not a wheel)")
    return REPO_ROOT


def cache_root() -> Path:
    """The cache of builds and downloads, shared by every clone on this machine."""
    explicit = os.environ.get("YUXI_K8S_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return (base / "yuxi-k8s").absolute()


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root (not created)."""
    return cache_root().joinpath(*parts)


def run_root() -> Path:
    """``.run/`` of the checkout: test-run folders, logs, diagnostics (git-ignored)."""
    return repo_root() / ".run"


def bin_dir() -> Path:
    """``bin/`` of the checkout, where scripts/tools.sh links the pinned binaries."""
    return REPO_ROOT / "bin"
