"""Where the application's source comes from, for building its images.

One setting: ``--source`` on the command, else ``$YUXI_K8S_APP_SOURCE``, else a shallow
``git clone`` of the pinned tag from the contract's repository. It may name

- a tarball (``.tar.gz``, ``.tgz``, ``.tar``, ``.tar.xz``, ``.tar.bz2``), e.g. what
  ``git archive --prefix=yuxi-know-v0.6.1/ v0.6.1`` writes: unpacked once into the cache,
  keyed by the tarball's sha256;
- a checkout folder: used where it is (nothing copied);
- a git URL (``https://``, ``ssh://``, ``git@host:path``, ``file://``), optionally
  ``URL#REF`` for another ref than the pinned tag: cloned once into the cache.

Whatever it names must be Yuxi-Know of the pinned version (``contract.identify``).
Everything that goes wrong is one :class:`SourceError` line, and nothing half-made is
left in the cache: tarballs unpack and clones land in a temporary folder that is
renamed into place only once it passed the check (:func:`yuxi_k8s.cache.build_once`).

API::

    from yuxi_k8s.app import source
    src = source.resolve()            # or resolve("/path/to/yuxi-know-v0.6.1.tar.gz")
    src.tree, src.version, src.key    # the folder, "0.6.1", a content key for caches
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.app import PINNED_VERSION
from yuxi_k8s.app.contract import ContractError, identify, load
from yuxi_k8s.cache import build_once
from yuxi_k8s.cluster.oci import sha256_file

ENV = "YUXI_K8S_APP_SOURCE"
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")
# Folders that never feed an image build and may be huge in a developer's checkout.
_NOT_SOURCE = {".git", "node_modules", ".venv", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
_GIT_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


class SourceError(ValueError):
    """The source setting names nothing usable; the message is one line for the user."""


@dataclass(frozen=True)
class Source:
    tree: Path  # the folder holding backend/, web/, docker/
    version: str  # the application version the tree states
    key: str  # sha256 hex of the tree's content (tarball digest, commit, or files)
    origin: str  # what the setting said (path or URL), for messages


def _cache() -> Path:
    return paths.cache_dir("app-source")


def is_url(setting: str) -> bool:
    return bool(_GIT_URL.match(setting))


def tree_key(tree: Path) -> str:
    """sha256 over the relative paths, modes and contents of a checkout's source files."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCE)
        for name in sorted(files):
            path = Path(root, name)
            rel = path.relative_to(tree).as_posix()
            if path.is_symlink():
                digest.update(f"{rel}\0link\0{os.readlink(path)}\0".encode())
            elif path.is_file():
                digest.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
                digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _check(tree: Path, version: str, origin: str) -> None:
    try:
        identify(tree, version)
    except ContractError as exc:  # the message names the tree; name what the user gave instead
        raise SourceError(str(exc).replace(str(tree), origin)) from None


def _single_top(folder: Path) -> Path:
    """The tree inside an unpacked tarball: its one top folder (git archive --prefix), else itself."""
    entries = [p for p in folder.iterdir() if p.name not in {"pax_global_header"}]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def from_tarball(tarball: Path, version: str = PINNED_VERSION) -> Source:
    try:
        key = sha256_file(tarball)
    except OSError as exc:
        raise SourceError(f"{tarball}: cannot read ({exc.strerror or exc})") from None
    final = _cache() / f"tar-{key[:24]}"

    def unpack(tmp: Path) -> None:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp / "x", filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise SourceError(f"{tarball}: not a readable tarball ({detail})") from None
        tree = _single_top(tmp / "x")
        _check(tree, version, str(tarball))
        (tmp / "tree").write_text(str(tree.relative_to(tmp)))

    build_once(final, unpack)
    tree = final / (final / "tree").read_text().strip()
    _check(tree, version, str(tarball))
    return Source(tree, version, key, str(tarball))


def from_folder(folder: Path, version: str = PINNED_VERSION) -> Source:
    _check(folder, version, str(folder))
    return Source(folder.resolve(), version, tree_key(folder), str(folder))


def _git(*args: str, cwd: Path | None = None) -> str:
    if shutil.which("git") is None:
        raise SourceError("git is not installed (needed to clone the source; or pass a tarball or folder)")
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        raise SourceError(lines[-1] if lines else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout.strip()


def from_git(url: str, version: str = PINNED_VERSION) -> Source:
    contract = load(version)
    repo, _, ref = url.partition("#")
    ref = ref or str(contract.source["tag"])
    final = _cache() / f"git-{hashlib.sha256(f'{repo}#{ref}'.encode()).hexdigest()[:24]}"

    def clone(tmp: Path) -> None:
        try:
            _git("clone", "--quiet", "--depth", "1", "--branch", ref, repo, str(tmp / "tree"))
        except SourceError as exc:
            raise SourceError(f"cannot clone {ref} of {repo}: {exc}") from None
        _check(tmp / "tree", version, url)
        pinned = str(contract.source.get("commit", ""))
        commit = _git("rev-parse", "HEAD", cwd=tmp / "tree")
        if repo == contract.source["repository"] and ref == contract.source["tag"] and commit != pinned:
            raise SourceError(f"{repo} tag {ref} is commit {commit[:12]}; the contract pins {pinned[:12]}")

    build_once(final, clone)
    tree = final / "tree"
    _check(tree, version, url)
    commit = _git("rev-parse", "HEAD", cwd=tree)
    return Source(tree, version, hashlib.sha256(commit.encode()).hexdigest(), url)


def resolve(setting: str | None = None, *, version: str = PINNED_VERSION) -> Source:
    """The source tree named by *setting*, else ``$YUXI_K8S_APP_SOURCE``, else a clone of the pinned tag."""
    value = (setting if setting is not None else os.environ.get(ENV, "")).strip()
    if not value:
        return from_git(str(load(version).source["repository"]), version)
    if is_url(value):
        return from_git(value, version)
    path = Path(value).expanduser()
    if not path.exists():
        raise SourceError(f"{value}: no such file or folder (give a tarball, a checkout folder or a git URL)")
    if path.is_dir():
        return from_folder(path, version)
    if not path.name.endswith(TARBALL_SUFFIXES):
        raise SourceError(f"{value}: not a tarball ({', '.join(TARBALL_SUFFIXES)}) nor a folder")
    return from_tarball(path, version)


__all__ = ["ENV", "Source", "SourceError", "from_folder", "from_git", "from_tarball", "resolve", "tree_key"]
