"""The application's images, built from its pinned source without a registry or a container engine.

API (what ``yuxi-k8s images build`` and the test fixtures call)::

    from yuxi_k8s.app import images, source

    src = source.resolve()                      # --source / $YUXI_K8S_APP_SOURCE / git clone
    built = images.build_all(src, only=None)    # {"api": BuiltImage, "web": ..., ...}
    built["api"].name      # localhost/yuxi-k8s/yuxi-know-api:0.6.1
    built["api"].archive   # OCI archive (ctr import, kind load, docker/podman load)
    built["api"].digest    # sha256:... of the manifest, for name@digest pins
    tree = images.api_tree(src)                 # the api image's whole filesystem, a folder to chroot into
    images.image_tree(src, "web")               # the same for any image

Images (``IMAGES``): ``api`` (also the worker and the kit's migrate Job), ``web``,
``sandbox-provisioner`` from the application's source; ``postgres``, ``redis``,
``minio``, ``neo4j`` and ``milvus`` (milvus-lite's server, imagefiles/yuxi-milvus) for the
kit's own end-to-end tier where nothing can be pulled. The first three are tagged with the
application version, the others with their own.

How: one ``debootstrap --variant=minbase trixie`` root filesystem (the ``core``
stage) under everything, then one overlayfs stage per step (:mod:`yuxi_k8s.app.rootfs`),
each an image layer and each cached by its inputs::

    core ─ py ─ api-system ─ api-app ─ api-kit      api (5 layers)
          └─ provisioner                            sandbox-provisioner
          └─ milvus                                 milvus
    core ─ web-system ─ web                         web
    core ─ deps-system ─ deps                       postgres and redis (same layers, two configs)
    core ─ neo4j-system ─ neo4j                     neo4j (a JRE, Maven's jars, the kit's launcher)
    minio (from scratch)                            minio

So a change to this kit rebuilds only ``api-kit`` (a few MB), a change to the
application's backend only ``api-app`` and ``api-kit``. Needs root (debootstrap, mount,
chroot) and network to Debian, PyPI, npm, Maven Central and the Go module proxy; downloads are kept
in ``<cache>/downloads`` so a rebuild fetches nothing twice. Details and what the images
leave out (torch): docs/images.md.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yuxi_k8s import apt, paths
from yuxi_k8s.app import rootfs, web_assets
from yuxi_k8s.app.source import Source, tree_key
from yuxi_k8s.cache import build_once, is_built
from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.oci import DEFAULT_PATH, BuiltImage, ImageError
from yuxi_k8s.pinned_tools import pinned_tool, pinned_versions, require_tool

SUITE = "trixie"  # python3 is 3.13 there; the app's uv.lock allows >=3.12,<3.14
PYTHON = "/usr/bin/python3.13"
DEFAULT_REGISTRY = "localhost/yuxi-k8s"
IMAGES = (
    "api", "web", "sandbox-provisioner", "postgres", "redis", "minio", "neo4j", "milvus", "sandbox-standin",
)  # fmt: skip
REPOSITORIES = {
    "api": "yuxi-know-api",
    "web": "yuxi-know-web",
    "sandbox-provisioner": "yuxi-know-sandbox-provisioner",
    "postgres": "yuxi-k8s-postgres",
    "redis": "yuxi-k8s-redis",
    "minio": "yuxi-k8s-minio",
    "neo4j": "yuxi-k8s-neo4j",
    "milvus": "yuxi-k8s-milvus",
    "sandbox-standin": "yuxi-k8s-sandbox-standin",
}
# The image names the manifests use, which `kustomize edit set image` replaces (the
# migrate Job runs `yuxi-k8s` from the api image: the kit is installed in it).
MANIFEST_NAMES = {
    "api": ("yuxi-know-api",),
    "web": ("yuxi-know-web",),
    "sandbox-provisioner": ("yuxi-know-sandbox-provisioner",),
    "postgres": ("docker.io/library/postgres",),
    "redis": ("docker.io/library/redis",),
    "minio": ("docker.io/minio/minio",),
    "neo4j": ("docker.io/library/neo4j",),
    "milvus": ("docker.io/milvusdb/milvus",),
    # No manifest names it: the sandbox image is the site setting SANDBOX_IMAGE, which the
    # e2e tier sets to this stand-in (upstream's sandbox image cannot be had here).
    "sandbox-standin": (),
}

CORE_PACKAGES = ("ca-certificates", "tzdata")
PY_PACKAGES = ("python3", "python3-venv")
# upstream's docker/api.Dockerfile installs these (cv2 needs libsm6/libxext6; ffmpeg for
# audio/video parsing); nodejs is Debian's Node 20 (upstream copies node:20 for npx).
API_PACKAGES = ("curl", "ffmpeg", "git", "libpq5", "libsm6", "libxext6", "nodejs")
WEB_PACKAGES = ("nginx",)
DEPS_PACKAGES = ("postgresql", "redis-server")
NEO4J_PACKAGES = ("openjdk-21-jre-headless",)
# torch and torchvision: the lock takes them from download.pytorch.org; PyPI has only the
# CUDA builds (+6 GB). Without them docling's PDF/image models do not run (docs/images.md).
LEFT_OUT_PACKAGES = ("torch", "torchvision")

PYPI_SIMPLE = "https://pypi.org/simple"
NPM_REGISTRY = "https://registry.npmjs.org/"
# Mirrors the application's lockfiles may name, and where the same files are on the
# public registries (same paths below the prefix, same hashes).
PYPI_MIRRORS = {
    "https://pypi.tuna.tsinghua.edu.cn/simple": PYPI_SIMPLE,
    "https://pypi.tuna.tsinghua.edu.cn/packages/": "https://files.pythonhosted.org/packages/",
    "https://mirrors.aliyun.com/pypi/simple": PYPI_SIMPLE,
    "https://mirrors.aliyun.com/pypi/packages/": "https://files.pythonhosted.org/packages/",
    "https://mirrors.ustc.edu.cn/pypi/simple": PYPI_SIMPLE,
    "https://mirrors.ustc.edu.cn/pypi/packages/": "https://files.pythonhosted.org/packages/",
}
NPM_MIRRORS = {
    "https://registry.npmmirror.com/": NPM_REGISTRY,
    "https://registry.npm.taobao.org/": NPM_REGISTRY,
}

# Vite's build-time variables the web build gets (and only these: the host's own VITE_* are dropped).
# VITE_USE_RUNS_API=true: the chat page sends through the runs API (POST /api/chat/runs, run by the
# worker, its events read back from Redis, resumed from the last seq on any replica); without it the
# api process streams the answer itself and a rollout or scale-in cuts it (per-process state, row 17).
WEB_BUILD_ENV = {"VITE_USE_RUNS_API": "true"}
NGINX_CONFIG = "base/config/nginx"  # nginx.conf, and the files it includes from /etc/nginx/yuxi/
IMAGE_FILES = Path(__file__).resolve().parent / "imagefiles"
SERVER_IMAGE_FILES = Path(__file__).resolve().parents[1] / "server" / "imagefiles"
# The kit's entry point of the provisioner, beside upstream's app.py (imagefiles/provisioner).
PROVISIONER_ENTRY = IMAGE_FILES / "provisioner" / "yuxi_k8s_provisioner.py"
PROVISIONER_COMMAND = ("uvicorn", "yuxi_k8s_provisioner:app", "--host", "0.0.0.0", "--port", "8002")
# The e2e tier's sandbox: the kit's stand-in server, alone, on Debian's python3.
SANDBOX_STANDIN = Path(__file__).resolve().parents[1] / "probes" / "sandbox_standin.py"
SANDBOX_STANDIN_DIR = "/opt/yuxi-sandbox"
SANDBOX_PORT = 8080
PGDATA = "/var/lib/postgresql/data/pgdata"
NEO4J_FILES = IMAGE_FILES / "neo4j"  # pom.xml (the jars, from Maven Central) and Launcher.java
NEO4J_UID = 7474  # the official image's, which the manifests run it as
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
# The flags Neo4j's own start script gives the JVM (file descriptors for native I/O, Netty's
# buffers); the memory flags are JDK_JAVA_OPTIONS in the image's environment, so a manifest
# can change them alone (``NEO4J_JVM_MEMORY``: it fits a 2-core node beside the rest).
NEO4J_COMMAND = (
    "java", "-XX:-UsePerfData", "-XX:-OmitStackTraceInFastThrow", "--enable-native-access=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.nio.maxCachedBufferSize=1024", "-Dlog4j2.disable.jmx=true",
    "-cp", "/opt/neo4j/launcher:/opt/neo4j/plugins/*:/opt/neo4j/lib/*", "Launcher",
)  # fmt: skip
NEO4J_JVM_MEMORY = "-XX:+UseSerialGC -Xms64m -Xmx384m"
MILVUS_DATA = "/var/lib/milvus"
MILVUS_PORT = 19530
MINIMAL_PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
MINIMAL_GROUP = "root:x:0:\nnogroup:x:65534:\n"
PYTHON_ENV = ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8", "HOME=/tmp")
VENV_PATH = f"PATH=/app/.venv/bin:{DEFAULT_PATH}"
REFERENCE_PREFIX = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


# --- small pure helpers (the static tests use these) --------------------------------
def rewrite_mirrors(text: str, mirrors: dict[str, str]) -> tuple[str, int]:
    """*text* with every mirror prefix replaced by its public counterpart, and how many were."""
    count = 0
    for mirror, public in mirrors.items():
        count += text.count(mirror)
        text = text.replace(mirror, public)
    return text, count


def pypi_lock(text: str) -> tuple[str, int]:
    """A uv.lock pointed at PyPI instead of a mirror; hashes and sizes stay as they are."""
    return rewrite_mirrors(text, PYPI_MIRRORS)


def check_registry(registry: str) -> str:
    """``HOST[:PORT]/PREFIX`` (lowercase) or ImageError; returned without a trailing slash."""
    value = registry.strip().rstrip("/")
    if not value or not REFERENCE_PREFIX.match(value):
        raise ImageError(
            f"--registry {registry!r} is not HOST[:PORT]/PREFIX in lowercase (e.g. {DEFAULT_REGISTRY})"
        )
    return value


def reference(registry: str, name: str, tag: str) -> str:
    """``REGISTRY/<repository of name>:tag``."""
    return f"{check_registry(registry)}/{REPOSITORIES[name]}:{tag}"


def select(only: Iterable[str] | None) -> list[str]:
    """The images to build, in build order; unknown names are one ImageError line."""
    if only is None:
        return list(IMAGES)
    wanted = [n.strip() for n in only if n.strip()]
    unknown = [n for n in wanted if n not in IMAGES]
    if unknown:
        raise ImageError(f"unknown image {', '.join(unknown)} (known: {', '.join(IMAGES)})")
    return [n for n in IMAGES if n in wanted]


def kustomize_pins(built: dict[str, BuiltImage], registry: str) -> list[str]:
    """``kustomize edit set image`` commands that pin the manifests' names to the built digests."""
    lines = []
    for name, image in built.items():
        repo = f"{check_registry(registry)}/{REPOSITORIES[name]}"
        for manifest_name in MANIFEST_NAMES[name]:
            lines.append(f"kustomize edit set image {manifest_name}={repo}@{image.digest}")
    return lines


