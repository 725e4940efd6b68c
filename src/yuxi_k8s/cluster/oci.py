"""Container images without a registry or a container engine.

An image here is an OCI image-layout tar (``oci-layout``, ``index.json``,
``blobs/sha256/...``) with a docker-archive ``manifest.json`` beside it, so both
``ctr images import`` and ``kind load image-archive`` accept it. Layers are
uncompressed tars written deterministically (sorted, mtime 0), so the same
inputs give the same digests and the cache key is the hash of the inputs.

API::

    from yuxi_k8s.cluster import oci

    # A FROM-scratch image from a directory (owned by root in the image):
    img = oci.build_from_directory(Path("stage"), "localhost/yuxi-k8s/busybox",
                                      entrypoint=["/bin/sh"], user="65532:65532")
    # A Debian root filesystem (cached per suite + package list), plus extra layers:
    rootfs = oci.debootstrap_rootfs("bookworm", ["python3", "ca-certificates"])
    img = oci.build_image("localhost/yuxi-k8s/py", [oci.rootfs_layer(rootfs),
                             oci.directory_layer(Path("app"))], cmd=["python3"])
    img.name      # "localhost/yuxi-k8s/py:<16 hex of the inputs>" unless a tag was given
    img.archive   # Path of the cached archive under ~/.cache/yuxi-k8s/images/

    oci.load_into_containerd(img.archive)          # the local cluster's containerd
    oci.load_into_kind(img.archive, "yuxi-k8s")    # a kind cluster

Everything lands under ``$YUXI_K8S_CACHE`` (default ``~/.cache/yuxi-k8s``),
outside the clone, so a fresh clone on the same machine reuses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import apt, paths
from yuxi_k8s.pinned_tools import pinned_tool

CACHE = paths.cache_root()
IMAGES_DIR = CACHE / "images"
LAYERS_DIR = CACHE / "layers"
ROOTFS_DIR = CACHE / "rootfs"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The mirror is plain http: debootstrap must check the Release file's signature against Debian's
# keys (the packages' hashes come from that file). Without --keyring, and this file missing on the
# build machine, debootstrap only warns and installs whatever the network served.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What debootstrap copies from the build machine, and apt's caches: dropped on request.
HOST_FILES = (
    "etc/resolv.conf",
    "etc/hostname",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
)
# The local cluster's containerd socket (see yuxi_k8s.cluster.local.layout).
CONTAINERD_SOCKET = "/run/yuxi-k8s/containerd/containerd.sock"


class ImageError(RuntimeError):
    """Building or loading an image failed; the message says which step."""


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar and its sha256 (= diff_id = blob digest)."""

    path: Path
    digest: str


@dataclass(frozen=True)
class BuiltImage:
    name: str  # fully qualified reference with tag, e.g. localhost/yuxi-k8s/pause:3f2a...
    archive: Path
    # "sha256:<hex>" of the image manifest: what `ctr import` keeps and a registry serves
    # (pin with name@digest). None only for records written before digests were kept.
    digest: str | None = None


