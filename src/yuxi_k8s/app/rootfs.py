"""Root filesystems built in steps, one image layer per step, with overlayfs and chroot.

A :class:`Stage` is one step's changes on top of its parent, kept as an overlayfs
*upper* directory in the cache (``app-images/stages/<name>-<key>/upper``): files it
added or changed, character devices 0/0 where it deleted something, the ``opaque``
attribute where it replaced a whole directory. The first stage of a chain is a full
tree (a debootstrap root filesystem, or a folder made from scratch). So:

- building a step = mount an overlay of the parent chain with a fresh upper, run
  commands in a chroot of it (:class:`Chroot`: ``/proc``, a small ``/dev``, a private
  ``/tmp``, the host's DNS and CA bundle only while the step runs), unmount;
- its image layer = a tar of the upper, whiteouts turned into OCI ``.wh.`` entries
  (:func:`layer`);
- the image's whole filesystem as a plain folder = a copy of the read-only overlay of
  the chain (:func:`materialize`), for tests that chroot into it.

A stage's key hashes its parent's key, its name and its inputs, so a change rebuilds
that step and the ones above it only. Everything needs root (mount, chroot).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.cache import build_once
from yuxi_k8s.cluster.oci import DEFAULT_PATH, ImageError, Layer, sha256_file

OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off,index=off"  # plain copy-up: uppers are layer-shaped
OPAQUE_XATTR = "trusted.overlay.opaque"
HOST_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# Left behind by apt and dpkg; removed from a stage's upper (which reverts them to the parent's).
APT_LEFTOVERS = (
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/log/apt",
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "usr/sbin/policy-rc.d",
)


def stages_dir() -> Path:
    return paths.cache_dir("app-images", "stages")


def say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress(what: str, every: float = 30.0, quiet: float = 2.0) -> Iterator[None]:
    """``[images] what …`` once the step took *quiet* seconds, ``… (N s)`` every *every* seconds,
    ``what: done (N s)`` at the end; a step that finishes sooner (a cache hit) prints nothing."""
    start = time.monotonic()
    stop = threading.Event()
    shown = threading.Event()

    def beat() -> None:
        if stop.wait(quiet):
            return
        say(f"{what} …")
        shown.set()
        while not stop.wait(every):
            say(f"{what} … ({time.monotonic() - start:.0f} s)")

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
    if shown.is_set():
        say(f"{what}: done ({time.monotonic() - start:.0f} s)")


def run(
    cmd: Sequence[str],
    what: str,
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run *cmd*; its output goes to *log* (appended) or is returned. Failure: ImageError, one line."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"\n$ {' '.join(cmd)}\n".encode())
            out.flush()
            proc = subprocess.run(
                list(cmd), stdout=out, stderr=subprocess.STDOUT, check=False, env=env, cwd=cwd
            )
        if proc.returncode != 0:
            tail = log.read_bytes()[-4000:].decode(errors="replace").strip().splitlines()[-4:]
            raise ImageError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)} (log: {log})")
        return ""
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False, env=env, cwd=cwd)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-4:]
        raise ImageError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _check_path(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ",:\n"):
        raise ImageError(f"overlayfs cannot take a path with ',' or ':' in it: {text}")
    return text


@contextlib.contextmanager
def overlay(lowers: Sequence[Path], upper: Path | None = None, work: Path | None = None) -> Iterator[Path]:
    """The overlay of *lowers* (top first) with *upper* for changes, or read-only without one."""
    if upper is None and len(lowers) == 1:
        yield lowers[0]
        return
    options = "lowerdir=" + ":".join(_check_path(p) for p in lowers)
    if upper is not None and work is not None:
        options += f",upperdir={_check_path(upper)},workdir={_check_path(work)}"
    mnt = Path(tempfile.mkdtemp(prefix="yuxi-overlay-"))
    try:
        run(
            ["mount", "-t", "overlay", "overlay", "-o", f"{options},{OVERLAY_OPTIONS}", str(mnt)],
            "mount overlay",
        )
        try:
            yield mnt
        finally:
            _umount(mnt)
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()


_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}


def host_ca_bundle() -> Path | None:
    """The CA bundle the host trusts (SSL_CERT_FILE, else Debian's, Red Hat's), for downloads in a chroot."""
    for candidate in (os.environ.get("SSL_CERT_FILE", ""), *HOST_CA_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass
class Chroot:
    """Commands run inside *root* (a mounted overlay), each logged to *log*."""

    root: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        argv: Sequence[str],
        what: str,
        *,
        cwd: str = "/",
        env: Mapping[str, str] | None = None,
        capture: bool = False,
    ) -> str:
        """*argv* in the chroot with the session's environment (plus *env*); *capture* returns stdout."""
        script = 'cd "$0" && exec "$@"'
        cmd = ["chroot", str(self.root), "/bin/sh", "-c", script, cwd, *argv]
        full_env = {**self.env, **(env or {})}
        if capture:
            return run(cmd, what, env=full_env)
        return run(cmd, what, log=self.log, env=full_env)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


