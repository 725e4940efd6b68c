"""Debian packages installed with apt-get when missing: one function for every caller.

The loopback services (``yuxi_k8s.devservices``), the local cluster and the image builder each
name what they need; :func:`install` installs it (root only) or says in one line what to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


class AptError(RuntimeError):
    """Packages are missing and cannot be installed here; the message is one line."""


def missing(packages: Mapping[str, str | Path]) -> list[str]:
    """The packages (name -> a file it installs) whose file is not there."""
    return [name for name, path in packages.items() if not Path(path).exists()]


def install(packages: Sequence[str], *, recommends: bool = True) -> None:
    """``apt-get update`` then ``apt-get install -y`` *packages* (a no-op when empty).

    *recommends* False adds ``--no-install-recommends``. Not root, no apt-get or a failing
    apt-get is an :class:`AptError` naming the packages and the command to run.
    """
    if not packages:
        return
    names = " ".join(packages)
    if os.geteuid() != 0:
        raise AptError(f"missing {names}: install them as root (apt-get install {names})")
    if shutil.which("apt-get") is None:
        raise AptError(
            f"missing {names}, and this machine has no apt-get: install them with its package manager"
        )
    print(f"==> installing Debian packages: {names}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    extra = [] if recommends else ["--no-install-recommends"]
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *extra, *packages]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            what = f"apt-get install {names}" if cmd[1] == "install" else "apt-get update"
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])[-300:]
            raise AptError(f"{what} failed: {tail}")
