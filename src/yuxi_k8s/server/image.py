"""The runtime image of the reference stack, built here without a registry or a container engine.

One Debian bookworm image carries everything the e2e stack runs: the reference
API server and the ``yuxi-k8s`` CLI (api, migrate Job, preflight), nginx (web),
PostgreSQL and Redis (the dev overlay's in-cluster dependencies), and Python
for the test's client pods. Two layers:

1. the root filesystem from ``debootstrap`` (slow, cached by suite + package list);
2. the application: this package and its pinned dependencies (installed with the
   host's pip, cp311 wheels), small entrypoints and an nginx main config that
   works as a non-root user (cached by the wheel and file hashes).

The result is an OCI image layout archive (with a docker-archive
``manifest.json`` beside it, as ``docker save`` writes), which
``ctr -n k8s.io images import`` and ``kind load image-archive`` both accept.

Run ``python -m yuxi_k8s.server.image`` to build it and print the archive path
and image name.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "python3-venv",
    "ca-certificates",
    "postgresql-15",
    "redis-server",
    "nginx-light",
    "procps",
)
IMAGE_REPOSITORY = "localhost/yuxi-k8s/runtime"
CACHE = Path(os.environ.get("YUXI_K8S_CACHE", Path.home() / ".cache" / "yuxi-k8s"))
REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_FILES = Path(__file__).resolve().parent / "imagefiles"
APP_LIB = "/opt/yuxi-k8s/lib"
# Users the stack's securityContexts run as; the rootfs must name them or initdb
# ("could not look up effective user ID") and some tools refuse to run.
EXTRA_USERS = {999: "pgrun", 1000: "app", 101: "nginxrun", 10001: "yuxi", 65532: "nonroot"}


@dataclass(frozen=True)
class BuiltImage:
    name: str  # fully qualified reference, e.g. localhost/yuxi-k8s/runtime:3f2a...
    archive: Path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def rootfs_key() -> str:
    spec = json.dumps({"suite": SUITE, "mirror": MIRROR, "packages": sorted(PACKAGES)})
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_rootfs() -> Path:
    """debootstrap the base root filesystem once per package list; returns its directory."""
    base = CACHE / "rootfs" / f"{SUITE}-{rootfs_key()}"
    done = base / ".complete"
    target = base / "rootfs"
    if done.exists():
        return target
    if os.geteuid() != 0:
        raise RuntimeError("building the root filesystem needs root (debootstrap)")
    if not shutil.which("debootstrap"):
        subprocess.run(["apt-get", "install", "-y", "debootstrap"], check=True)
    shutil.rmtree(base, ignore_errors=True)  # a killed earlier run leaves a partial tree
    base.mkdir(parents=True)
    _log(f"debootstrap {SUITE} with {', '.join(PACKAGES)} (about 2-4 minutes, cached afterwards)")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(target),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # Services must not be started by package scripts, and the apt caches only add size.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / junk).glob("*"):
            if entry.is_file():
                entry.unlink()
    done.write_text(rootfs_key())
    return target


def _rootfs_layer(rootfs: Path) -> Path:
    """The root filesystem as one uncompressed tar layer, cached beside the tree."""
    layer = rootfs.parent / "layer.tar"
    if layer.exists() and (rootfs.parent / "layer.sha256").exists():
        return layer
    tmp = layer.with_suffix(".tmp")
    subprocess.run(
        [
            "tar",
            "-C",
            str(rootfs),
            "--numeric-owner",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./run/*",
            "-cf",
            str(tmp),
            ".",
        ],
        check=True,
    )
    (rootfs.parent / "layer.sha256").write_text(_sha256_file(tmp))
    tmp.rename(layer)
    return layer


def _wheelhouse(workdir: Path) -> list[Path]:
    """This package as a wheel (its dependencies come pinned from constraints.txt)."""
    out = workdir / "wheels"
    # Built from a copy: setuptools leaves build/ and egg-info beside the sources it builds.
    source = workdir / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},  # same sources, same wheel, same tag
    )
    return sorted(out.glob("*.whl"))


def _passwd_with_extra_users(rootfs: Path) -> tuple[str, str]:
    passwd = (rootfs / "etc/passwd").read_text()
    group = (rootfs / "etc/group").read_text()
    known_uids = {int(line.split(":")[2]) for line in passwd.splitlines() if line.count(":") >= 6}
    known_gids = {int(line.split(":")[2]) for line in group.splitlines() if line.count(":") >= 3}
    for uid, name in sorted(EXTRA_USERS.items()):
        if uid not in known_uids:
            passwd += f"{name}:x:{uid}:{uid}::/tmp:/usr/sbin/nologin\n"
        if uid not in known_gids:
            group += f"{name}:x:{uid}:\n"
    return passwd, group


def _app_tree(rootfs: Path, wheels: list[Path], stage: Path) -> None:
    lib = stage / APP_LIB.lstrip("/")
    constraints = REPO_ROOT / "constraints.txt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--python-version=3.11.2",  # Debian bookworm's python3
            "--implementation=cp",
            "--platform=manylinux_2_28_x86_64",
            "--platform=manylinux_2_17_x86_64",
            "--platform=manylinux2014_x86_64",
            "--platform=linux_x86_64",
            "--target",
            str(lib),
            "-c",
            str(constraints),
            *[str(w) for w in wheels],
            # pip evaluates markers against the host's 3.11.7; redis needs this below 3.11.3.
            "async-timeout==5.0.1",
        ],
        check=True,
    )
    shutil.rmtree(lib / "bin", ignore_errors=True)
    site = stage / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True)
    (site / "yuxi-k8s.pth").write_text(APP_LIB + "\n")
    bindir = stage / "usr/local/bin"
    bindir.mkdir(parents=True)
    for script in (IMAGE_FILES / "bin").iterdir():
        shutil.copy(script, bindir / script.name)
        (bindir / script.name).chmod(0o755)
    etc = stage / "etc"
    (etc / "nginx").mkdir(parents=True)
    shutil.copy(IMAGE_FILES / "nginx.conf", etc / "nginx" / "nginx.conf")
    html = stage / "usr/share/nginx/html"
    html.mkdir(parents=True)
    shutil.copy(IMAGE_FILES / "index.html", html / "index.html")
    passwd, group = _passwd_with_extra_users(rootfs)
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)


def _app_inputs_digest(wheels: list[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(rootfs_key().encode())
    digest.update((REPO_ROOT / "constraints.txt").read_bytes())
    for wheel in wheels:  # by content, not by the zip's timestamps
        with zipfile.ZipFile(wheel) as zf:
            for name in sorted(zf.namelist()):
                digest.update(name.encode())
                digest.update(zf.read(name))
    for path in sorted(p for p in IMAGE_FILES.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(IMAGE_FILES)).encode())
        digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _tar_tree(stage: Path, out: Path) -> None:
    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # same inputs, same layer digest
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(stage.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(stage)), recursive=False, filter=as_root)


def _write_archive(name: str, layers: list[Path], out: Path) -> None:
    """An OCI image layout tar, plus docker-archive's manifest.json for older importers."""
    diff_ids = [f"sha256:{_sha256_file(layer)}" for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONUNBUFFERED=1",
                "PYTHONDONTWRITEBYTECODE=1",
                "LANG=C.UTF-8",
            ],
            "Entrypoint": [],
            "Cmd": ["yuxi-k8s", "serve", "--host", "0.0.0.0", "--port", "5050"],
            "WorkingDir": "/",
            "User": "10001:10001",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
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
                "digest": diff_id,
                "size": layer.stat().st_size,
            }
            for diff_id, layer in zip(diff_ids, layers, strict=True)
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest}",
            "RepoTags": [name],
            "Layers": [f"blobs/sha256/{d.split(':')[1]}" for d in diff_ids],
        }
    ]
    tmp = out.with_suffix(".tmp")
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
        for diff_id, layer in zip(diff_ids, layers, strict=True):
            tar.add(layer, arcname=f"blobs/sha256/{diff_id.split(':')[1]}")
    tmp.rename(out)


