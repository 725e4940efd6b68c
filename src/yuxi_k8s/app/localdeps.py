"""The application's dependencies on loopback, started from the kit's own images' file trees.

For the db-tier tests and benchmarks that run the application's code against a real
dependency without a cluster (:mod:`yuxi_k8s.app.localrun` runs the application itself)::

    from yuxi_k8s.app import images, localdeps, source

    tree = images.image_tree(source.resolve(), "neo4j")
    with localdeps.neo4j_server(tree) as (uri, user, password):
        ...  # bolt://127.0.0.1:PORT, neo4j, a fresh password

Milvus (:func:`milvus_server`) is the milvus image's entry point (``yuxi-milvus``:
milvus-lite's gRPC server, see src/yuxi_k8s/app/imagefiles/yuxi-milvus) run in its tree by
:func:`yuxi_k8s.app.localrun.chroot_runner`. MinIO (:func:`minio_server`) is the pinned
binary the kit's MinIO image carries (``scripts/tools.sh minio``), run directly on the host.

Each other server runs the image's own entry point as the image's user, ``chroot`` into the tree
in a private mount namespace (the host's ``/tmp`` and a ``/proc``), on a free loopback port,
with its data in a fresh folder under ``/tmp`` that is removed when the block ends. Needs
root on Linux (``unshare``, ``chroot``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yuxi_k8s import paths, procfs
from yuxi_k8s.app.images import (
    NEO4J_COMMAND,
    NEO4J_JVM_MEMORY,
    NEO4J_UID,
    PROVISIONER_COMMAND,
    PYTHON_ENV,
    VENV_PATH,
)
from yuxi_k8s.app.localrun import LocalRunError, chroot_runner, free_port
from yuxi_k8s.cluster.oci import DEFAULT_PATH
from yuxi_k8s.pinned_tools import pinned_tool

MILVUS_ENTRYPOINT = ("yuxi-milvus",)
PROVISIONER_USER = "10001:10001"  # the sandbox-provisioner image's user and working directory
PROVISIONER_DIR = "/app"
PUBLISHED_MILVUS_LITE = ("milvus-lite", "server")  # without the kit's mends, to show what they mend
NEO4J_USER = "neo4j"
NEO4J_READY = "neo4j: ready"  # the launcher's line once Bolt listens


def _chrooted(tree: Path, user: str) -> list[str]:
    """The command prefix that runs what follows in *tree* as *user* (``uid:gid``)."""
    missing = [tool for tool in ("unshare", "chroot", "mount") if shutil.which(tool) is None]
    if missing:
        raise LocalRunError(f"running an image tree needs {', '.join(missing)} (util-linux)")
    if os.geteuid() != 0:
        raise LocalRunError("running an image tree needs root (unshare, mount, chroot)")
    script = (
        'set -e; t="$1"; u="$2"; shift 2; '
        'mount --bind /tmp "$t/tmp"; '
        'mount -t proc proc "$t/proc"; '
        'exec chroot --userspec="$u" "$t" "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", str(tree), user]


def neo4j_command(tree: Path) -> list[str]:
    """The neo4j image's entry point, run in *tree* (``images.image_tree(src, "neo4j")``) as its user."""
    launcher = tree / "opt/neo4j/launcher/Launcher.class"
    if not launcher.is_file():
        raise LocalRunError(f"{tree} is not a neo4j image tree ({launcher} missing)")
    return [*_chrooted(tree, f"{NEO4J_UID}:{NEO4J_UID}"), *NEO4J_COMMAND]