# Users the kit's securityContexts run as; an image's /etc/passwd must name them or
# initdb ("could not look up effective user ID") and some tools refuse to run.
EXTRA_USERS = {999: "pgrun", 1000: "app", 101: "nginxrun", 10001: "yuxi", 65532: "nonroot"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_digest(root: Path) -> str:
    """Hash of names, modes, link targets and contents of every entry under root."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _publish(tmp: Path, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final


def directory_layer(root: Path) -> Layer:
    """A layer with everything under *root*, owned by root:root, cached by content."""
    if not root.is_dir():
        raise ImageError(f"image directory {root} does not exist")
    key = _tree_digest(root)[:24]
    out = LAYERS_DIR / f"dir-{key}.tar"
    if not out.exists():
        LAYERS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")

        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            return info

        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=as_root)
        _publish(tmp, out)
    return Layer(out, sha256_file(out))


def rootfs_layer(rootfs: Path) -> Layer:
    """A whole root filesystem (ownership kept) as one layer, cached beside the tree."""
    out = rootfs.parent / "layer.tar"
    digest_file = rootfs.parent / "layer.sha256"
    if out.exists() and digest_file.exists():
        return Layer(out, digest_file.read_text().strip())
    tmp = out.with_suffix(".tmp")
    excludes = [f"--exclude=./{d}/*" for d in ("dev", "proc", "sys", "run", "tmp")]
    cmd = ["tar", "-C", str(rootfs), "--numeric-owner", "--sort=name", "--mtime=@0", *excludes]
    _run([*cmd, "-cf", str(tmp), "."], "tar the root filesystem")
    digest = sha256_file(tmp)
    _publish(tmp, out)
    digest_file.write_text(digest)
    return Layer(out, digest)


def debian_keyring(path: Path) -> Path:
    """*path*, Debian's archive keyring on the build machine, or an ImageError saying how to get it."""
    if not path.is_file():
        raise ImageError(
            f"{path} is missing: debootstrap would not check the Debian archive's signature "
            "(apt-get install debian-archive-keyring)"
        )
    return path


def debootstrap_command(
    suite: str,
    target: Path,
    mirror: str,
    packages: Sequence[str],
    keyring: Path,
    debs_cache: Path | None = None,
) -> list[str]:
    """debootstrap's command line: minbase, the Release signature checked against *keyring*."""
    include = ["--include=" + ",".join(packages)] if packages else []
    cache = [f"--cache-dir={debs_cache.absolute()}"] if debs_cache is not None else []
    return [
        "debootstrap", "--variant=minbase", f"--keyring={keyring}", "--force-check-gpg",
        *cache, *include, suite, str(target), mirror,
    ]  # fmt: skip


def debootstrap_rootfs(
    suite: str,
    packages: Sequence[str],
    *,
    mirror: str = DEBIAN_MIRROR,
    debs_cache: Path | None = None,
    drop_host_files: bool = False,
) -> Path:
    """A minbase Debian root filesystem with *packages*, built once per (suite, packages, mirror).

    Needs root, ``debootstrap`` and Debian's archive keyring (both installed with apt-get when
    missing); the Release file's signature is checked against that keyring, or nothing is built.
    Returns the rootfs directory; its layer is ``rootfs_layer(path)``.
    *debs_cache* keeps the downloaded packages for the next build (not part of the key).
    *drop_host_files* removes what debootstrap copies from the host (``/etc/resolv.conf``,
    ``/etc/hostname``) and apt's package caches, so nothing of the build machine ends up
    in an image or in a chroot made from it.
    """
    # The keyring is not in the key: it only checks what is fetched. Trees built before it was
    # passed were checked too where the host had the keyring (debootstrap's default there).
    spec_fields: dict[str, object] = {"suite": suite, "packages": sorted(packages), "mirror": mirror}
    if drop_host_files:
        spec_fields["drop_host_files"] = True
    spec = json.dumps(spec_fields)
    base = ROOTFS_DIR / f"{suite}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"
    target = base / "rootfs"
    if (base / ".complete").exists():
        return target
    if os.geteuid() != 0:
        raise ImageError("building a root filesystem with debootstrap needs root")
    wanted = [] if shutil.which("debootstrap") else ["debootstrap"]
    wanted += apt.missing({"debian-archive-keyring": DEBIAN_KEYRING})
    try:
        apt.install(wanted)
    except apt.AptError as exc:
        raise ImageError(str(exc)) from exc
    keyring = debian_keyring(DEBIAN_KEYRING)
    shutil.rmtree(base, ignore_errors=True)  # a killed earlier run may have left half a tree
    base.mkdir(parents=True)
    if debs_cache is not None:
        debs_cache.mkdir(parents=True, exist_ok=True)
    _run(debootstrap_command(suite, target, mirror, packages, keyring, debs_cache), f"debootstrap {suite}")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / junk).glob("*"):
            if entry.is_file():
                entry.unlink()
    if drop_host_files:
        for name in HOST_FILES:
            (target / name).unlink(missing_ok=True)
    (base / ".complete").write_text(spec)
    return target


def build_image(
    repository: str,
    layers: Sequence[Layer],
    *,
    tag: str | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Iterable[str] = (),
    user: str | None = None,
    workdir: str = "/",
) -> BuiltImage:
    """Assemble *layers* into an image archive (cached); the default tag hashes every input."""
    env = list(env)
    if not any(entry.startswith("PATH=") for entry in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    config_body = {
        "Env": env,
        "Entrypoint": list(entrypoint) if entrypoint else None,
        "Cmd": list(cmd) if cmd else None,
        "WorkingDir": workdir,
        **({"User": user} if user else {}),
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config_body,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.digest}" for layer in layers]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    tag = tag or config_digest[:16]
    name = f"{repository}:{tag}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{layer.digest}",
                "size": layer.path.stat().st_size,
            }
            for layer in layers
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    archive = IMAGES_DIR / f"{repository.replace('/', '_')}-{tag}-{config_digest[:12]}.oci.tar"
    if archive.exists():
        return BuiltImage(name, archive, f"sha256:{manifest_digest}")
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest}",
            "RepoTags": [name],
            "Layers": [f"blobs/sha256/{layer.digest}" for layer in layers],
        }
    ]
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(f".{os.getpid()}.tmp")
    with tarfile.open(tmp, "w") as tar:

        def add_bytes(arcname: str, data: bytes) -> None:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes("manifest.json", json.dumps(docker_manifest).encode())
        add_bytes(f"blobs/sha256/{config_digest}", config_bytes)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_bytes)
        seen: set[str] = set()
        for layer in layers:
            if layer.digest not in seen:
                seen.add(layer.digest)
                tar.add(layer.path, arcname=f"blobs/sha256/{layer.digest}")
    _publish(tmp, archive)
    return BuiltImage(name, archive, f"sha256:{manifest_digest}")


