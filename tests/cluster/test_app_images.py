"""The application's images, built for real from the source in YUXI_K8S_APP_SOURCE (CI: the shared
tarball; unset: a clone of the pinned tag), and each one's filesystem exercised in a chroot.

Needs root on Linux (debootstrap, overlayfs, chroot) and the package registries (Debian, PyPI,
npm, the Go module proxy); with warm caches the build is a cache hit and the module takes a
minute or two. Servers started here listen on 127.0.0.1 only. Runs before the e2e tests, which
deploy these images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import require

from yuxi_k8s import apt, procfs
from yuxi_k8s.app import images, registry, rootfs, source
from yuxi_k8s.cli import main
from yuxi_k8s.cluster.oci import DEFAULT_PATH, BuiltImage
from yuxi_k8s.paths import REPO_ROOT

BASE_ENV = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}
VENV_ENV = {**BASE_ENV, "PATH": f"/app/.venv/bin:{BASE_ENV['PATH']}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def src() -> source.Source:
    require(
        platform.system() == "Linux" and os.geteuid() == 0, "root on Linux (debootstrap, overlayfs, chroot)"
    )
    for tool in ("chroot", "mount", "tar", "git", "node", "npm", "go"):
        require(
            shutil.which(tool) is not None, f"{tool} on PATH (apt-get install coreutils mount tar git npm)"
        )
    try:
        return source.resolve()
    except source.SourceError as exc:
        problem = str(exc)
    pytest.fail(
        f"the application source: {problem} (set {source.ENV} to a tarball or checkout)", pytrace=False
    )


@pytest.fixture(scope="module")
def built(src: source.Source) -> dict[str, BuiltImage]:
    return images.build_all(src)


def archive_json(archive: Path, name: str) -> dict:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None, name
        return json.load(member)


def image_parts(image: BuiltImage) -> tuple[dict, dict, bytes]:
    """(manifest, config, manifest bytes) as stored in the archive."""
    index = archive_json(image.archive, "index.json")
    digest = index["manifests"][0]["digest"].split(":")[1]
    with tarfile.open(image.archive) as tar:
        member = tar.extractfile(f"blobs/sha256/{digest}")
        assert member is not None
        raw = member.read()
    manifest = json.loads(raw)
    config = archive_json(image.archive, f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}")
    return manifest, config, raw


def chroot(tree: Path, user: str, *cmd: str) -> list[str]:
    return [shutil.which("chroot") or "/usr/sbin/chroot", f"--userspec={user}", str(tree), *cmd]


def in_tree(
    tree: Path, *cmd: str, user: str = "10001:10001", env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """*cmd* in a chroot of *tree* as *user*, output captured."""
    return subprocess.run(
        chroot(tree, user, *cmd),
        env=env or BASE_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Servers(list[subprocess.Popen[bytes]]):
    def start(self, tree: Path, user: str, *cmd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """*cmd* in a chroot of *tree* as *user*, in the background; stopped when the test ends."""
        proc = subprocess.Popen(chroot(tree, user, *cmd), env=env)
        self.append(proc)
        return proc


@pytest.fixture
def background() -> Iterator[Servers]:
    """Servers a test starts in a chroot; stopped (by pid) afterwards."""
    procs = Servers()
    yield procs
    for proc in procs:
        procfs.stop_child(proc)


def wait_http(url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=3)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")


# --- the archives -----------------------------------------------------------------------------
EXPECTED = {
    # name: (user, workdir, entrypoint, cmd, env entries that must be there)
    "api": ("10001:10001", "/app", None, None, ["HOME=/tmp", "PATH=/app/.venv/bin:"]),
    "sandbox-provisioner": ("10001:10001", "/app", None, list(images.PROVISIONER_COMMAND),
                            ["HOME=/tmp", "PATH=/app/.venv/bin:"]),
    "web": ("101:101", "/", None, ["nginx", "-e", "stderr", "-g", "daemon off;"], ["PATH="]),
    "postgres": ("999:999", "/", ["yuxi-postgres"], None, ["PATH=/usr/lib/postgresql/", "PGDATA="]),
    "redis": ("999:999", "/data", ["yuxi-redis"], None, ["PATH="]),
    "minio": ("10001:10001", "/", ["minio"], ["server", "/data", "--address", ":9000", "--console-address",
                                              ":9001"], ["HOME=/tmp"]),
    "neo4j": ("7474:7474", "/data", list(images.NEO4J_COMMAND), None, ["JDK_JAVA_OPTIONS=", "HOME=/tmp"]),
    "milvus": ("10001:10001", "/var/lib/milvus", ["yuxi-milvus"],
               ["--data-dir", "/var/lib/milvus", "--host", "0.0.0.0", "--port", "19530"], ["HOME=/tmp"]),
    "sandbox-standin": (None, "/home/gem", None, ["python3", "/opt/yuxi-sandbox/sandbox_standin.py", "--host",
                        "0.0.0.0", "--port", "8080", "--root", "/home/gem"], ["HOME=/tmp"]),
}  # fmt: skip


def test_every_image_is_an_archive_with_its_name_digest_and_config(
    built: dict[str, BuiltImage], src: source.Source
) -> None:
    assert list(built) == list(images.IMAGES)
    for name, image in built.items():
        repository, tag = image.name.rsplit(":", 1)
        assert repository == f"{images.DEFAULT_REGISTRY}/{images.REPOSITORIES[name]}"
        if name in ("api", "web", "sandbox-provisioner"):
            assert tag == src.version
        manifest, config, raw = image_parts(image)
        assert image.digest == "sha256:" + hashlib.sha256(raw).hexdigest(), name
        docker = archive_json(image.archive, "manifest.json")
        assert docker[0]["RepoTags"] == [image.name]
        user, workdir, entrypoint, cmd, env = EXPECTED[name]
        body = config["config"]
        assert (body.get("User"), body["WorkingDir"], body["Entrypoint"], body["Cmd"]) == (
            user, workdir, entrypoint, cmd
        ), name  # fmt: skip
        for wanted in env:
            assert any(e.startswith(wanted) for e in body["Env"]), (name, wanted, body["Env"])
        assert [e for e in body["Env"] if e.startswith("PATH=")].__len__() == 1, body["Env"]
        assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


def test_images_share_their_base_layers(built: dict[str, BuiltImage]) -> None:
    layers = {
        name: [lyr["digest"] for lyr in image_parts(image)[0]["layers"]] for name, image in built.items()
    }
    assert len(layers["api"]) == 5, "core, py, api-system, api-app, api-kit"
    assert layers["sandbox-provisioner"][:2] == layers["api"][:2]
    assert layers["web"][0] == layers["api"][0] == layers["postgres"][0]
    assert layers["postgres"] == layers["redis"], "one set of layers, two configs"
    assert len(layers["minio"]) == 1


def test_a_second_build_is_a_cache_hit(built: dict[str, BuiltImage], src: source.Source) -> None:
    written = {n: built[n].archive.stat().st_mtime_ns for n in ("api", "minio")}
    again = images.build_all(src, ["api", "minio"])
    assert {n: b.digest for n, b in again.items()} == {n: built[n].digest for n in again}
    assert {n: b.archive.stat().st_mtime_ns for n, b in again.items()} == written, "nothing rewritten"


def test_the_cli_prints_references_digests_and_pins(built: dict[str, BuiltImage], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["images", "build", "--only", "minio", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"][0]["digest"] == built["minio"].digest
    assert main(["images", "build", "--only", "minio,redis"]) == 0
    out = capsys.readouterr().out
    assert f"{built['minio'].name}@{built['minio'].digest}" in out
    assert (
        f"kustomize edit set image docker.io/library/redis={images.DEFAULT_REGISTRY}/yuxi-k8s-redis@" in out
    )


# --- the api filesystem -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trees(built: dict[str, BuiltImage], src: source.Source) -> Iterator[dict[str, Path]]:
    """Each image's filesystem as a folder, with /proc mounted while the module runs."""
    with contextlib.ExitStack() as stack:
        yield {n: stack.enter_context(rootfs.proc_mounted(images.image_tree(src, n))) for n in built}


