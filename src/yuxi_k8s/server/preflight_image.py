"""The runtime image of the reference stack, built here without a registry or a container engine.

One Debian bookworm image carries everything the e2e stack runs: the reference
API server and the ``yuxi-k8s`` CLI (api, migrate Job, preflight), nginx (web),
PostgreSQL and Redis (the dev overlay's in-cluster dependencies), and Python
for the test's client pods. Two layers:

1. the root filesystem from ``debootstrap`` (slow, cached by suite + package list);
2. the application: this package and its pinned dependencies (installed with the
   host's pip, cp311 wheels), small entrypoints and an nginx main config that
   works as a non-root user (cached by the wheel and file hashes).

The layers and the archive come from the cluster helper's generic builder
(:mod:`yuxi_k8s.cluster.oci`): an OCI image-layout tar that
``ctr -n k8s.io images import`` and ``kind load image-archive`` both accept.

Run ``python -m yuxi_k8s.server.preflight_image`` to build it and print the archive path
and image name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from yuxi_k8s.cluster import oci
from yuxi_k8s.paths import REPO_ROOT

SUITE = "bookworm"
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
IMAGE_FILES = Path(__file__).resolve().parent / "imagefiles"
APP_LIB = "/opt/yuxi-k8s/lib"


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def build_rootfs() -> Path:
    """The Debian root filesystem (debootstrap, cached by suite + package list by the cluster helper)."""
    return oci.debootstrap_rootfs(SUITE, PACKAGES)


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
    for direct_url in lib.glob("*.dist-info/direct_url.json"):  # names the temporary wheel path
        direct_url.unlink()
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
    # `uvicorn server.main:app` in /app: the API command of the manifests, unchanged.
    shutil.copytree(IMAGE_FILES / "app", stage / "app", ignore=shutil.ignore_patterns("__pycache__"))
    html = stage / "usr/share/nginx/html"
    html.mkdir(parents=True)
    shutil.copy(IMAGE_FILES / "index.html", html / "index.html")
    passwd, group = oci.passwd_with_extra_users(rootfs)
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)


def _app_inputs_digest(wheels: list[Path], base_digest: str) -> str:
    digest = hashlib.sha256()
    digest.update(base_digest.encode())
    digest.update((REPO_ROOT / "constraints.txt").read_bytes())
    digest.update(oci.wheel_content_digest(wheels).encode())  # by content, not the zips' timestamps
    for path in sorted(p for p in IMAGE_FILES.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(IMAGE_FILES)).encode())
        digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def build_runtime_image() -> oci.BuiltImage:
    """Build (or reuse) the runtime image archive; cached by the hash of every input."""
    rootfs = build_rootfs()
    base_layer = oci.rootfs_layer(rootfs)
    with tempfile.TemporaryDirectory(prefix="yuxi-image-") as tmpdir:
        work = Path(tmpdir)
        wheels = oci.kit_wheels(work)
        key = _app_inputs_digest(wheels, base_layer.digest)
        record = oci.IMAGES_DIR / f"runtime-{key}.json"
        if record.exists():
            cached = json.loads(record.read_text())
            if Path(cached["archive"]).exists():
                return oci.BuiltImage(cached["name"], Path(cached["archive"]), cached.get("digest"))
        _log(f"building the runtime image (inputs {key})")
        stage = work / "stage"
        _app_tree(rootfs, wheels, stage)
        built = oci.build_image(
            IMAGE_REPOSITORY,
            [base_layer, oci.directory_layer(stage)],
            tag=key,
            cmd=["yuxi-k8s", "serve", "--host", "0.0.0.0", "--port", "5050"],
            env=["PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8"],
            user="10001:10001",
        )
    # Keep one runtime archive (they are ~600 MB): drop those of older inputs.
    for old in oci.IMAGES_DIR.glob("runtime-*.json"):
        if old != record:
            stale = Path(json.loads(old.read_text()).get("archive", ""))
            if stale != built.archive and stale.name.startswith(IMAGE_REPOSITORY.replace("/", "_")):
                stale.unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    record.write_text(json.dumps({"name": built.name, "archive": str(built.archive), "digest": built.digest}))
    return built


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


__all__ = ["build_rootfs", "build_runtime_image"]