def _tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def wait_http_ready(
    proc: subprocess.Popen[Any], log: Path, url: str, what: str, timeout: float, *, interval: float = 0.3
) -> None:
    """Poll ``GET url`` until it answers 200; LocalRunError with *log*'s tail when *proc* exits
    first or *timeout* runs out (one wait for every server started here and in the tests)."""
    import httpx

    from yuxi_k8s.cluster.kube import poll

    def ready() -> bool:
        if proc.poll() is not None:
            raise LocalRunError(f"{what} exited ({proc.returncode}):\n{_tail(log)}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll(f"{what} on {url}", ready, timeout, interval=interval)
    except TimeoutError as exc:
        raise LocalRunError(f"{exc}:\n{_tail(log)}") from None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def neo4j_server(tree: Path, *, timeout: float = 240) -> Iterator[tuple[str, str, str]]:
    """The neo4j image's launcher on a free loopback port: ``(bolt URI, user, password)``.

    *tree* is ``images.image_tree(src, "neo4j")``. Its log is ``neo4j.log`` beside the data
    folder while it runs; a server that exits or does not answer within *timeout* seconds
    is a :class:`LocalRunError` with the log's last lines.
    """
    from yuxi_k8s.cluster.kube import poll

    command = neo4j_command(tree)
    port = free_port()
    password = secrets.token_urlsafe(18)
    work = Path(tempfile.mkdtemp(prefix="yuxi-neo4j-", dir="/tmp"))
    work.chmod(0o755)  # the server's user passes through to its data
    data = work / "data"
    data.mkdir()
    os.chown(data, NEO4J_UID, NEO4J_UID)
    log = work / "neo4j.log"
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "JDK_JAVA_OPTIONS": NEO4J_JVM_MEMORY,
        "NEO4J_AUTH": f"{NEO4J_USER}/{password}",
        "NEO4J_server_bolt_listen__address": f"127.0.0.1:{port}",
        "NEO4J_DATA": str(data),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise LocalRunError(f"neo4j exited ({proc.returncode}):\n{_tail(log)}")
            return NEO4J_READY in log.read_text(errors="replace") and _listening(port)

        try:
            poll(f"neo4j on 127.0.0.1:{port}", ready, timeout, interval=0.5)
        except TimeoutError as exc:
            raise LocalRunError(f"{exc}:\n{_tail(log)}") from None
        yield f"bolt://127.0.0.1:{port}", NEO4J_USER, password
    finally:
        procfs.stop_child(proc, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class MinioEndpoint:
    uri: str
    access_key: str
    secret_key: str

    def app_env(self) -> dict[str, str]:
        """What the application reads (``yuxi/storage/minio/client.py``)."""
        return {
            "MINIO_URI": self.uri,
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
        }


def _minio_binary() -> Path:
    binary = pinned_tool("minio")
    if binary is None:
        built = subprocess.run(
            [str(paths.repo_root() / "scripts" / "tools.sh"), "minio"], capture_output=True, text=True
        )
        binary = pinned_tool("minio")
        if built.returncode != 0 or binary is None:
            tail = (built.stdout + built.stderr).strip().splitlines()[-2:]
            raise LocalRunError(f"scripts/tools.sh minio built no MinIO: {' | '.join(tail)}")
    return binary


@contextlib.contextmanager
def minio_server(data_dir: Path, log: Path) -> Iterator[MinioEndpoint]:
    """MinIO on a free loopback port with random credentials, serving *data_dir*."""
    binary = _minio_binary()
    port, console = free_port(), free_port()
    endpoint = MinioEndpoint(f"http://127.0.0.1:{port}", "yuxi-test", secrets.token_hex(16))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data_dir),
        "MINIO_ROOT_USER": endpoint.access_key,
        "MINIO_ROOT_PASSWORD": endpoint.secret_key,
        "MINIO_BROWSER": "off",
    }
    args = [str(binary), "server", str(data_dir), "--address", f"127.0.0.1:{port}"]
    args += ["--console-address", f"127.0.0.1:{console}", "--quiet"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http_ready(proc, log, f"{endpoint.uri}/minio/health/ready", "MinIO", 60)
        yield endpoint
    finally:
        procfs.stop_child(proc)


@contextlib.contextmanager
def milvus_server(
    tree: Path,
    data_dir: Path | None = None,
    *,
    entrypoint: Sequence[str] = MILVUS_ENTRYPOINT,
    timeout: float = 60,
) -> Iterator[str]:
    """milvus-lite's server from the milvus image *tree* on a free loopback port; yields its URI.

    *data_dir* (a path under /tmp, which the chroot shares with this host) keeps the data
    across servers, e.g. to start a second one on what the first wrote; by default a
    fresh folder removed afterwards. The server's output is in ``<data_dir>.log``.
    """
    from yuxi_k8s.cluster.kube import poll

    runner = chroot_runner(tree)
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="yuxi-milvus-"))) / "data"
        port = free_port()
        log_path = data_dir.parent / f"{data_dir.name}.log"
        log = stack.enter_context(log_path.open("a"))
        args = [*entrypoint, "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
        proc = runner.popen(args, {}, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(procfs.stop_child, proc)

        def listening() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{' '.join(entrypoint)} exited ({proc.returncode}): {' | '.join(tail)}")
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex(("127.0.0.1", port)) == 0

        poll(f"{' '.join(entrypoint)} to listen on 127.0.0.1:{port}", listening, timeout, interval=0.2)
        yield f"http://127.0.0.1:{port}"


def provisioner_command(tree: Path, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """*args* as the sandbox-provisioner image runs a command from *tree* (its user, working
    directory and Python environment; memory backend): the command line and its environment."""
    if not (tree / PROVISIONER_DIR.lstrip("/") / "app.py").is_file():
        raise LocalRunError(
            f"{tree} is not a sandbox-provisioner image tree ({PROVISIONER_DIR}/app.py missing)"
        )
    image_env = dict(item.split("=", 1) for item in (VENV_PATH, *PYTHON_ENV))
    command = [*_chrooted(tree, PROVISIONER_USER), "/usr/bin/env", "-C", PROVISIONER_DIR, *args]
    return command, {**image_env, "PROVISIONER_BACKEND": "memory"}


@contextlib.contextmanager
def provisioner_server(
    tree: Path, log: Path, env: Mapping[str, str] | None = None, *, timeout: float = 60
) -> Iterator[str]:
    """The sandbox-provisioner image's server (its command: the kit's entry point over upstream's
    ``app.py``) from *tree* (``images.image_tree(src, "sandbox-provisioner")``) on a free
    loopback port; yields its URL.

    The application's provisioner with its memory backend by default (``PROVISIONER_BACKEND``;
    *env* adds to or overrides its variables, e.g. ``SANDBOX_IDLE_TIMEOUT_SECONDS``): it keeps the
    sandboxes' records and reaps idle ones, no container runs. Its output goes to *log*.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = [*PROVISIONER_COMMAND[:2], "--host", "127.0.0.1", "--port", str(port)]
    command, image_env = provisioner_command(tree, server)
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            env={**image_env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http_ready(proc, log, f"{url}/health", "the sandbox provisioner", timeout)
        yield url
    finally:
        procfs.stop_child(proc)


__all__ = [
    "MILVUS_ENTRYPOINT",
    "NEO4J_READY",
    "NEO4J_USER",
    "MinioEndpoint",
    "milvus_server",
    "minio_server",
    "neo4j_command",
    "neo4j_server",
    "provisioner_command",
    "provisioner_server",
    "wait_http_ready",
]