@pytest.fixture(scope="module")
def api_tree(trees: dict[str, Path], src: source.Source) -> Path:
    assert images.api_tree(src) == trees["api"]
    return trees["api"]


def test_the_api_tree_runs_the_kit_and_the_app_as_10001(api_tree: Path) -> None:
    assert not (api_tree / "etc/resolv.conf").exists()
    for cmd in (["yuxi-k8s", "--help"], ["yuxi-k8s-app", "--help"]):
        proc = in_tree(api_tree, *cmd, env=VENV_ENV)
        assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
    env = {**VENV_ENV, "SAVE_DIR": "/tmp/yuxi-images-test", "OPENAI_API_KEY": "x"}
    code = "import yuxi.config, cv2, alembic, mako; print('ok')"
    proc = in_tree(api_tree, "/app/.venv/bin/python", "-c", code, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    proc = in_tree(api_tree, "node", "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("v20."), proc
    assert in_tree(api_tree, "npx", "--version").returncode == 0


DOCX_WITHOUT_TORCH = """
import docx, importlib.util, sys
from docling.datamodel.base_models import InputFormat
from docling.document_converter import DocumentConverter
assert importlib.util.find_spec("torch") is None
document = docx.Document()
document.add_paragraph("parsed without torch")
document.save("/tmp/office.docx")
office = {InputFormat.DOCX: None, InputFormat.XLSX: None, InputFormat.PPTX: None}  # as the app's parser
converter = DocumentConverter(format_options=office)
print(converter.convert("/tmp/office.docx").document.export_to_markdown())
"""


def test_office_documents_parse_without_torch(api_tree: Path) -> None:
    """The app converts DOCX/XLSX/PPTX with docling (its parser's only use of it): no torch needed."""
    proc = in_tree(api_tree, "/app/.venv/bin/python", "-c", DOCX_WITHOUT_TORCH, env=VENV_ENV, timeout=300)
    assert proc.returncode == 0 and "parsed without torch" in proc.stdout, proc.stderr[-2000:]


def test_the_api_venv_is_the_lock_without_torch_plus_the_kit(api_tree: Path, src: source.Source) -> None:
    lock = tomllib.loads((src.tree / "backend/uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if "+" not in p["version"]}
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"  # noqa: E501
    proc = in_tree(api_tree, "/app/.venv/bin/python", "-c", code, env=VENV_ENV)
    assert proc.returncode == 0, proc.stderr
    installed = {images.parse_pins(f"{k}=={v}").popitem()[0]: v for k, v in json.loads(proc.stdout).items()}
    for name in (
        "sqlalchemy",
        "psycopg",
        "redis",
        "pyyaml",
        "tomli-w",
        "httpx",
        "uvicorn",
        "starlette",
        "orjson",
    ):
        assert installed[name] == locked[name], f"{name} changed: {installed[name]} (lock {locked[name]})"
    assert "torch" not in installed and "torchvision" not in installed
    assert {"alembic", "mako", "yuxi-k8s", "yuxi"} <= set(installed)


FRESH_BYTECODE = """
import importlib.util, pathlib, struct
app, site = pathlib.Path("/app"), pathlib.Path("/app/.venv/lib/python3.13/site-packages")
stale = []
for folder in (app / "package", app / "server", site / "yuxi_k8s", site / "fastapi"):
    for source in folder.rglob("*.py"):
        pyc = pathlib.Path(importlib.util.cache_from_source(str(source)))
        flags, mtime, size = struct.unpack("<III", pyc.read_bytes()[4:16]) if pyc.exists() else (0, -1, -1)
        st = source.stat()
        if flags == 0 and (mtime, size) != (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF):
            stale.append(str(source))
print(len(stale), *stale[:5])
"""


def test_the_bytecode_is_compiled_and_current(api_tree: Path) -> None:
    """The root is read-only in the pods: a missing or stale .pyc would be compiled again at every start."""
    proc = in_tree(api_tree, "/app/.venv/bin/python", "-c", FRESH_BYTECODE, env=VENV_ENV)
    assert proc.returncode == 0 and proc.stdout.split()[0] == "0", proc.stdout + proc.stderr[-1000:]


def test_every_file_under_app_is_readable_by_any_uid(api_tree: Path) -> None:
    unreadable = []
    for root, dirs, files in os.walk(api_tree / "app"):
        for name in [*dirs, *files]:
            path = Path(root, name)
            if not path.is_symlink() and path.stat().st_mode & 0o444 != 0o444:
                unreadable.append(str(path.relative_to(api_tree)))
    assert not unreadable, unreadable[:10]


def test_the_lock_rewrite_points_at_the_same_bytes(src: source.Source) -> None:
    """Two small wheels from the rewritten lock, downloaded from PyPI, match the lock's hashes."""
    lock, _ = images.pypi_lock((src.tree / "backend/uv.lock").read_text())
    wheels = [w for p in tomllib.loads(lock)["package"] for w in p.get("wheels", []) if w.get("size")]
    for wheel in sorted(wheels, key=lambda w: w["size"])[:2]:
        assert wheel["url"].startswith("https://files.pythonhosted.org/packages/")
        body = httpx.get(wheel["url"], timeout=60, follow_redirects=True).content
        assert "sha256:" + hashlib.sha256(body).hexdigest() == wheel["hash"], wheel["url"]


# --- web, provisioner, postgres, redis, minio ---------------------------------------------------
def wait_for(what: str, check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.3)


def test_web_serves_the_spa_as_101_with_the_manifests_config(
    trees: dict[str, Path], background: Servers
) -> None:
    """The manifests' nginx.conf, its includes pointed at loopback, its ports moved to free ones."""
    tree = trees["web"]
    assert (tree / "usr/share/nginx/html/index.html").is_file()
    assert (tree / "etc/nginx/nginx.conf").read_text() == (
        REPO_ROOT / "base/config/nginx/nginx.conf"
    ).read_text()
    folder = tree / "tmp/web-test"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.chown(folder, 101, 101)
    conf = (REPO_ROOT / "base/config/nginx/nginx.conf").read_text()
    ports = {}
    for listen in sorted(set(re.findall(r"listen (\d+);", conf))):
        ports[listen] = free_port()
        conf = conf.replace(f"listen {listen};", f"listen 127.0.0.1:{ports[listen]};")
    for include in sorted(set(re.findall(r"/etc/nginx/yuxi/([\w.-]+)", conf))):
        conf = conf.replace(f"/etc/nginx/yuxi/{include}", f"/tmp/web-test/{include}")
        # The proxy targets: nothing listens (502); real-ip.conf: empty, as the base ships it.
        body = "" if include == "real-ip.conf" else "proxy_pass http://127.0.0.1:9;\n"
        (folder / include).write_text(body)
    # /dev/std* of a chroot are this test's pipes, which uid 101 may not reopen; a pod's are its own.
    conf = conf.replace("/dev/stderr", "/tmp/web-test/error.log").replace(
        "/dev/stdout", "/tmp/web-test/access.log"
    )
    assert "8080" in ports and "/etc/nginx/yuxi" not in conf and "/dev/std" not in conf
    (folder / "nginx.conf").write_text(conf)
    nginx = ("nginx", "-e", "/tmp/web-test/error.log", "-c", "/tmp/web-test/nginx.conf")
    check = in_tree(tree, *nginx, "-t", user="101:101")
    assert check.returncode == 0, check.stderr + (folder / "error.log").read_text()
    background.start(tree, "101:101", *nginx, "-g", "daemon off;", env=BASE_ENV)
    web = f"http://127.0.0.1:{ports['8080']}"
    index = wait_http(f"{web}/")
    assert index.status_code == 200 and '<div id="app">' in index.text
    assert httpx.get(f"{web}/healthz").text == "ok\n"
    assert httpx.get(f"{web}/agent/some/route").text == index.text, "SPA fallback"
    assert httpx.get(f"{web}/api/system/health").status_code == 502, "/api/ is proxied (to nothing here)"


def test_the_provisioner_serves_health_without_docker_for_memory(
    trees: dict[str, Path], background: Servers
) -> None:
    tree = trees["sandbox-provisioner"]
    block_docker = "import sys; sys.modules['docker'] = None; import app; print(app.backend_name)"
    for backend in ("memory", "kubernetes"):
        env = {**VENV_ENV, "PROVISIONER_BACKEND": backend}
        proc = in_tree(tree, "/bin/sh", "-c", f'cd /app && exec python -c "{block_docker}"', env=env)
        if backend == "memory":
            assert proc.returncode == 0 and proc.stdout.strip() == "memory", proc.stderr[-1500:]
        else:  # builds its client at import: fails for want of a cluster config, never for want of docker
            last = proc.stderr.strip().splitlines()[-1]
            assert "ConfigException" in last and "ImportError" not in proc.stderr, proc.stderr[-1500:]
    port = free_port()
    # The image's command: the kit's entry point, upstream's server unchanged for this backend.
    serve = f"cd /app && exec uvicorn yuxi_k8s_provisioner:app --host 127.0.0.1 --port {port}"
    background.start(
        tree, "10001:10001", "/bin/sh", "-c", serve, env={**VENV_ENV, "PROVISIONER_BACKEND": "memory"}
    )
    health = wait_http(f"http://127.0.0.1:{port}/health")
    assert health.status_code == 200 and health.json()["backend"] == "memory"


def test_postgres_initialises_serves_and_stops_on_sigterm(
    trees: dict[str, Path], background: Servers
) -> None:
    tree = trees["postgres"]
    port = str(free_port())
    shutil.rmtree(tree / "tmp/pg", ignore_errors=True)
    bindir = "/" + next(tree.glob("usr/lib/postgresql/*/bin")).relative_to(tree).as_posix()
    env = {**BASE_ENV, "PATH": f"{bindir}:{BASE_ENV['PATH']}", "PGDATA": "/tmp/pg/pgdata",
           "POSTGRES_USER": "yuxi", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "yuxi_know"}  # fmt: skip
    server = background.start(
        tree, "999:999", "yuxi-postgres", "-p", port, "-c", "listen_addresses=127.0.0.1", env=env
    )
    ready = ("pg_isready", "-h", "127.0.0.1", "-p", port)
    wait_for(
        "pg_isready", lambda: server.poll() is None and in_tree(tree, *ready, user="999:999").returncode == 0
    )
    sql = (
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-U",
        "yuxi",
        "-d",
        "yuxi_know",
        "-Atc",
        "select current_user",
    )
    query = in_tree(tree, *sql, user="999:999", env={**env, "PGPASSWORD": "pw"})
    assert query.returncode == 0 and query.stdout.strip() == "yuxi", query.stderr
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, "SIGTERM must end in a fast shutdown with status 0"


def test_redis_serves_with_its_password(trees: dict[str, Path], background: Servers) -> None:
    tree = trees["redis"]
    port = str(free_port())
    env = {**BASE_ENV, "REDIS_PASSWORD": "pw", "REDIS_DATA_DIR": "/tmp", "REDISCLI_AUTH": "pw"}
    background.start(tree, "999:999", "yuxi-redis", "--port", port, "--bind", "127.0.0.1", env=env)
    ping = ("redis-cli", "-p", port, "ping")
    wait_for("redis PONG", lambda: in_tree(tree, *ping, user="999:999", env=env).stdout.strip() == "PONG", 30)


def test_minio_runs_from_its_scratch_image(trees: dict[str, Path], background: Servers) -> None:
    tree = trees["minio"]
    version = in_tree(tree, "/usr/bin/minio", "--version")
    assert version.returncode == 0 and "DEVELOPMENT.2026-02-12" in version.stdout, version
    assert sorted(p.name for p in tree.iterdir()) == ["data", "etc", "proc", "tmp", "usr"]  # proc: the test's
    port = free_port()
    env = {"HOME": "/tmp", "MINIO_ROOT_USER": "yuxi", "MINIO_ROOT_PASSWORD": "password-of-twelve"}
    addresses = ("--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{free_port()}")
    background.start(tree, "10001:10001", "/usr/bin/minio", "server", "/data", *addresses, env=env)
    assert wait_http(f"http://127.0.0.1:{port}/minio/health/live").status_code == 200


# --- push to a real registry on loopback ----------------------------------------------------------
@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry (distribution 2.x) on 127.0.0.1, installed with apt-get when missing."""
    if shutil.which("docker-registry") is None:
        with contextlib.suppress(apt.AptError):  # not root, or no apt-get: require() names it below
            apt.install(["docker-registry"], recommends=False)
    binary = shutil.which("docker-registry")
    require(binary is not None, "docker-registry (apt-get install docker-registry)")
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [str(binary), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_push_to_a_real_registry_keeps_the_digest(built: dict[str, BuiltImage], local_registry: str) -> None:
    image = built["minio"]
    ref = f"{local_registry}/yuxi-k8s/yuxi-k8s-minio:{image.name.rsplit(':', 1)[1]}"
    first = registry.push(image.archive, ref)
    assert first.digest == image.digest and len(first.uploaded) == 2 and first.present == []
    assert registry.manifest_digest(ref) == image.digest
    again = registry.push(image.archive, ref)
    assert again.digest == image.digest and again.uploaded == [], "a second push finds every blob there"


# --- the overlay machinery ---------------------------------------------------------------------------
def test_a_stage_that_deletes_gives_oci_whiteouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(platform.system() == "Linux" and os.geteuid() == 0, "root on Linux (overlayfs)")
    monkeypatch.setenv("YUXI_K8S_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "base"
    (base / "etc/keep").mkdir(parents=True)
    (base / "etc/gone.conf").write_text("x")
    (base / "etc/keep/a").write_text("a")
    (base / "var/replaced").mkdir(parents=True)
    (base / "var/replaced/old").write_text("old")

    def change(root: Path, log: Path) -> None:
        (root / "etc/gone.conf").unlink()
        shutil.rmtree(root / "var/replaced")
        (root / "var/replaced").mkdir()
        (root / "var/replaced/new").write_text("new")
        (root / "etc/keep/b").write_text("b")

    stage = rootfs.derive(rootfs.base("t", base, "k"), "change", "v1", change)
    with tarfile.open(rootfs.layer(stage).path) as tar:
        names = set(tar.getnames())
    assert {"etc/.wh.gone.conf", "var/replaced/.wh..wh..opq", "var/replaced/new", "etc/keep/b"} <= names
    assert "etc/keep/a" not in names and "etc/gone.conf" not in names
    tree = rootfs.materialize(stage, tmp_path / "tree")
    assert sorted(p.name for p in (tree / "var/replaced").iterdir()) == ["new"]
    assert not (tree / "etc/gone.conf").exists() and (tree / "etc/keep/a").read_text() == "a"
