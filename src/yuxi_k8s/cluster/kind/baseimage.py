"""kind's base image, built here from Debian packages and kind's own files (no registry, no Dockerfile).

What kind's ``images/base/Dockerfile`` does, done with :mod:`yuxi_k8s.cluster.oci`:

1. a Debian root filesystem from ``debootstrap`` (:data:`PACKAGES`: kind's list, without the
   NFS/iSCSI clients only Kubernetes' own storage e2e tests use, plus Debian's ``runc`` and CNI
   plugins). **bookworm**, not kind's trixie: trixie's systemd 257 refuses cgroup v1 hosts;
   bookworm's systemd 252 boots on both;
2. kind's files from the pinned kind module (``images/base/files``: entrypoint, systemd units,
   kubelet drop-ins, containerd config) and the Dockerfile's systemd clean-up, done on a copy of
   the tree;
3. containerd, its runc shim and ``ctr`` from the pinned build (``scripts/tools.sh containerd``),
   runc and the CNI plugins (ptp, host-local, loopback, portmap) from Debian;
4. the images a node needs before any registry could answer, **preloaded** into the image's
   containerd (``k8s.io`` namespace, pinned): the pause image (the sandbox image of
   containerd's config), etcd and CoreDNS from the pinned builds;
5. ``ctr content fetch`` made a no-op: ``kind build node-image`` fetches every image kubeadm
   and kind list *from the registry* inside the build container, always; here a ``ctr`` wrapper
   (first on PATH) answers that one subcommand without a network, saying whether the image is
   preloaded, and passes everything else to the real ``ctr``;
6. a static CNI config (``ptp`` on the node's pod range) since kindnetd cannot be had offline.

The result is one layer (like kind's squashed image) in an OCI archive ``docker load`` takes.
Cached by a hash of every input; ``build()`` returns at once when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from yuxi_k8s import paths, procfs
from yuxi_k8s.cluster import oci, system_images
from yuxi_k8s.cluster.kind import REPOSITORY, config
from yuxi_k8s.pinned_tools import pinned_version, require_tool

SUITE = "bookworm"
PACKAGES = (
    # services (systemd as PID 1)
    "systemd",
    # Kubernetes components
    "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount", "kmod",
    # the container runtime
    "libseccomp2", "pigz", "fuse-overlayfs", "runc", "containernetworking-plugins",
    # what kind's own scripts use
    "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
)  # fmt: skip
CNI_PLUGINS = ("ptp", "host-local", "loopback", "portmap")
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")

# `ctr content fetch` (kind's image pre-pull during `kind build node-image`) without a registry.
CTR_WRAPPER = """#!/bin/sh
# yuxi-k8s offline node image (yuxi_k8s.cluster.kind.baseimage): no registry is reachable where this
# image is built, so `ctr content fetch` -- kind's pre-pull of the images kubeadm and kind list -- is
# answered here without a network. The images the node runs were preloaded into this image's
# containerd; an image that is not is reported, and the cluster config names the preloaded ones.
# Every other ctr command runs the real ctr.
real=/usr/local/bin/ctr
fetch=0; prev=
for arg in "$@"; do
  [ "$prev" = content ] && [ "$arg" = fetch ] && fetch=1
  prev=$arg; image=$arg
done
if [ "$fetch" = 1 ]; then
  if "$real" --namespace=k8s.io images ls -q "name==$image" 2>/dev/null | grep -q .; then
    echo "offline node image: $image is preloaded, nothing to fetch" >&2
  else
    echo "offline node image: $image is not preloaded and no registry is reachable; not fetched" >&2
  fi
  exit 0
fi
exec "$real" "$@"
"""


def cni_config() -> dict[str, object]:
    """The node's static CNI config: ptp + host-local on the (single) node's pod range."""
    return {
        "cniVersion": "1.0.0",
        "name": "yuxi-kind",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.NODE_POD_RANGE}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


class BaseImageError(RuntimeError):
    """A step of the base image build failed; the message names it."""


def kind_source() -> Path:
    """The pinned kind module's source (its images/base/files), from the Go module cache."""
    version = pinned_version("KIND_VERSION")
    if not version:
        raise BaseImageError("KIND_VERSION is missing from tools/versions.env")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/kind@{version}"],
        capture_output=True, text=True, check=False, cwd=tempfile.gettempdir(),
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise BaseImageError(f"go mod download sigs.k8s.io/kind@{version}: {proc.stderr.strip()[-300:]}")
    return Path(json.loads(proc.stdout)["Dir"])