@contextlib.contextmanager
def chroot(root: Path, log: Path, binds: Mapping[str, Path] | None = None) -> Iterator[Chroot]:
    """A session in *root*: /proc, a tmpfs /dev with the usual nodes, a tmpfs /tmp, the host's DNS and
    CA bundle (``SSL_CERT_FILE=/tmp/host-ca.crt``), and *binds* (path inside -> host folder).

    Nothing of it stays in *root* afterwards: mounts go, and /etc/resolv.conf is removed
    again (it is created only where the tree has none).
    """
    mounted: list[Path] = []
    created_resolv = False
    resolv = root / "etc/resolv.conf"

    def mount(args: list[str], target: Path) -> None:
        run(["mount", *args, str(target)], f"mount {target.relative_to(root)}")
        mounted.append(target)

    try:
        mount(["-t", "proc", "proc"], root / "proc")
        dev = root / "dev"
        mount(["-t", "tmpfs", "-o", "mode=755,size=16m", "tmpfs"], dev)
        for name, (major, minor) in _DEVICES.items():
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(dev / name, 0o666)
        (dev / "shm").mkdir(mode=0o1777)
        os.chmod(dev / "shm", 0o1777)
        (dev / "pts").mkdir()
        for name, fd in (("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2")):
            (dev / name).symlink_to(f"/proc/self/fd{fd}")
        mount(["-t", "tmpfs", "-o", "mode=1777", "tmpfs"], root / "tmp")
        for inside, host in (binds or {}).items():
            where = root / inside.lstrip("/")
            if not where.is_dir():
                if not inside.startswith("/tmp/"):
                    raise ImageError(f"bind target {inside} does not exist in the tree")
                where.mkdir(parents=True)
            host.mkdir(parents=True, exist_ok=True)
            mount(["--bind", str(host)], where)
        if Path("/etc/resolv.conf").exists():
            if resolv.exists() or resolv.is_symlink():
                mount(["--bind", "/etc/resolv.conf"], resolv)
            else:
                shutil.copy("/etc/resolv.conf", resolv)
                created_resolv = True
        env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        ca = host_ca_bundle()
        if ca is not None:
            shutil.copy(ca, root / "tmp/host-ca.crt")
            env["SSL_CERT_FILE"] = "/tmp/host-ca.crt"
        env.update({k: v for k, v in os.environ.items() if k in PROXY_VARIABLES})
        yield Chroot(root, log, env)
    finally:
        if created_resolv:
            resolv.unlink(missing_ok=True)
        for mountpoint in reversed(mounted):
            _umount(mountpoint)


@dataclass(frozen=True)
class Stage:
    """One step of a root filesystem: *upper* holds its changes over *parent* (or a full tree)."""

    name: str
    key: str
    upper: Path
    parent: Stage | None = None

    def chain(self) -> list[Path]:
        """The uppers from this stage down to the full tree at the bottom (overlayfs lowerdir order)."""
        out: list[Path] = []
        stage: Stage | None = self
        while stage is not None:
            out.append(stage.upper)
            stage = stage.parent
        return out

    def stages(self) -> list[Stage]:
        """Bottom first: the order of the image's layers."""
        out: list[Stage] = []
        stage: Stage | None = self
        while stage is not None:
            out.append(stage)
            stage = stage.parent
        return out[::-1]

    @property
    def folder(self) -> Path:
        return self.upper.parent


def base(name: str, tree: Path, key: str) -> Stage:
    """A full tree built elsewhere (e.g. by debootstrap) as the bottom of a chain."""
    return Stage(name, key, tree)


def stage_key(parent: Stage | None, name: str, inputs: str) -> str:
    seed = f"{parent.key if parent else ''}\0{name}\0{inputs}"
    return hashlib.sha256(seed.encode()).hexdigest()[:20]