def kustomization_images(built: dict[str, BuiltImage], registry: str) -> str:
    """The same pins as an ``images:`` block for a kustomization.yaml (no kustomize binary needed)."""
    lines = ["images:"]
    for name, image in built.items():
        for manifest_name in MANIFEST_NAMES[name]:
            lines += [
                f"  - name: {manifest_name}",
                f"    newName: {check_registry(registry)}/{REPOSITORIES[name]}",
                f"    digest: {image.digest}",
            ]
    return "\n".join(lines) + "\n"


def deb_version(version: str) -> str:
    """The upstream part of a Debian version: ``5:8.0.2-3+deb13u3`` -> ``8.0.2``."""
    version = version.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def files_digest(root: Path, names: Sequence[str]) -> str:
    """sha256 over the named files and folders under *root* (paths, exec bits, contents)."""
    digest = hashlib.sha256()
    for name in names:
        path = root / name
        digest.update(f"{name}\0".encode())
        if path.is_dir():
            digest.update(tree_key(path).encode())
        elif path.is_file():
            digest.update(f"{path.stat().st_mode & 0o111:o}\0".encode())
            digest.update(oci.sha256_file(path).encode())
        else:
            digest.update(b"missing")
    return digest.hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def web_build_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of ``pnpm install`` and ``pnpm run build``: *base* without its ``VITE_*``
    variables, the public npm registry, and :data:`WEB_BUILD_ENV`."""
    kept = {k: v for k, v in base.items() if not k.startswith("VITE_")}
    return {**kept, "CI": "1", "npm_config_registry": NPM_REGISTRY, **WEB_BUILD_ENV}


def web_dist_key(web_tree: str, pnpm_version: str, node_major: int) -> str:
    """The web build's cache key: the source (its :func:`tree_key`), the tools and :data:`WEB_BUILD_ENV`."""
    build_env = json.dumps(WEB_BUILD_ENV, sort_keys=True)
    return _digest(web_tree, pnpm_version, f"node{node_major}", NPM_REGISTRY, build_env)[:20]


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines (pip freeze, constraints files) as {canonical name: version}."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^;\s]+)", line)
        if match:
            pins[_canonical(match.group(1))] = match.group(3)
    return pins


