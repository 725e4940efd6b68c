"""Run the real application's processes on this host, from its image's file tree, on loopback.

The db-tier tests and the benchmarks exercise Yuxi-Know's own code (its
``Config``, its task service, its HTTP API under uvicorn) without a cluster:
``chroot`` into the api image's file tree (built and cached by
:mod:`yuxi_k8s.app.images`), in a private mount namespace where

- ``/mnt/yuxi-k8s`` is this checkout (``PYTHONPATH`` puts its ``src`` first, so the
  kit code under test is the checkout's, not the wheel baked into the image);
- ``/tmp`` is the host's ``/tmp`` (a test's ``tmp_path`` is the same path inside);
- ``/proc`` is mounted, the network is the host's (loopback PostgreSQL and Redis).

The mounts vanish with the process. Needs root on Linux (``unshare``, ``chroot``).
For development without root, ``YUXI_K8S_APP_PYTHON`` (a Python whose environment
has the application's dependencies) and ``YUXI_K8S_APP_DIR`` (its ``backend``
folder) run the same commands directly; ``YUXI_K8S_APP_TREE`` names an api image tree
already built (worktrees of one kit share it instead of each building its own). CI always
uses the image tree of the checkout's own build.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import paths

KIT_MOUNT = "/mnt/yuxi-k8s"
APP_DIR = "/app"
APP_PYTHON = "/app/.venv/bin/python"
PYTHON_ENV = "YUXI_K8S_APP_PYTHON"
APP_DIR_ENV = "YUXI_K8S_APP_DIR"
# A prebuilt api image tree to use instead of building the checkout's: several checkouts of one
# kit (worktrees) can share it, since the kit code under test comes from the checkout anyway.
TREE_ENV = "YUXI_K8S_APP_TREE"
# What the app needs and the host's environment must not leak into (proxies, the kit's own venv).
_PASSED = ("PATH", "LANG", "TZ")


class LocalRunError(RuntimeError):
    """The application's environment cannot be entered here; the message says what is missing."""


@dataclass(frozen=True)
class AppRunner:
    """How to start a process of the application: a command prefix and the paths it sees."""

    prefix: tuple[str, ...]  # before "python ..." (chroot wrapper, or empty)
    python: str
    app_dir: str  # working directory of the app's processes (has server/ and package/)
    kit_src: str  # the kit's src/ as the process sees it
    tree: Path | None = None

    def in_checkout(self, rel: str) -> str:
        """A file of the checkout (e.g. a test's helper script) as the process sees it."""
        return f"{Path(self.kit_src).parent}/{rel}"

    def command(self, args: Sequence[str]) -> list[str]:
        """*args* (``python``, ``yuxi-k8s-app``, ``uvicorn``... or a script path) as a full command line."""
        return [*self.prefix, *args]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        base = {k: os.environ[k] for k in _PASSED if k in os.environ}
        venv_bin = str(Path(self.python).parent)
        base["PATH"] = f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        base["HOME"] = "/tmp"
        base["PYTHONPATH"] = self.kit_src
        base["PYTHONDONTWRITEBYTECODE"] = "1"
        return {**base, **env}

    def popen(self, args: Sequence[str], env: Mapping[str, str], **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            self.command(args), env=self.environment(env), text=True, **kw
        )

    def run(
        self, args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args),
            env=self.environment(env),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=check,
        )