def derive(
    parent: Stage | None,
    name: str,
    inputs: str,
    build: Callable[[Path, Path], None],
    *,
    readable: Sequence[str] = (),
) -> Stage:
    """The stage *name* over *parent*, built once per (parent, name, inputs).

    ``build(root, log)`` makes the changes in *root*: the mounted overlay of the parent
    chain, or for a stage without parent the (empty) upper itself. Afterwards every uid
    may read what the stage wrote under the *readable* folders. It is built beside its
    place and moved there when done (:func:`yuxi_k8s.cache.build_once`), so a failed or
    killed build leaves nothing that counts.
    """
    key = stage_key(parent, name, inputs)
    folder = stages_dir() / f"{name}-{key}"
    log = stages_dir() / f"{name}-{key}.log"  # beside the folder: it outlives a failed build

    def make(tmp: Path) -> None:
        upper = tmp / "upper"
        upper.mkdir()
        log.unlink(missing_ok=True)
        if parent is None:
            build(upper, log)
        else:
            (tmp / "work").mkdir()
            with overlay(parent.chain(), upper, tmp / "work") as root:
                build(root, log)
            shutil.rmtree(tmp / "work", ignore_errors=True)
        for leftover in APT_LEFTOVERS:
            target = upper / leftover
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        make_readable(upper, *readable)
        (tmp / "inputs").write_text(inputs + "\n")

    build_once(folder, make)
    return Stage(name, key, folder / "upper", parent)


def _whiteouts(upper: Path) -> tuple[list[str], list[str]]:
    """Member names for the layer tar, and the OCI whiteout entries, from an overlay upper."""
    members: list[str] = []
    whiteouts: list[str] = []
    for root, dirs, files in os.walk(upper):
        dirs.sort()
        rel_root = Path(root).relative_to(upper)
        if rel_root != Path("."):
            with contextlib.suppress(OSError):
                if os.getxattr(root, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                    whiteouts.append((rel_root / ".wh..wh..opq").as_posix())
        for name in sorted([*dirs, *files]):
            path = Path(root, name)
            st = path.lstat()
            rel = (rel_root / name).as_posix()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                whiteouts.append((rel_root / f".wh.{name}").as_posix())
            else:
                members.append(rel)
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
    return members, whiteouts


def layer(stage: Stage) -> Layer:
    """The stage's changes as an uncompressed layer tar (cached beside the stage)."""
    out = stage.folder / "layer.tar"
    digest_file = stage.folder / "layer.sha256"
    if out.exists() and digest_file.exists():
        return Layer(out, digest_file.read_text().strip())
    members, whiteouts = _whiteouts(stage.upper)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with tempfile.NamedTemporaryFile("wb", suffix=".list") as listing:
        listing.write(b"".join(m.encode() + b"\0" for m in members))
        listing.flush()
        cmd = ["tar", "-C", str(stage.upper), "--numeric-owner", "--no-recursion", "--null"]
        run([*cmd, "-T", listing.name, "-cf", str(tmp)], f"tar the {stage.name} layer")
    if whiteouts:
        with tarfile.open(tmp, "a") as tar:
            for name in whiteouts:
                info = tarfile.TarInfo(name)
                info.mode = 0o644
                tar.addfile(info)
    digest = sha256_file(tmp)
    os.replace(tmp, out)
    digest_file.write_text(digest)
    return Layer(out, digest)


def materialize(stage: Stage, dest: Path) -> Path:
    """The whole filesystem of *stage*'s chain copied into ``dest/root`` (once per stage key)."""

    def copy(tmp: Path) -> None:
        with overlay(stage.chain()) as merged:
            run(["cp", "-a", f"{merged}/.", str(tmp / "root")], f"copy the {stage.name} tree")
        shm = tmp / "root/dev/shm"
        if shm.is_dir():  # container runtimes give every uid a writable /dev/shm (POSIX semaphores)
            shm.chmod(0o1777)

    return build_once(dest, copy) / "root"


@contextlib.contextmanager
def proc_mounted(tree: Path) -> Iterator[Path]:
    """*tree* (from :func:`materialize`) with /proc mounted, as a container runtime would give it.

    For running programs in a plain ``chroot`` of the tree: /dev/stderr and friends are links
    into /proc, and some programs read /proc/self. Nothing else is mounted (no DNS, no /tmp).
    """
    target = tree / "proc"
    target.mkdir(exist_ok=True)  # a from-scratch image has no mount point of its own
    run(["mount", "-t", "proc", "proc", str(target)], f"mount proc in {tree}")
    try:
        yield tree
    finally:
        _umount(target)


def make_readable(upper: Path, *folders: str) -> None:
    """Give every uid read access (and search/exec where the owner has x) under *folders* of an upper."""
    for folder in folders:
        top = upper / folder.lstrip("/")
        if not top.exists():
            continue
        for root, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = Path(root, name)
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                    continue
                want = st.st_mode | 0o444 | (0o111 if st.st_mode & 0o100 or stat.S_ISDIR(st.st_mode) else 0)
                if want != st.st_mode:
                    os.chmod(path, stat.S_IMODE(want))


__all__ = [
    "Chroot",
    "Stage",
    "base",
    "chroot",
    "derive",
    "layer",
    "make_readable",
    "materialize",
    "overlay",
    "proc_mounted",
    "progress",
    "run",
    "say",
]