def preloaded_images() -> dict[str, oci.BuiltImage]:
    """The images the base image's containerd carries: sandbox, etcd, CoreDNS."""
    return {
        "pause": system_images.pause_image(),
        "etcd": etcd_image(),
        "coredns": system_images.coredns_image(),
    }


def etcd_image() -> oci.BuiltImage:
    """etcd from the pinned build at /usr/local/bin/etcd (kubeadm's static pod runs `etcd`)."""
    version = pinned_version("ETCD_VERSION") or "unknown"
    with tempfile.TemporaryDirectory(prefix="yuxi-etcd-") as tmp:
        root = Path(tmp)
        (root / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(require_tool("etcd"), root / "usr/local/bin/etcd")
        layer = oci.directory_layer(root)
    return oci.build_image(f"{REPOSITORY}/etcd", [layer], tag=f"{version}-{layer.digest[:12]}")


def _digest(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _files_digest(root: Path) -> str:
    return _digest(
        *(f"{p.relative_to(root)}:{p.read_bytes().hex()}" for p in sorted(root.rglob("*")) if p.is_file())
    )


def _log(message: str) -> None:
    print(f"==> kind base image: {message}", flush=True)


def build(preload: dict[str, oci.BuiltImage] | None = None) -> oci.BuiltImage:
    """The base image archive (cached); builds what is missing. *preload*: the images its
    containerd carries, when the caller already has them (:func:`preloaded_images`)."""
    kind_files = kind_source() / "images" / "base" / "files"
    preload = preload if preload is not None else preloaded_images()
    containerd = {n: require_tool(n, "containerd") for n in CONTAINERD_BINARIES}
    key = _digest(
        SUITE, *PACKAGES, _files_digest(kind_files), CTR_WRAPPER, json.dumps(cni_config()),
        *(f"{n}={p}" for n, p in sorted(containerd.items())), *(i.name for i in preload.values()),
        "layout-1",  # bump when the steps below change
    )[:16]  # fmt: skip
    index = paths.cache_dir("kind", f"base-{key}.json")
    if index.exists():
        record = json.loads(index.read_text())
        if Path(record["archive"]).exists():
            return oci.BuiltImage(record["name"], Path(record["archive"]))
    t0 = time.monotonic()
    rootfs = oci.debootstrap_rootfs(SUITE, PACKAGES)
    _log(f"debootstrap {SUITE} ready ({time.monotonic() - t0:.0f} s)")
    work = paths.cache_dir("kind", f"base-{key}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tree = work / "rootfs"
    subprocess.run(["cp", "-a", str(rootfs), str(tree)], check=True)
    _install_kind_files(tree, kind_files)
    _install_runtime(tree, containerd)
    _preload(tree, containerd, preload)
    _log(f"tree ready ({time.monotonic() - t0:.0f} s)")
    layer = oci.rootfs_layer(tree)
    built = oci.build_image(
        f"{REPOSITORY}/kind-base",
        [layer],
        tag=key,
        entrypoint=["/usr/local/bin/entrypoint", "/sbin/init"],
        env=["container=docker"],
    )
    index.write_text(json.dumps({"name": built.name, "archive": str(built.archive)}))
    shutil.rmtree(work, ignore_errors=True)  # the archive holds it all now
    _log(f"{built.name} built in {time.monotonic() - t0:.0f} s")
    return built


def _install_kind_files(tree: Path, files: Path) -> None:
    """The Dockerfile's COPY lines and its systemd clean-up."""
    for src in sorted(files.rglob("*")):
        if src.is_dir():
            continue
        rel = src.relative_to(files)
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        executable = rel.parts[0] == "usr" or rel.parts[:2] == ("kind", "bin")
        dest.chmod(0o755 if executable else 0o644)
    for folder in (tree / "kind", tree / "kind" / "bin"):
        folder.chmod(0o755)
    systemd = tree / "usr/lib/systemd/system"
    (systemd / "sysinit.target.wants" / "systemd-tmpfiles-setup.service").unlink(missing_ok=True)
    for pattern in (
        "usr/lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "usr/lib/systemd/system/local-fs.target.wants/*",
        "usr/lib/systemd/system/sockets.target.wants/*udev*",
        "usr/lib/systemd/system/sockets.target.wants/*initctl*",
        "usr/lib/systemd/system/basic.target.wants/*",
    ):
        for entry in tree.glob(pattern):
            entry.unlink()
    journald = tree / "etc/systemd/journald.conf"
    journald.write_text(journald.read_text() + "ReadKMsg=no\n")
    init = tree / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/usr/lib/systemd/systemd")
    # systemctl enable kubelet containerd undo-mount-hacks; systemctl mask systemd-binfmt
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("kubelet.service", "containerd.service", "undo-mount-hacks.service"):
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    (tree / "etc/systemd/system/systemd-binfmt.service").symlink_to("/dev/null")
    (tree / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)


def _install_runtime(tree: Path, containerd: dict[str, Path]) -> None:
    bindir = tree / "usr/local/bin"
    for name, src in containerd.items():
        shutil.copy2(src, bindir / name)
    wrapper = tree / "usr/local/sbin/ctr"  # /usr/local/sbin comes first on the image's PATH
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(CTR_WRAPPER)
    wrapper.chmod(0o755)
    cni = tree / "opt/cni/bin"
    cni.mkdir(parents=True, exist_ok=True)
    for plugin in CNI_PLUGINS:
        shutil.copy2(tree / "usr/lib/cni" / plugin, cni / plugin)
    netd = tree / "etc/cni/net.d"
    netd.mkdir(parents=True, exist_ok=True)
    (netd / "10-yuxi-kind.conflist").write_text(json.dumps(cni_config(), indent=2) + "\n")
    # kind's Dockerfile: `ctr oci spec` + the product-files hook, without rlimits
    spec = json.loads(subprocess.run([str(containerd["ctr"]), "oci", "spec"], capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/kind/bin/mount-product-files.sh"}
    )
    spec.get("process", {}).pop("rlimits", None)
    (tree / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2) + "\n")


def _preload(tree: Path, containerd: dict[str, Path], preload: dict[str, oci.BuiltImage]) -> None:
    """Import the images into the tree's containerd store with a throwaway containerd on the host."""
    pause = preload["pause"].name
    cfg_path = tree / "etc/containerd/config.toml"
    text = cfg_path.read_text()
    if 'sandbox_image = "registry.k8s.io/pause:3.10"' not in text:
        raise BaseImageError(
            "kind's containerd config no longer names registry.k8s.io/pause:3.10; update the base build"
        )
    cfg_path.write_text(
        text.replace('sandbox_image = "registry.k8s.io/pause:3.10"', f'sandbox_image = "{pause}"')
    )
    with tempfile.TemporaryDirectory(prefix="yuxi-kind-preload-") as tmp:
        sock = Path(tmp) / "containerd.sock"
        (Path(tmp) / "config.toml").write_text(
            "version = 3\n"
            f'root = "{tree / "var/lib/containerd"}"\n'
            f'state = "{Path(tmp) / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",'
            ' "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]\n'
            f'[grpc]\n  address = "{sock}"\n'
            f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        )
        log = (Path(tmp) / "containerd.log").open("wb")
        proc = subprocess.Popen(
            [str(containerd["containerd"]), "--config", str(Path(tmp) / "config.toml")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BaseImageError(
                        "the preload containerd did not start: "
                        + (Path(tmp) / "containerd.log").read_text()[-400:]
                    )
                time.sleep(0.2)
            for image in preload.values():
                cmd = [
                    str(containerd["ctr"]), "--address", str(sock), "--namespace", "k8s.io",
                    "images", "import", "--no-unpack", "--label", "io.cri-containerd.pinned=pinned",
                    str(image.archive),
                ]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise BaseImageError(f"preloading {image.name}: {out.stderr.strip()[-300:]}")
        finally:
            procfs.stop_child(proc)
            log.close()