def build_runtime_image() -> BuiltImage:
    """Build (or reuse) the runtime image archive; the tag is the hash of every input."""
    rootfs = build_rootfs()
    rootfs_layer = _rootfs_layer(rootfs)
    with tempfile.TemporaryDirectory(prefix="yuxi-image-") as tmpdir:
        work = Path(tmpdir)
        wheels = _wheelhouse(work)
        tag = _app_inputs_digest(wheels)
        name = f"{IMAGE_REPOSITORY}:{tag}"
        out_dir = CACHE / "images"
        archive = out_dir / f"runtime-{tag}.oci.tar"
        if archive.exists():
            return BuiltImage(name=name, archive=archive)
        out_dir.mkdir(parents=True, exist_ok=True)
        _log(f"building {name}")
        stage = work / "stage"
        _app_tree(rootfs, wheels, stage)
        app_layer = work / "app.tar"
        _tar_tree(stage, app_layer)
        _write_archive(name, [rootfs_layer, app_layer], archive)
        for stale in out_dir.glob("runtime-*.oci.tar"):
            if stale != archive:
                stale.unlink()
    return BuiltImage(name=name, archive=archive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print {name, archive} as JSON")
    args = parser.parse_args(argv)
    image = build_runtime_image()
    if args.json:
        print(json.dumps({"name": image.name, "archive": str(image.archive)}))
    else:
        print(f"{image.name} {image.archive}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["BuiltImage", "build_rootfs", "build_runtime_image"]
