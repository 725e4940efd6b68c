"""Folders in the cache (``paths.cache_root()``) that are built once, then only read.

A folder is done when its ``.stamp`` exists. It is built in a temporary folder
beside the target and moved into place in one rename, so a reader never sees
half of it, a killed build leaves only a ``.<name>-*`` leftover, and two
processes building at once are fine: the first rename wins, the other's copy
is dropped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

STAMP = ".stamp"


def is_built(target: Path) -> bool:
    return (target / STAMP).exists()


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """*target*, filled by ``build(folder)`` unless an earlier build finished it."""
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / STAMP).touch()
        publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only when the build failed or lost the race
    return target


def publish(tmp: Path, target: Path) -> None:
    """Move a finished folder *tmp* to *target*; a concurrent builder that finished first wins."""
    try:
        tmp.rename(target)
    except OSError:
        if is_built(target):
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # an unfinished leftover at the target: replace it
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