def provisioner_installs(uv: str, python: str, folder: str) -> list[tuple[list[str], str]]:
    """The provisioner venv's installs: the pinned set, every file checked against its hash
    (``--require-hashes``), then upstream's requirements.txt, met offline by what is installed
    (its minimum versions cannot carry hashes; ``--offline --no-cache`` lets nothing in)."""
    base = [uv, "pip", "install", "--python", python]
    pinned = [*base, "--index-url", PYPI_SIMPLE, "--require-hashes", "-r", f"{folder}/constraints.txt"]
    upstream = [*base, "--offline", "--no-cache", "-r", f"{folder}/requirements.txt"]
    upstream += ["-c", f"{folder}/constraints.txt"]
    return [(pinned, "uv pip install --require-hashes"), (upstream, "upstream's requirements.txt met")]


# --- caches and downloads ----------------------------------------------------------
def _downloads(*parts: str) -> Path:
    return paths.cache_dir("downloads", *parts)


def _images_cache(*parts: str) -> Path:
    return paths.cache_dir("app-images", *parts)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One image build per machine at a time: the apt and uv caches are shared."""
    lock_file = _images_cache(".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rootfs.say(f"waiting for another image build on this machine (lock {lock_file})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_once(folder: Path, what: str, fetch: Callable[[Path], None]) -> Path:
    """*folder*, filled by ``fetch(tmp)`` the first time (:func:`yuxi_k8s.cache.build_once`)."""

    def with_progress(tmp: Path) -> None:
        with rootfs.progress(f"fetch {what}"):
            fetch(tmp)

    return build_once(folder, with_progress)


def uv_binary() -> Path:
    """The static uv binary of tools/versions.env's UV_VERSION: ``scripts/tools.sh uv`` fetches its
    musllinux wheel from PyPI with pip ``--require-hashes`` against tools/uv/requirements.txt, in a
    cache folder keyed by those hashes, and links it as bin/uv (the same uv the kit's venv uses)."""
    script = paths.repo_root() / "scripts" / "tools.sh"
    with rootfs.progress("fetch uv (hashes checked)"):
        rootfs.run([str(script), "uv"], "scripts/tools.sh uv")
    return require_tool("uv")


def _java_tools() -> tuple[str, str]:
    """``mvn`` and ``javac`` of this machine; Debian's maven and JDK are installed when missing."""
    wanted = {"maven": "mvn", "default-jdk-headless": "javac"}
    try:
        apt.install([pkg for pkg, tool in wanted.items() if shutil.which(tool) is None], recommends=False)
    except apt.AptError as exc:
        raise ImageError(f"the neo4j image needs mvn and javac: {exc}") from None
    mvn, javac = shutil.which("mvn"), shutil.which("javac")
    if mvn is None or javac is None:
        raise ImageError(
            "the neo4j image needs mvn and javac on PATH (apt-get install maven default-jdk-headless)"
        )
    return mvn, javac


def neo4j_version() -> str:
    """The Neo4j version the pom pins (the neo4j image's tag)."""
    found = re.search(r"<neo4j\.version>([^<]+)</neo4j\.version>", (NEO4J_FILES / "pom.xml").read_text())
    if found is None:
        raise ImageError(f"{NEO4J_FILES / 'pom.xml'} names no <neo4j.version>")
    return found.group(1).strip()


def maven_copy_command(mvn: str, pom: Path, repository: Path, out: Path) -> list[str]:
    """Maven's copy of the pom's runtime jars into *out*. ``--strict-checksums``: a jar whose
    checksum from Maven Central does not match fails the build (Maven's default only warns)."""
    copy = [mvn, "-B", "-q", "--strict-checksums", "-f", str(pom), f"-Dmaven.repo.local={repository}"]
    copy += [f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime"]
    return [*copy, f"-DoutputDirectory={out}"]


def neo4j_jars() -> Path:
    """The jars the neo4j pom names, resolved by Maven from Maven Central (cached by the pom's hash):
    ``lib/`` for the classpath, ``plugins/`` the procedure jars (APOC) Neo4j loads at start."""
    pom = NEO4J_FILES / "pom.xml"

    def fetch(tmp: Path) -> None:
        mvn, _ = _java_tools()
        shutil.copy(pom, tmp / "pom.xml")  # Maven works beside its pom: not in the checkout
        copy = maven_copy_command(mvn, tmp / "pom.xml", _downloads("maven"), tmp / "lib")
        rootfs.run(copy, "neo4j: mvn dependency:copy-dependencies")
        (tmp / "pom.xml").unlink()
        (tmp / "plugins").mkdir()
        for jar in (tmp / "lib").glob("apoc-*.jar"):
            jar.rename(tmp / "plugins" / jar.name)

    key = oci.sha256_file(pom)[:20]
    return _fetch_once(_downloads("neo4j-jars", key), f"Neo4j {neo4j_version()} jars with Maven", fetch)


def _npm(*args: str, cwd: Path | None = None, what: str) -> str:
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise ImageError(
            "Node.js and npm are needed on this machine to build the web image (apt-get install npm)"
        )
    return rootfs.run(["npm", *args], what, cwd=cwd)


def verify_download(path: Path, pinned: str) -> None:
    """*path* against its pinned digest, an integrity string such as npm's ``sha512-<base64>``.

    A mismatch deletes *path* (a bad download never stays in the cache) and is an ImageError
    naming the file, the pinned and the actual digest.
    """
    algorithm, _, expected = pinned.partition("-")
    if algorithm not in ("sha256", "sha512") or not expected:
        raise ImageError(f"{path.name}: pin {pinned!r} is not sha256-<base64> or sha512-<base64>")
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    actual = f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"
    if actual != pinned:
        path.unlink(missing_ok=True)
        raise ImageError(
            f"{path.name}: downloaded file does not match its pin (expected {pinned}, got {actual})"
        )


def _pin_key(pinned: str) -> str:
    """A short name for a pin, part of a cache folder's name: a folder filled before the pin (or
    under another pin) is never taken for a verified one."""
    return hashlib.sha256(pinned.encode()).hexdigest()[:12]


def npm_pack(name: str, version: str, integrity: str) -> Path:
    """The npm registry's tarball of package *name* at *version*, checked against its pinned
    *integrity* (the registry's ``dist.integrity``) before it is kept in the cache."""
    folder = _downloads("npm", f"{name.replace('/', '+')}-{version}-{_pin_key(integrity)}")
    # Scoped packages pack as <scope>-<name>-<version>.tgz.
    packed = f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"

    def fetch(tmp: Path) -> None:
        flags = ("--registry", NPM_REGISTRY, "--pack-destination", str(tmp))
        _npm("pack", f"{name}@{version}", *flags, what=f"npm pack {name}@{version}")
        verify_download(tmp / packed, integrity)

    return _fetch_once(folder, f"{name} {version} from npm", fetch) / packed


def pnpm_binary(version: str, integrity: str) -> Path:
    """pnpm *version* (its npm package bundles everything it needs), unpacked from its checked tarball."""
    tarball = npm_pack("pnpm", version, integrity)

    def unpack(tmp: Path) -> None:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / "package/bin/pnpm.cjs").chmod(0o755)

    folder = paths.cache_dir("tools", f"pnpm-{version}-{_pin_key(integrity)}")
    return build_once(folder, unpack) / "package/bin/pnpm.cjs"


def npm_tarball(version: str, integrity: str) -> Path:
    """npm *version* as published (its dependencies bundled), for the api image's npx."""
    return npm_pack("npm", version, integrity)


def node_version() -> tuple[int, int]:
    """The host's Node.js version (major, minor); npm must be there too."""
    _npm("--version", what="npm --version")
    out = rootfs.run(["node", "--version"], "node --version")
    major, minor = (int(x) for x in out.strip().lstrip("v").split(".")[:2])
    return major, minor


# --- steps inside a stage -------------------------------------------------------------
def _apt_binds() -> dict[str, Path]:
    lists = _downloads("apt", SUITE, "lists")
    archives = _downloads("apt", SUITE, "archives")
    for folder in (lists / "partial", archives / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    return {"/var/lib/apt/lists": lists, "/var/cache/apt/archives": archives}


def _apt_install(root: Path, log: Path, packages: Sequence[str], label: str) -> None:
    """apt-get install *packages* (no recommends) in the tree; services are not started."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # removed again with the stage's apt leftovers
    policy.chmod(0o755)
    with (
        rootfs.chroot(root, log, _apt_binds()) as ch,
        rootfs.progress(f"{label}: apt-get install {' '.join(packages)}"),
    ):
        ch.run(["apt-get", "update", "-qq"], f"{label}: apt-get update")
        ch.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            f"{label}: apt-get install",
        )
    policy.unlink()


def _add_users(root: Path) -> None:
    passwd, group = oci.passwd_with_extra_users(root)
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)


def _dpkg_version(stage: rootfs.Stage, package: str) -> str:
    """The version of *package* that *stage* installed (from the dpkg status in its upper)."""
    status = (stage.upper / "var/lib/dpkg/status").read_text()
    for block in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", block, re.MULTILINE):
            found = re.search(r"^Version: (\S+)$", block, re.MULTILINE)
            if found:
                return deb_version(found.group(1))
    raise ImageError(f"{package} is not installed in the {stage.name} stage")


def _uv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "UV_CACHE_DIR": "/tmp/uv-cache",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_LINK_MODE": "copy",
        "UV_COMPILE_BYTECODE": "1",
        "UV_NO_PROGRESS": "1",
        **(extra or {}),
    }


def _uv_binds(uv: Path) -> dict[str, Path]:
    return {"/tmp/uv-cache": _downloads("uv"), "/tmp/uv-bin": uv.parent}


def _pnpm_build(web: Path, pnpm: Path, out: Path, log: Path) -> None:
    """The SPA of *web* into ``out/dist``, built in a copy (node_modules never lands in the source)."""
    with tempfile.TemporaryDirectory(prefix="yuxi-web-") as tmp:
        work = Path(tmp, "web")
        shutil.copytree(web, work, symlinks=True, ignore=shutil.ignore_patterns("node_modules", "dist"))
        lock = work / "pnpm-lock.yaml"
        text, rewritten = rewrite_mirrors(lock.read_text(encoding="utf-8"), NPM_MIRRORS)
        lock.write_text(text, encoding="utf-8")
        if rewritten:
            rootfs.say(f"web: pnpm-lock.yaml points at {NPM_REGISTRY} ({rewritten} mirror URLs rewritten)")
        (work / ".npmrc").write_text(f"registry={NPM_REGISTRY}\n")
        env = web_build_env(os.environ)
        flags = [f"--registry={NPM_REGISTRY}", "--config.manage-package-manager-versions=false"]
        flags.append(f"--store-dir={_downloads('pnpm-store')}")
        log.unlink(missing_ok=True)
        with rootfs.progress("web: pnpm install --frozen-lockfile"):
            rootfs.run(
                [str(pnpm), "install", "--frozen-lockfile", *flags],
                "web: pnpm install",
                log=log,
                env=env,
                cwd=work,
            )
        with rootfs.progress("web: pnpm run build"):
            rootfs.run([str(pnpm), "run", "build"], "web: pnpm run build", log=log, env=env, cwd=work)
        if not (work / "dist" / "index.html").is_file():
            raise ImageError(f"web: pnpm run build wrote no dist/index.html (log: {log})")
        shutil.move(str(work / "dist"), out / "dist")


@dataclass(frozen=True)
class ImageConfig:
    tag: str
    env: tuple[str, ...] = ()
    user: str | None = None
    workdir: str = "/"
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None


@dataclass
class _Builder:
    """The stages of every image for one source tree, made on first use."""

    src: Source
    versions: dict[str, str] = field(default_factory=pinned_versions)
    _stages: dict[str, rootfs.Stage] = field(default_factory=dict)
    _work: tempfile.TemporaryDirectory[str] | None = None
    _minio_build: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.versions:
            raise ImageError("tools/versions.env not found: building the images needs the yuxi-k8s checkout")

    def close(self) -> None:
        if self._work is not None:
            self._work.cleanup()

    def _memo(self, name: str, make: Callable[[], rootfs.Stage]) -> rootfs.Stage:
        if name not in self._stages:
            self._stages[name] = make()
        return self._stages[name]

    # -- shared stages
    def core(self) -> rootfs.Stage:
        def make() -> rootfs.Stage:
            with rootfs.progress(f"core: debootstrap --variant=minbase {SUITE}"):
                tree = oci.debootstrap_rootfs(
                    SUITE, CORE_PACKAGES, debs_cache=_downloads("debootstrap", SUITE), drop_host_files=True
                )
            key = oci.rootfs_layer(tree).digest  # a rebuilt base with other content rebuilds what is on it
            return rootfs.base("core", tree, key[:20])

        return self._memo("core", make)

    def _system(
        self, name: str, parent: rootfs.Stage, packages: Sequence[str], extra: str = ""
    ) -> rootfs.Stage:
        def build(root: Path, log: Path) -> None:
            _apt_install(root, log, packages, name)
            _add_users(root)

        return rootfs.derive(parent, name, _digest(*packages, json.dumps(oci.EXTRA_USERS), extra), build)

    def py(self) -> rootfs.Stage:
        return self._memo("py", lambda: self._system("py", self.core(), PY_PACKAGES))

    # -- api
    def api_system(self) -> rootfs.Stage:
        npm_version = self.versions["IMAGE_NPM_VERSION"]
        npm_integrity = self.versions["IMAGE_NPM_INTEGRITY"]

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                _apt_install(root, log, API_PACKAGES, "api-system")
                tarball = npm_tarball(npm_version, npm_integrity)
                target = root / "usr/local/lib/node_modules/npm"
                with tempfile.TemporaryDirectory() as unpacked:
                    with tarfile.open(tarball) as tar:
                        tar.extractall(unpacked, filter="data")
                    shutil.copytree(Path(unpacked, "package"), target, symlinks=True)
                for tool in ("npm", "npx"):
                    (root / "usr/local/bin" / tool).symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
                with rootfs.chroot(root, log) as ch:
                    ch.run(["npx", "--version"], "api-system: npx --version")

            return rootfs.derive(
                self.py(), "api-system", _digest(*API_PACKAGES, npm_version), build, readable=["/usr/local"]
            )

        return self._memo("api-system", make)

    def api_app(self) -> rootfs.Stage:
        backend = self.src.tree / "backend"
        copied = ("pyproject.toml", ".python-version", "package", "server")
        uv_version = self.versions["UV_VERSION"]
        sync = [
            "/tmp/uv-bin/uv", "sync", "--frozen", "--no-dev", "--group", "test", "--python", PYTHON,
            *[arg for pkg in LEFT_OUT_PACKAGES for arg in ("--no-install-package", pkg)],
        ]  # fmt: skip
        compile_app = ["/app/.venv/bin/python", "-m", "compileall", "-qj0", "/app/package", "/app/server"]

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                app = root / "app"
                app.mkdir()
                for name in copied:
                    source_path = backend / name
                    if source_path.is_dir():
                        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv")
                        shutil.copytree(source_path, app / name, symlinks=True, ignore=ignore)
                    else:
                        shutil.copy2(source_path, app / name)
                lock, rewritten = pypi_lock((backend / "uv.lock").read_text(encoding="utf-8"))
                (app / "uv.lock").write_text(lock, encoding="utf-8")
                rootfs.say(
                    f"api: uv.lock points at PyPI ({rewritten} mirror URLs rewritten, hashes unchanged)"
                )
                uv = uv_binary()
                with rootfs.chroot(root, log, _uv_binds(uv)) as ch, rootfs.progress("api: uv sync"):
                    # .python-version says 3.12; the lock allows <3.14, and trixie's python3 is 3.13.
                    env = _uv_env({"UV_PROJECT_ENVIRONMENT": "/app/.venv", "UV_DEFAULT_INDEX": PYPI_SIMPLE})
                    ch.run(sync, "api: uv sync", cwd="/app", env=env)
                    # uv compiles what it installs, not the editable package nor server/; the root
                    # is read-only in the pods, so without this every start would compile them again.
                    ch.run(compile_app, "api: compile /app/package and /app/server", cwd="/app")

            inputs = _digest(files_digest(backend, ("uv.lock", *copied)), uv_version, *sync, *compile_app)
            return rootfs.derive(self.api_system(), "api-app", inputs, build, readable=["/app"])

        return self._memo("api-app", make)

    def kit_wheels(self) -> list[Path]:
        if self._work is None:
            self._work = tempfile.TemporaryDirectory(prefix="yuxi-images-")
            with rootfs.progress("kit: build the yuxi-k8s wheel"):
                oci.kit_wheels(Path(self._work.name))
        return sorted(Path(self._work.name, "wheels").glob("*.whl"))

    def api_kit(self) -> rootfs.Stage:
        constraints = (paths.repo_root() / "constraints.txt").read_text()

        def make() -> rootfs.Stage:
            wheels = self.kit_wheels()
            uv = uv_binary()

            def build(root: Path, log: Path) -> None:
                python = ["--python", "/app/.venv/bin/python"]
                with rootfs.chroot(root, log, _uv_binds(uv)) as ch, rootfs.progress("api: install yuxi-k8s"):
                    freeze = ["/tmp/uv-bin/uv", "pip", "freeze", *python]
                    before = parse_pins(ch.run(freeze, "api: uv pip freeze", env=_uv_env(), capture=True))
                    # The app's packages stay exactly as its lock has them; only what the kit
                    # needs and the app lacks comes in, at the kit's pins (constraints.txt).
                    kit_pins = {n: v for n, v in parse_pins(constraints).items() if n not in before}
                    pins = "".join(f"{n}=={v}\n" for n, v in sorted({**before, **kit_pins}.items()))
                    (ch.path("/tmp/kit")).mkdir()
                    (ch.path("/tmp/kit/constraints.txt")).write_text(pins)
                    for wheel in wheels:
                        shutil.copy(wheel, ch.path(f"/tmp/kit/{wheel.name}"))
                    install = ["/tmp/uv-bin/uv", "pip", "install", *python, "--index-url", PYPI_SIMPLE]
                    install += ["-c", "/tmp/kit/constraints.txt", *[f"/tmp/kit/{w.name}" for w in wheels]]
                    ch.run(install, "api: uv pip install yuxi-k8s", env=_uv_env())
                    after = parse_pins(ch.run(freeze, "api: uv pip freeze", env=_uv_env(), capture=True))
                changed = sorted(f"{n} {v} -> {after.get(n)}" for n, v in before.items() if after.get(n) != v)
                if changed:
                    raise ImageError(
                        f"installing yuxi-k8s would change the app's packages: {', '.join(changed)}"
                    )
                added = sorted(f"{n}=={v}" for n, v in after.items() if n not in before)
                rootfs.say(f"api: yuxi-k8s adds {', '.join(added)} to the app's venv")

            inputs = _digest(oci.wheel_content_digest(wheels), constraints)
            return rootfs.derive(self.api_app(), "api-kit", inputs, build, readable=["/app"])

        return self._memo("api-kit", make)

    # -- sandbox provisioner
    def provisioner(self) -> rootfs.Stage:
        folder = self.src.tree / "docker" / "sandbox_provisioner"
        constraints = IMAGE_FILES / "provisioner-constraints.txt"
        uv_version = self.versions["UV_VERSION"]

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                (root / "app").mkdir()
                shutil.copy2(folder / "app.py", root / "app/app.py")
                uv = uv_binary()
                with (
                    rootfs.chroot(root, log, _uv_binds(uv)) as ch,
                    rootfs.progress("sandbox-provisioner: venv"),
                ):
                    (ch.path("/tmp/p")).mkdir()
                    shutil.copy(folder / "requirements.txt", ch.path("/tmp/p/requirements.txt"))
                    shutil.copy(constraints, ch.path("/tmp/p/constraints.txt"))
                    uv_cmd = "/tmp/uv-bin/uv"
                    ch.run(
                        [uv_cmd, "venv", "/app/.venv", "--python", PYTHON],
                        "provisioner: uv venv",
                        env=_uv_env(),
                    )
                    for cmd, what in provisioner_installs(uv_cmd, "/app/.venv/bin/python", "/tmp/p"):
                        ch.run(cmd, f"provisioner: {what}", env=_uv_env())

            inputs = _digest(
                files_digest(folder, ("app.py", "requirements.txt")), constraints.read_text(), uv_version
            )
            return rootfs.derive(self.py(), "provisioner", inputs, build, readable=["/app"])

        return self._memo("provisioner", make)

    def provisioner_kit(self) -> rootfs.Stage:
        """The kit's entry point beside upstream's server: a layer of one file, so a change to it
        rebuilds nothing else."""

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                shutil.copy2(PROVISIONER_ENTRY, root / "app" / PROVISIONER_ENTRY.name)

            inputs = _digest(oci.sha256_file(PROVISIONER_ENTRY))
            return rootfs.derive(self.provisioner(), "provisioner-kit", inputs, build, readable=["/app"])

        return self._memo("provisioner-kit", make)

    # -- the e2e tier's sandbox stand-in (upstream's sandbox image is on a third-party registry)
    def sandbox_standin(self) -> rootfs.Stage:
        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                folder = root / SANDBOX_STANDIN_DIR.lstrip("/")
                folder.mkdir(parents=True)
                shutil.copy2(SANDBOX_STANDIN, folder / SANDBOX_STANDIN.name)
                (root / "home/gem").mkdir(parents=True)

            inputs = _digest(oci.sha256_file(SANDBOX_STANDIN))
            return rootfs.derive(self.py(), "sandbox-standin", inputs, build, readable=[SANDBOX_STANDIN_DIR])

        return self._memo("sandbox-standin", make)

    # -- milvus (milvus-lite's gRPC server, started by the kit's imagefiles/yuxi-milvus)
    def milvus(self) -> rootfs.Stage:
        constraints = IMAGE_FILES / "milvus-constraints.txt"
        launcher = IMAGE_FILES / "yuxi-milvus"
        uv_version = self.versions["UV_VERSION"]
        pins = parse_pins(constraints.read_text())
        wanted = [f"milvus-lite[chinese]=={pins['milvus-lite']}", f"pymilvus=={pins['pymilvus']}"]

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                uv = uv_binary()
                with rootfs.chroot(root, log, _uv_binds(uv)) as ch, rootfs.progress("milvus: venv"):
                    ch.path("/tmp/m").mkdir()
                    shutil.copy(constraints, ch.path("/tmp/m/constraints.txt"))
                    uv_cmd = "/tmp/uv-bin/uv"
                    venv = [uv_cmd, "venv", "/app/.venv", "--python", PYTHON]
                    ch.run(venv, "milvus: uv venv", env=_uv_env())
                    install = [uv_cmd, "pip", "install", "--python", "/app/.venv/bin/python"]
                    install += ["--index-url", PYPI_SIMPLE, "--require-hashes"]
                    install += ["-c", "/tmp/m/constraints.txt", *wanted]
                    ch.run(install, "milvus: uv pip install milvus-lite", env=_uv_env())
                target = root / "usr/local/bin/yuxi-milvus"
                shutil.copy(launcher, target)
                target.chmod(0o755)
                data = root / MILVUS_DATA.lstrip("/")
                data.mkdir(parents=True)
                os.chown(data, 10001, 10001)
                data.chmod(0o700)

            inputs = _digest(oci.sha256_file(constraints), oci.sha256_file(launcher), uv_version, *wanted)
            return rootfs.derive(self.py(), "milvus", inputs, build, readable=["/app"])

        return self._memo("milvus", make)

    # -- web
    def web_dist(self) -> Path:
        """``pnpm install --frozen-lockfile`` and ``pnpm run build`` of web/ on the host (cached)."""
        web = self.src.tree / "web"
        pnpm_version = self.versions["PNPM_VERSION"]
        major, minor = node_version()
        if (major, minor) < (20, 19):
            raise ImageError(
                f"building the web app needs Node.js >= 20.19 on this machine (found {major}.{minor})"
            )
        key = web_dist_key(tree_key(web), pnpm_version, major)
        pnpm = pnpm_binary(pnpm_version, self.versions["PNPM_INTEGRITY"])
        log = _images_cache("web-dist", f"{key}.log")
        return (
            build_once(_images_cache("web-dist", key), lambda out: _pnpm_build(web, pnpm, out, log)) / "dist"
        )

    def _web_cdn_packages(self, dist: Path) -> tuple[list[web_assets.CdnFile], dict[tuple[str, str], Path]]:
        """What the bundle loads from unpkg.com, and each pinned package's checked npm tarball."""
        files = web_assets.cdn_files(dist)
        pins = web_assets.load_pins()
        missing = web_assets.unpinned(files, pins)
        if missing:
            raise ImageError(
                f"web: the bundle loads {', '.join(missing)} from {web_assets.CDN}, which "
                f"{web_assets.PINS_FILE.name} does not pin (add name, version and the registry's integrity)"
            )
        tarballs: dict[tuple[str, str], Path] = {}
        for key in sorted({f.key for f in files}):
            tarballs[key] = npm_pack(*key, pins[key].integrity)
        return files, tarballs

    def web(self) -> rootfs.Stage:
        def make() -> rootfs.Stage:
            dist = self.web_dist()
            system = self._system("web-system", self.core(), WEB_PACKAGES)
            kit = paths.repo_root()
            cdn_files, tarballs = self._web_cdn_packages(dist)

            def build(root: Path, log: Path) -> None:
                html = root / "usr/share/nginx/html"
                for entry in html.iterdir() if html.exists() else ():
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                shutil.copytree(dist, html, dirs_exist_ok=True)
                # The manifests' config (uid 101, port 8080, /tmp for everything written; the
                # web-nginx ConfigMap mounts the same files), so the image serves the same way
                # without it.
                (root / "etc/nginx/yuxi").mkdir(exist_ok=True)
                for conf in sorted((kit / NGINX_CONFIG).glob("*.conf")):
                    target = "nginx.conf" if conf.name == "nginx.conf" else f"yuxi/{conf.name}"
                    shutil.copy(conf, root / "etc/nginx" / target)
                copied = web_assets.install(html, cdn_files, tarballs)
                scripts = web_assets.point_bundle_here(html)
                where = web_assets.LOCAL_PREFIX
                rootfs.say(f"web: {copied} CDN files served from {where} ({scripts} scripts)")

            pins = oci.sha256_file(web_assets.PINS_FILE)
            inputs = _digest(tree_key(dist), tree_key(kit / NGINX_CONFIG), pins)
            return rootfs.derive(
                system, "web", inputs, build, readable=["/usr/share/nginx/html", "/etc/nginx"]
            )

        return self._memo("web", make)

    # -- postgres and redis
    def deps_system(self) -> rootfs.Stage:
        return self._memo("deps-system", lambda: self._system("deps-system", self.core(), DEPS_PACKAGES))

    def deps(self) -> rootfs.Stage:
        scripts = ("yuxi-postgres", "yuxi-redis")

        def make() -> rootfs.Stage:
            def build(root: Path, log: Path) -> None:
                # postgresql-common's postinst made a "main" cluster; the entrypoint makes its own.
                for made in (*root.glob("var/lib/postgresql/*/main"), *root.glob("etc/postgresql/*/main")):
                    shutil.rmtree(made)
                for script in scripts:
                    target = root / "usr/local/bin" / script
                    shutil.copy(SERVER_IMAGE_FILES / "bin" / script, target)
                    target.chmod(0o755)
                for folder in ("var/lib/postgresql/data", "data"):
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    os.chown(root / folder, 999, 999)
                    (root / folder).chmod(0o700)

            inputs = _digest(*[oci.sha256_file(SERVER_IMAGE_FILES / "bin" / s) for s in scripts], "999")
            return rootfs.derive(self.deps_system(), "deps", inputs, build)

        return self._memo("deps", make)

    # -- neo4j
    def neo4j(self) -> rootfs.Stage:
        launcher = NEO4J_FILES / "Launcher.java"

        def make() -> rootfs.Stage:
            jars = neo4j_jars()
            system = self._system("neo4j-system", self.core(), NEO4J_PACKAGES)

            def build(root: Path, log: Path) -> None:
                opt = root / "opt/neo4j"
                for folder in ("lib", "plugins"):
                    shutil.copytree(jars / folder, opt / folder)
                _, javac = _java_tools()
                compile_launcher = [javac, "-proc:none", "--release", "17", "-cp", f"{jars / 'lib'}/*"]
                compile_launcher += ["-d", str(opt / "launcher"), str(launcher)]
                with rootfs.progress("neo4j: javac Launcher.java"):
                    rootfs.run(compile_launcher, "neo4j: javac Launcher.java", log=log)
                passwd, group = oci.passwd_with_extra_users(root, {NEO4J_UID: "neo4j"})
                (root / "etc/passwd").write_text(passwd)
                (root / "etc/group").write_text(group)
                (root / "data").mkdir()
                os.chown(root / "data", NEO4J_UID, NEO4J_UID)
                (root / "data").chmod(0o700)

            inputs = _digest(
                jars.name, oci.sha256_file(launcher), str(NEO4J_UID)
            )  # jars.name: the pom's hash
            return rootfs.derive(system, "neo4j", inputs, build, readable=["/opt/neo4j"])

        return self._memo("neo4j", make)

    # -- minio
    def start_minio_build(self) -> None:
        """``scripts/tools.sh minio`` in the background (a cached no-op once built)."""
        if self._minio_build is None:
            log = _images_cache("minio-build.log")
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("wb") as out:
                script = str(paths.repo_root() / "scripts" / "tools.sh")
                self._minio_build = subprocess.Popen([script, "minio"], stdout=out, stderr=subprocess.STDOUT)

    def minio(self) -> rootfs.Stage:
        def make() -> rootfs.Stage:
            self.start_minio_build()
            assert self._minio_build is not None
            with rootfs.progress(f"minio: go build github.com/minio/minio@{self.versions['MINIO_VERSION']}"):
                code = self._minio_build.wait()
            if code != 0:
                tail = _images_cache("minio-build.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise ImageError(f"scripts/tools.sh minio failed: {' | '.join(tail)}")
            binary = pinned_tool("minio")
            if binary is None:
                raise ImageError("scripts/tools.sh minio built no bin/minio")
            binary = binary.resolve()
            core = self.core().upper

            def build(root: Path, log: Path) -> None:
                (root / "usr/bin").mkdir(parents=True)
                shutil.copy2(binary, root / "usr/bin/minio")
                (root / "etc/ssl/certs").mkdir(parents=True)
                shutil.copy(core / "etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs")
                (root / "etc/passwd").write_text(MINIMAL_PASSWD)
                (root / "etc/group").write_text(MINIMAL_GROUP)
                _add_users(root)
                for folder, mode in (("tmp", 0o1777), ("data", 0o700)):
                    (root / folder).mkdir()
                    (root / folder).chmod(mode)
                os.chown(root / "data", 10001, 10001)

            ca = oci.sha256_file(core / "etc/ssl/certs/ca-certificates.crt")
            inputs = _digest(oci.sha256_file(binary), ca, MINIMAL_PASSWD, json.dumps(oci.EXTRA_USERS))
            return rootfs.derive(None, "minio", inputs, build)

        return self._memo("minio", make)

    # -- per image
    def stage(self, name: str) -> rootfs.Stage:
        makers: dict[str, Callable[[], rootfs.Stage]] = {
            "api": self.api_kit,
            "web": self.web,
            "sandbox-provisioner": self.provisioner_kit,
            "postgres": self.deps,
            "redis": self.deps,
            "minio": self.minio,
            "neo4j": self.neo4j,
            "milvus": self.milvus,
            "sandbox-standin": self.sandbox_standin,
        }
        return makers[name]()

    def config(self, name: str) -> ImageConfig:
        """Tag and image config (entrypoint, cmd, env, user, workdir) of image *name*."""
        version = self.src.version
        env: tuple[str, ...]
        cmd: tuple[str, ...]
        if name == "api":  # no CMD: the manifests give the commands (uvicorn, arq, yuxi-k8s)
            env = (VENV_PATH, "VIRTUAL_ENV=/app/.venv", *PYTHON_ENV)
            return ImageConfig(version, env=env, user="10001:10001", workdir="/app")
        if name == "sandbox-provisioner":
            return ImageConfig(
                version,
                env=(VENV_PATH, *PYTHON_ENV),
                user="10001:10001",
                workdir="/app",
                cmd=PROVISIONER_COMMAND,
            )
        if name == "web":
            return ImageConfig(version, user="101:101", cmd=("nginx", "-e", "stderr", "-g", "daemon off;"))
        if name == "postgres":
            major = _dpkg_version(self.deps_system(), "postgresql").split("+")[0]  # 17+278 -> 17
            env = (f"PATH=/usr/lib/postgresql/{major}/bin:{DEFAULT_PATH}", "LANG=C.UTF-8", f"PGDATA={PGDATA}")
            tag = _dpkg_version(self.deps_system(), f"postgresql-{major}")
            return ImageConfig(tag, env=env, user="999:999", entrypoint=("yuxi-postgres",))
        if name == "redis":
            tag = _dpkg_version(self.deps_system(), "redis-server")
            return ImageConfig(
                tag, env=("LANG=C.UTF-8",), user="999:999", workdir="/data", entrypoint=("yuxi-redis",)
            )
        if name == "minio":
            cmd = ("server", "/data", "--address", ":9000", "--console-address", ":9001")
            env = ("HOME=/tmp",)
            return ImageConfig(
                self.versions["MINIO_VERSION"], env=env, user="10001:10001", entrypoint=("minio",), cmd=cmd
            )
        if name == "neo4j":
            env = ("LANG=C.UTF-8", "HOME=/tmp", f"JDK_JAVA_OPTIONS={NEO4J_JVM_MEMORY}")
            user = f"{NEO4J_UID}:{NEO4J_UID}"
            return ImageConfig(neo4j_version(), env=env, user=user, workdir="/data", entrypoint=NEO4J_COMMAND)
        if name == "milvus":
            cmd = ("--data-dir", MILVUS_DATA, "--host", "0.0.0.0", "--port", str(MILVUS_PORT))
            tag = parse_pins((IMAGE_FILES / "milvus-constraints.txt").read_text())["milvus-lite"]
            return ImageConfig(
                tag,
                env=PYTHON_ENV,
                user="10001:10001",
                workdir=MILVUS_DATA,
                entrypoint=("yuxi-milvus",),
                cmd=cmd,
            )
        if name == "sandbox-standin":
            # root, as upstream's sandbox runs (its pod spec sets runAsUser 0): the init
            # container chmods the thread's folders, the tools write as the agent's user would.
            script = f"{SANDBOX_STANDIN_DIR}/{SANDBOX_STANDIN.name}"
            cmd = ("python3", script, "--host", "0.0.0.0", "--port", str(SANDBOX_PORT), "--root", "/home/gem")
            tag = f"kit-{self.sandbox_standin().key[:12]}"  # the kit's own: changes with the server
            return ImageConfig(tag, env=PYTHON_ENV, workdir="/home/gem", cmd=cmd)
        raise ImageError(f"unknown image {name}")

    def layers(self, stage: rootfs.Stage) -> list[oci.Layer]:
        out = []
        for step in stage.stages():
            with (
                rootfs.progress(f"{step.name}: layer") if not _layer_done(step) else contextlib.nullcontext()
            ):
                out.append(oci.rootfs_layer(step.upper) if step.name == "core" else rootfs.layer(step))
        return out

    def image(self, name: str, registry: str) -> BuiltImage:
        stage = self.stage(name)
        layers = self.layers(stage)
        c = self.config(name)
        repository = f"{check_registry(registry)}/{REPOSITORIES[name]}"
        return oci.build_image(
            repository,
            layers,
            tag=c.tag,
            entrypoint=c.entrypoint,
            cmd=c.cmd,
            env=c.env,
            user=c.user,
            workdir=c.workdir,
        )


def _layer_done(stage: rootfs.Stage) -> bool:
    if stage.name == "core":
        return (stage.upper.parent / "layer.sha256").exists()
    return (stage.folder / "layer.sha256").exists()


def _prune(folder: Path, pattern: str, keep: set[Path], newest: int = 2) -> None:
    """Remove *pattern* entries under *folder* except *keep* and the *newest* others (big archives, trees)."""
    entries = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    others = [p for p in entries if p not in keep]
    for stale in others[max(0, newest - len(keep)) :]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _builder(src: Source) -> Iterator[_Builder]:
    if os.geteuid() != 0:
        raise ImageError(
            "building the application images needs root (debootstrap, mount, chroot); run with sudo"
        )
    with _build_lock():
        builder = _Builder(src)
        try:
            yield builder
        finally:
            builder.close()


def build_all(
    src: Source, only: Iterable[str] | None = None, *, registry: str = DEFAULT_REGISTRY
) -> dict[str, BuiltImage]:
    """Build (or reuse) the selected images of *src*; name -> BuiltImage, in :data:`IMAGES` order."""
    names = select(only)
    registry = check_registry(registry)
    start = time.monotonic()
    built: dict[str, BuiltImage] = {}
    with _builder(src) as builder:
        if "minio" in names:
            builder.start_minio_build()  # compiles while the rest builds
        for name in [n for n in names if n != "minio"] + [n for n in names if n == "minio"]:
            with rootfs.progress(f"{name}: image"):
                built[name] = builder.image(name, registry)
    for image in built.values():  # archives are named <repository with _ for />-<tag>-<config>.oci.tar
        prefix = image.name.rsplit(":", 1)[0].replace("/", "_")
        _prune(image.archive.parent, f"{prefix}-*.oci.tar", {image.archive})
    rootfs.say(f"{len(built)} image(s) ready in {time.monotonic() - start:.0f} s")
    return {n: built[n] for n in IMAGES if n in built}


def image_tree(src: Source, name: str) -> Path:
    """Image *name*'s whole filesystem as a folder (cached per content), e.g. to chroot into.

    It is a copy: writing in it changes neither the images nor the cache they come from.
    No /etc/resolv.conf (nothing resolves outside), /dev holds the usual device nodes.
    """
    select([name])
    with _builder(src) as builder:
        stage = builder.stage(name)
        dest = _images_cache("trees", f"{name}-{stage.key}")
        if not is_built(dest):
            with rootfs.progress(f"{name}: copy the filesystem to {dest}"):
                rootfs.materialize(stage, dest)
        _prune(dest.parent, f"{name}-*", {dest})
    return dest / "root"


def api_tree(src: Source) -> Path:
    """The api image's filesystem (trixie + /app with its venv and yuxi-k8s) as a folder."""
    return image_tree(src, "api")


__all__ = [
    "DEFAULT_REGISTRY",
    "IMAGES",
    "MANIFEST_NAMES",
    "NEO4J_COMMAND",
    "NEO4J_JVM_MEMORY",
    "NEO4J_UID",
    "REPOSITORIES",
    "WEB_BUILD_ENV",
    "api_tree",
    "build_all",
    "check_registry",
    "image_tree",
    "kustomization_images",
    "kustomize_pins",
    "neo4j_jars",
    "neo4j_version",
    "pypi_lock",
    "reference",
    "rewrite_mirrors",
    "select",
    "web_build_env",
    "web_dist_key",
]
