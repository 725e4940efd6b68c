"""kind's node image, built here from the pinned Kubernetes: ``kind build node-image --type file``.

kind's ``--type file`` takes a Kubernetes server tarball (``kubernetes/version``,
``kubernetes/server/bin/{kubeadm,kubelet,kubectl}`` and the image archives
``kube-{apiserver,controller-manager,scheduler,proxy}.tar``). The release build makes that
tarball; here :func:`server_tarball` makes it from the binaries ``scripts/tools.sh kubernetes``
builds (v1.37.2), with the four images built by :mod:`yuxi_k8s.cluster.oci`:

- ``localhost/yuxi-k8s/kube-{apiserver,controller-manager,scheduler}:v1.37.2``: FROM scratch, the
  static binary at ``/usr/local/bin``;
- ``localhost/yuxi-k8s/kube-proxy:v1.37.2``: on a Debian root filesystem with iptables and
  conntrack (kube-proxy runs in iptables mode).

They are named under ``localhost/yuxi-k8s``, not ``registry.k8s.io``: they are not the release's
images, and the cluster config points kubeadm at that repository (``imageRepository``).
``kind build node-image`` then runs on the local base image (:mod:`.baseimage`), whose
containerd already holds pause, etcd and CoreDNS, and whose ``ctr content fetch`` needs no network.
The node image is ``localhost/yuxi-k8s/kind-node:v1.37.2-<hash of every input>``; it stays in the
engine's data root (in the kit's cache), so a warm run finds it and builds nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.kind import REPOSITORY, baseimage
from yuxi_k8s.cluster.kind.config import OfflineImages
from yuxi_k8s.cluster.kind.engine import DockerEngine
from yuxi_k8s.pinned_tools import pinned_version, require_tool

BINARIES = ("kubeadm", "kubelet", "kubectl")
IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
# The root filesystem of kube-proxy's image and of the storage provisioner's (one debootstrap for both).
TOOLS_SUITE = "bookworm"
# python3-cffi-backend by name: debootstrap does not resolve the virtual package python3-cryptography needs.
TOOLS_PACKAGES = ("iptables", "conntrack", "python3-kubernetes", "python3-cffi-backend")


class NodeImageError(RuntimeError):
    """A step of the node image build failed; the message names it."""


@dataclass(frozen=True)
class NodeImage:
    name: str
    offline: OfflineImages


def _log(message: str) -> None:
    print(f"==> kind node image: {message}", flush=True)


def tools_rootfs_layer() -> oci.Layer:
    """Debian with iptables, conntrack and python3-kubernetes, as one (cached) layer."""
    return oci.rootfs_layer(oci.debootstrap_rootfs(TOOLS_SUITE, TOOLS_PACKAGES))


def kube_image(name: str, version: str) -> oci.BuiltImage:
    """One of the four control-plane/proxy images, the binary at /usr/local/bin/<name>."""
    with tempfile.TemporaryDirectory(prefix=f"yuxi-{name}-") as tmp:
        root = Path(tmp)
        (root / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(require_tool(name, "kubernetes"), root / "usr/local/bin" / name)
        layers = [oci.directory_layer(root)]
    if name == "kube-proxy":
        layers.insert(0, tools_rootfs_layer())
    return oci.build_image(f"{REPOSITORY}/{name}", layers, tag=version)


def server_tarball(version: str, out: Path) -> Path:
    """kubernetes-server-linux-amd64.tar.gz in the layout kind's --type file reads."""
    with tempfile.TemporaryDirectory(prefix="yuxi-k8s-server-") as tmp:
        root = Path(tmp) / "kubernetes"
        bindir = root / "server" / "bin"
        bindir.mkdir(parents=True)
        (root / "version").write_text(version + "\n")
        for name in BINARIES:
            shutil.copy2(require_tool(name, "kubernetes"), bindir / name)
        for name in IMAGES:
            shutil.copy2(kube_image(name, version).archive, bindir / f"{name}.tar")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp")
        with gzip.open(tmp_out, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            tar.add(root, arcname="kubernetes")
        tmp_out.replace(out)
    return out


def _inputs_key(version: str, base: oci.BuiltImage) -> str:
    digest = hashlib.sha256()
    for part in (version, base.name, pinned_version("KIND_VERSION"), *TOOLS_PACKAGES):
        digest.update(part.encode() + b"\0")
    for name in (*BINARIES, *IMAGES):
        digest.update(oci.sha256_file(require_tool(name, "kubernetes")).encode())
    return digest.hexdigest()[:12]


# The pinned builds a local node image is made of (scripts/tools.sh names); built only when needed,
# so a run on kind's official image builds none of them.
TOOLS = ("kubernetes", "etcd", "containerd", "coredns")


def build_tools() -> None:
    """``scripts/tools.sh`` for :data:`TOOLS` (a no-op once cached)."""
    proc = subprocess.run([str(paths.repo_root() / "scripts" / "tools.sh"), *TOOLS], check=False)
    if proc.returncode != 0:
        raise NodeImageError(f"building {' '.join(TOOLS)} failed (scripts/tools.sh)")


def ensure(engine: DockerEngine, kind: str) -> NodeImage:
    """The local node image in *engine*: found, or built (tools, then base image, then node image)."""
    build_tools()
    version = pinned_version("KUBERNETES_VERSION")
    if not version:
        raise NodeImageError("KUBERNETES_VERSION is missing from tools/versions.env")
    t0 = time.monotonic()
    preload = baseimage.preloaded_images()
    base = baseimage.build(preload)
    offline = OfflineImages(
        etcd_tag=preload["etcd"].name.rsplit(":", 1)[1],
        coredns_tag=preload["coredns"].name.rsplit(":", 1)[1],
        repository=REPOSITORY,
    )
    name = f"{REPOSITORY}/kind-node:{version}-{_inputs_key(version, base)}"
    if engine.docker("image", "inspect", name, check=False).returncode == 0:
        return NodeImage(name, offline)
    if engine.docker("image", "inspect", base.name, check=False).returncode != 0:
        _log(f"docker load {base.archive.name}")
        engine.docker("load", "-i", str(base.archive), timeout=900)
    tarball = paths.cache_dir("kind", f"kubernetes-server-{version}.tar.gz")
    server_tarball(version, tarball)
    _log(f"server tarball ready ({time.monotonic() - t0:.0f} s); kind build node-image")
    proc = subprocess.run(
        [kind, "build", "node-image", "--type", "file", str(tarball),
         "--base-image", base.name, "--image", name],
        capture_output=True, text=True, env=engine.env(), timeout=1800, check=False,
    )  # fmt: skip
    log = paths.cache_dir("kind", "build-node-image.log")
    log.write_text(proc.stdout + proc.stderr)
    tarball.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise NodeImageError(f"kind build node-image failed (log {log}): {proc.stderr.strip()[-800:]}")
    _log(f"{name} built in {time.monotonic() - t0:.0f} s")
    return NodeImage(name, offline)


def describe(image: NodeImage) -> str:
    return json.dumps({"image": image.name, "offline": image.offline.__dict__})