def chroot_runner(tree: Path) -> AppRunner:
    """Processes in *tree* (the api image's file tree), with the checkout and /tmp mounted."""
    missing = [tool for tool in ("unshare", "chroot", "mount") if shutil.which(tool) is None]
    if missing:
        raise LocalRunError(f"running the application's image tree needs {', '.join(missing)} (util-linux)")
    if os.geteuid() != 0:
        raise LocalRunError("running the application's image tree needs root (unshare, mount, chroot)")
    # lexists: the venv's python is a symlink to an absolute path inside the tree.
    if not os.path.lexists(tree / APP_PYTHON.lstrip("/")):
        raise LocalRunError(f"{tree} is not an api image tree ({APP_PYTHON} missing)")
    (tree / KIT_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    script = (
        'set -e; t="$1"; shift; '
        f'mount --bind "{paths.repo_root()}" "$t{KIT_MOUNT}"; '
        'mount --bind /tmp "$t/tmp"; '
        'mount -t proc proc "$t/proc"; '
        f'exec chroot "$t" /usr/bin/env -C {APP_DIR} "$@"'
    )
    prefix = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", str(tree))
    return AppRunner(prefix, APP_PYTHON, APP_DIR, f"{KIT_MOUNT}/src", tree)


def host_runner() -> AppRunner | None:
    """The development shortcut (YUXI_K8S_APP_PYTHON / YUXI_K8S_APP_DIR), or None."""
    python = os.environ.get(PYTHON_ENV, "").strip()
    app_dir = os.environ.get(APP_DIR_ENV, "").strip()
    if not python:
        return None
    if not app_dir or not Path(app_dir, "server", "main.py").is_file():
        raise LocalRunError(f"{PYTHON_ENV} is set: {APP_DIR_ENV} must name the app's backend folder")
    prefix = ("/usr/bin/env", "-C", app_dir)
    return AppRunner(prefix, python, app_dir, str(paths.repo_root() / "src"))


def image_runner() -> AppRunner:
    """The development shortcuts when set (``YUXI_K8S_APP_PYTHON``, ``YUXI_K8S_APP_TREE``), else the
    api image's tree of the pinned source (``yuxi-k8s images build``'s builder, cached): what the
    app tests and benchmarks run."""
    found = host_runner()
    if found is not None:
        return found
    shared_tree = os.environ.get(TREE_ENV, "").strip()
    if shared_tree:
        return chroot_runner(Path(shared_tree))
    from yuxi_k8s.app import images, source

    return chroot_runner(images.api_tree(source.resolve()))


def admin_headers(server: Server, user_id: str, password: str) -> dict[str, str]:
    """Make the site's first admin if it has none, log in, return the bearer header."""
    import httpx

    if httpx.get(server.url + "/api/auth/check-first-run", timeout=10).json().get("first_run"):
        made = httpx.post(
            server.url + "/api/auth/initialize", json={"user_id": user_id, "password": password}, timeout=30
        )
        made.raise_for_status()
    form = {"username": user_id, "password": password}
    answer = httpx.post(server.url + "/api/auth/token", data=form, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@contextlib.contextmanager
def kit_database(base_url: str, prefix: str = "yuxi_app") -> Iterator[str]:
    """A fresh database beside *base_url*'s with the kit's schema at head, dropped afterwards;
    its URL in the application's asyncpg form (what ``POSTGRES_URL`` holds in the pods)."""
    import psycopg

    from yuxi_k8s import migrations
    from yuxi_k8s.state.db_backend import make_engine
    from yuxi_k8s.state.settings import libpq_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(base_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base_url.rpartition('/')[0]}/{name}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    try:
        yield url.replace("postgresql+psycopg://", "postgresql+asyncpg://", 1)
    finally:
        with (
            psycopg.connect(libpq_url(base_url), autocommit=True, connect_timeout=5) as conn,
            contextlib.suppress(psycopg.Error),
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_env(db_url: str, save_dir: Path, **extra: str) -> dict[str, str]:
    """The environment the manifests give the api container, for loopback."""
    return {
        "POSTGRES_URL": db_url,
        "SAVE_DIR": str(save_dir),
        "CONFIG_MODE": "database",
        "LITE_MODE": "true",
        "RUNNING_IN_DOCKER": "true",
        "MODEL_DIR_IN_DOCKER": "/tmp/models",
        "OPENAI_API_KEY": "stand-in",
        "JWT_SECRET_KEY": "e2e-shared-secret",
        "LANGGRAPH_CHECKPOINTER_BACKEND": "postgres",
        "SANDBOX_PROVISIONER_URL": "http://127.0.0.1:9",
        "YUXI_K8S_LOG_DIR": str(save_dir.parent / "process-logs"),  # each process's log, beside saves/
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """A process of the application on loopback, its output in *log*."""

    def __init__(self, runner: AppRunner, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._log = log.open("w")
        self.proc = runner.popen(args, env, stdout=self._log, stderr=subprocess.STDOUT)

    def check_running(self, what: str = "process") -> None:
        """AssertionError with the log's tail if the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{what} exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 120) -> None:
        """SIGTERM, as the kubelet sends it, and wait for the process to end."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        self._log.close()


class Server(AppProcess):
    """The real API under uvicorn on loopback: through yuxi-k8s-app, or plain (the baseline)."""

    def __init__(self, runner: AppRunner, env: Mapping[str, str], log: Path, *, kit: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        uvicorn = ["uvicorn", "server.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(runner, ["yuxi-k8s-app", *uvicorn] if kit else uvicorn, env, log)

    def wait_ready(self, timeout: float = 240) -> None:
        import httpx

        from yuxi_k8s.cluster.kube import poll

        def ready() -> bool:
            self.check_running("server")
            try:
                return httpx.get(self.url + "/api/system/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        poll(f"the app on {self.url} to answer", ready, timeout, interval=0.5)


class Worker(AppProcess):
    """The app's ARQ worker on loopback as the worker Deployment runs it (``yuxi-k8s-app arq ...``):
    it takes the agent runs the api queued in Redis and writes their events back there. arq has no
    readiness signal; a queued job waits for it."""

    COMMAND = ("yuxi-k8s-app", "arq", "server.worker_main.WorkerSettings")

    def __init__(self, runner: AppRunner, env: Mapping[str, str], log: Path) -> None:
        super().__init__(runner, self.COMMAND, env, log)