def build_from_directory(
    directory: Path,
    repository: str,
    *,
    tag: str | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Iterable[str] = (),
    user: str | None = None,
    workdir: str = "/",
) -> BuiltImage:
    """A FROM-scratch image whose only layer is *directory*."""
    return build_image(
        repository,
        [directory_layer(directory)],
        tag=tag,
        entrypoint=entrypoint,
        cmd=cmd,
        env=env,
        user=user,
        workdir=workdir,
    )


def passwd_with_extra_users(rootfs: Path, users: dict[int, str] | None = None) -> tuple[str, str]:
    """*rootfs*'s /etc/passwd and /etc/group text with *users* (default EXTRA_USERS) added.

    Each added user gets a group of the same id, home /tmp and no login shell; ids the
    files already name are left as they are.
    """
    passwd = (rootfs / "etc/passwd").read_text()
    group = (rootfs / "etc/group").read_text()
    known_uids = {int(line.split(":")[2]) for line in passwd.splitlines() if line.count(":") >= 6}
    known_gids = {int(line.split(":")[2]) for line in group.splitlines() if line.count(":") >= 3}
    for uid, name in sorted((EXTRA_USERS if users is None else users).items()):
        if uid not in known_uids:
            passwd += f"{name}:x:{uid}:{uid}::/tmp:/usr/sbin/nologin\n"
        if uid not in known_gids:
            group += f"{name}:x:{uid}:\n"
    return passwd, group


def kit_wheels(workdir: Path) -> list[Path]:
    """This package (the checkout it runs from) as a wheel in *workdir*/wheels, without dependencies.

    Built from a copy (setuptools leaves build/ and egg-info beside the sources it builds)
    with a fixed SOURCE_DATE_EPOCH, so the same sources give the same wheel contents.
    """
    root = paths.repo_root()
    out = workdir / "wheels"
    source = workdir / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    if proc.returncode != 0:
        raise ImageError(f"building the yuxi-k8s wheel failed: {proc.stderr.strip()[-300:]}")
    return sorted(out.glob("*.whl"))


def wheel_content_digest(wheels: Iterable[Path]) -> str:
    """sha256 over the names and contents of the files in *wheels* (not the zips' timestamps)."""
    digest = hashlib.sha256()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in sorted(zf.namelist()):
                digest.update(name.encode())
                digest.update(zf.read(name))
    return digest.hexdigest()


def _ctr_binary() -> str:
    """The pinned ctr that scripts/tools.sh links into bin/, else one on PATH."""
    return str(pinned_tool("ctr") or "ctr")


def archive_reference(archive: Path) -> tuple[str, str] | None:
    """(image name, manifest digest) an archive of :func:`build_image` holds, from its index.json."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            index = json.loads(member.read()) if member else {}
    except (OSError, KeyError, tarfile.TarError, ValueError):
        return None
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        return None
    name = (manifests[0].get("annotations") or {}).get("io.containerd.image.name")
    return (name, manifests[0]["digest"]) if name else None


def load_into_containerd(archive: Path, *, address: str = CONTAINERD_SOCKET, ctr: str | None = None) -> None:
    """Import *archive* into containerd's ``k8s.io`` namespace (where the kubelet looks), unless the
    same name already points at the same manifest there (a multi-GB import takes a minute)."""
    ctr = ctr or _ctr_binary()
    base = [ctr, "--address", address, "-n", "k8s.io"]
    ref = archive_reference(archive)
    if ref is not None:
        listed = subprocess.run(
            [*base, "images", "ls", f"name=={ref[0]}"], capture_output=True, text=True, check=False
        )
        if listed.returncode == 0 and ref[1] in listed.stdout:
            return
    _run([*base, "images", "import", str(archive)], f"import {archive.name} into containerd at {address}")


def load_into_kind(
    archive: Path, cluster: str, *, kind: str = "kind", env: Mapping[str, str] | None = None
) -> None:
    """Load *archive* onto every node of the kind cluster *cluster*; *env* names the engine that
    runs it (``DOCKER_HOST``), e.g. :meth:`yuxi_k8s.cluster.kind.engine.DockerEngine.env`."""
    _run([kind, "load", "image-archive", str(archive), "--name", cluster], f"kind load {archive.name}", env)


def _run(cmd: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    with tempfile.TemporaryFile() as out:
        environment = None if env is None else dict(env)
        proc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, check=False, env=environment)
        if proc.returncode != 0:
            out.seek(0)
            tail = out.read().decode(errors="replace").strip().splitlines()[-5:]
            raise ImageError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


__all__ = [
    "EXTRA_USERS",
    "BuiltImage",
    "ImageError",
    "Layer",
    "build_from_directory",
    "build_image",
    "debian_keyring",
    "debootstrap_command",
    "debootstrap_rootfs",
    "directory_layer",
    "kit_wheels",
    "load_into_containerd",
    "load_into_kind",
    "passwd_with_extra_users",
    "rootfs_layer",
    "wheel_content_digest",
]
