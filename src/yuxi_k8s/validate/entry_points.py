"""The kustomizations the kit checks in itself, listed once in ``entry_points.txt``.

``make validate`` passes them to ``python -m yuxi_k8s.validate --entry-points``; the static tests
(``tests/static/test_overlays.py``) read the same list. Nothing is filtered by existence: a
listed path that is gone is a render failure ("no such file or directory") in both.
"""

from __future__ import annotations

import os
from pathlib import Path

from yuxi_k8s.paths import repo_root

LIST = Path(__file__).with_name("entry_points.txt")


def entry_points(text: str | None = None) -> list[str]:
    """The listed paths, in order, relative to the checkout (``#`` starts a comment)."""
    lines = (LIST.read_text() if text is None else text).splitlines()
    paths = [line.split("#", 1)[0].strip() for line in lines]
    return [p for p in paths if p]


def checkout_entry_points() -> list[str]:
    """The listed paths in this checkout, relative to the current directory when inside it."""
    root = repo_root()
    return [
        os.path.relpath(root / p) if Path.cwd().is_relative_to(root) else str(root / p)
        for p in entry_points()
    ]
