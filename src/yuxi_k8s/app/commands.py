"""`yuxi-k8s images build|list`: the application's images from its pinned source, and what deploys pull."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from yuxi_k8s.cli import UserError

OVERLAYS = ("overlays/dev", "overlays/staging", "overlays/prod")


def _load(archive: Path, target: str) -> None:
    """Put *archive* where *target* (containerd, kind:NAME, docker, podman) runs containers."""
    from yuxi_k8s.cluster import oci

    if target == "containerd":
        oci.load_into_containerd(archive)
    elif target.startswith("kind:") and target[5:]:
        from yuxi_k8s.cluster.kind.engine import running_env

        oci.load_into_kind(archive, target[5:], env=running_env())
    elif target in ("docker", "podman"):
        if shutil.which(target) is None:
            raise oci.ImageError(f"--load {target}: no {target} on PATH")
        proc = subprocess.run(
            [target, "load", "-i", str(archive)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise oci.ImageError(f"{target} load {archive.name}: {detail[0]}")
    else:
        raise oci.ImageError(f"--load {target!r}: use containerd, kind:NAME, docker or podman")


def _build(args: argparse.Namespace) -> int:
    from yuxi_k8s.app import images, registry, source
    from yuxi_k8s.cluster.oci import ImageError

    if platform.system() != "Linux" or os.geteuid() != 0:
        raise UserError(
            "building the images needs root on Linux (debootstrap, mount, chroot): run it with sudo"
        )
    try:
        names = images.select(args.only.split(",") if args.only else None)
        prefix = images.check_registry(args.registry)
        src = source.resolve(args.source)
        built = images.build_all(src, names, registry=prefix)
        pushed: dict[str, str] = {}
        for name, image in built.items():
            if args.push:
                pushed[name] = registry.push(image.archive, image.name).digest
            for target in args.load or ():
                _load(image.archive, target)
    except (source.SourceError, ImageError, registry.RegistryError) as exc:
        raise UserError(str(exc)) from None
    if args.json:
        rows = [
            {
                "image": n,
                "reference": b.name,
                "digest": b.digest,
                "archive": str(b.archive),
                "pushed": n in pushed,
            }
            for n, b in built.items()
        ]
        print(json.dumps({"source": src.origin, "version": src.version, "images": rows}, indent=2))
        return 0
    for name, image in built.items():
        print(f"{name:20} {image.name}@{image.digest}")
        print(f"{'':20} {image.archive}{'  (pushed)' if name in pushed else ''}")
    print("\n# pin them in an overlay (run in its folder):")
    for line in images.kustomize_pins(built, prefix):
        print(line)
    print("\n# or put this in its kustomization.yaml (replacing the entries of the same names):")
    print(images.kustomization_images(built, prefix), end="")
    return 0


def images_in(objects: list[dict]) -> set[str]:
    """Every image the objects make the cluster pull: containers of every pod template, the images the
    application starts (SANDBOX_IMAGE) and CloudNativePG clusters' imageName (yuxi_k8s.validate.pulled,
    the list the digest rules YK-IMG-004/005 check)."""
    from yuxi_k8s.validate.model import Context, Resource
    from yuxi_k8s.validate.pulled import pulled_images

    return {p.image for p in pulled_images(Context("", "", [Resource(o) for o in objects]))}


def _list(args: argparse.Namespace) -> int:
    from yuxi_k8s.paths import repo_root
    from yuxi_k8s.validate.render import render_all

    root = repo_root()
    paths = args.overlays or [str(root / o) for o in OVERLAYS]
    failed = False
    result: dict[str, list[str]] = {}
    for rendered in render_all(paths):
        if rendered.error:
            print(f"{rendered.path}: {rendered.error}", flush=True)
            failed = True
            continue
        result[rendered.path] = sorted(images_in(rendered.objects))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for path, names in result.items():
            label = os.path.relpath(path, root) if path.startswith(str(root)) else path
            print(f"# {label}")
            for name in names:
                print(name)
    if failed:
        raise UserError("some overlays did not render (above)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from yuxi_k8s.app.images import DEFAULT_REGISTRY, IMAGES

    parser = subparsers.add_parser("images", help="build the application's images; list what deploys pull")
    sub = parser.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="build the images from the pinned source (root, Linux)",
        description="Build the application's images (and the kit's PostgreSQL, Redis, MinIO, Neo4j) from the "
        "pinned source without a registry or container engine, print each reference with its manifest "
        "digest and the `kustomize edit set image` lines that pin them. docs/images.md.",
    )
    build.add_argument(
        "--source",
        help="tarball, checkout folder or git URL of the application's source "
        "[env YUXI_K8S_APP_SOURCE; default: git clone of the pinned tag]",
    )
    build.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {','.join(IMAGES)}")
    build.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        metavar="HOST/PREFIX",
        help=f"where the image names point [{DEFAULT_REGISTRY}]",
    )
    build.add_argument(
        "--push", action="store_true", help="push each image to --registry (OCI distribution API)"
    )
    build.add_argument(
        "--load",
        action="append",
        metavar="TARGET",
        help="load into containerd (the local cluster), kind:NAME, docker or podman (repeatable)",
    )
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(handler=_build)
    listing = sub.add_parser("list", help="every image a deploy of each overlay pulls (for mirroring)")
    listing.add_argument("overlays", nargs="*", help="kustomizations to render [overlays/dev, staging, prod]")
    listing.add_argument("--json", action="store_true", help="print {overlay: [images]} as JSON")
    listing.set_defaults(handler=_list)
