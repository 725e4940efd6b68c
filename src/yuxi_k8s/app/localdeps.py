"""The application's other dependencies on loopback, for the tests and benchmarks that run its code.

PostgreSQL and Redis come from :mod:`yuxi_k8s.devservices`; what else the real
application talks to is started here, from what the kit builds anyway, each on a
free loopback port and stopped when the ``with`` block ends:

- :func:`minio_server`: the pinned MinIO binary (``scripts/tools.sh minio``, the one
  the kit's MinIO image carries), its data in a folder of the caller's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.app.localrun import LocalRunError, free_port
from yuxi_k8s.pinned_tools import pinned_tool
from yuxi_k8s.procfs import stop_child


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
    from yuxi_k8s.cluster.kube import poll

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

        def ready() -> bool:
            import httpx

            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-500:]
                raise LocalRunError(f"MinIO exited ({proc.returncode}): {tail}")
            try:
                return httpx.get(f"{endpoint.uri}/minio/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        poll(f"MinIO on {endpoint.uri} to be ready", ready, 60, interval=0.3)
        yield endpoint
    finally:
        stop_child(proc)
