"""Fixtures of the tests that run the real application's code (db tier).

``app_runner``: how to start a process of Yuxi-Know itself, from the api image's
file tree (chroot; built and cached by ``yuxi-k8s images build``'s builder), or,
for development only, a Python named by YUXI_K8S_APP_PYTHON. ``kit_db``: a fresh
database of this test with the kit's schema at head, as the migrate Job leaves it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.full_mode import HOLD_WORD, STANDIN_PORT, full_mode_env
from tests.app.http import StartServer
from tests.app.replicas import Replica
from tests.services_fixtures import LoopbackServices
from tests.support import require
from yuxi_k8s import procfs
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.app.localrun import (
    AppRunner,
    LocalRunError,
    Server,
    app_env,
    image_runner,
    kit_database,
)
from yuxi_k8s.cluster.oci import ImageError


@pytest.fixture(scope="session")
def app_runner() -> AppRunner:
    try:
        return image_runner()
    except LocalRunError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def pg_base_url(loopback_services: LoopbackServices) -> str:
    return loopback_services.database_url


@pytest.fixture
def kit_db(pg_base_url: str) -> Iterator[str]:
    """A fresh database with the kit's schema at head; its URL in the app's asyncpg form."""
    with kit_database(pg_base_url) as url:
        yield url


@pytest.fixture
def replicas(app_runner: AppRunner, kit_db: str, tmp_path: object) -> Iterator[list[Replica]]:
    """Start-on-demand settings replicas of the real app against this test's database."""
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


@pytest.fixture
def servers(app_runner: AppRunner, kit_db: str, tmp_path: Path) -> Iterator[StartServer]:
    """Start replicas of the real API (uvicorn) on loopback sharing this test's database and
    saves/: ``start(name, kit=True, **env)``; all are stopped (SIGTERM) afterwards."""
    started: list[Server] = []

    def start(name: str, *, kit: bool = True, **env: str) -> Server:
        saves = tmp_path / "saves"
        saves.mkdir(exist_ok=True)
        server = Server(app_runner, app_env(kit_db, saves, **env), tmp_path / f"{name}.log", kit=kit)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.terminate()


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioEndpoint]:
    """MinIO on loopback (the pinned binary the kit's MinIO image carries), for the app's objects."""
    from yuxi_k8s.app.localdeps import minio_server

    folder = tmp_path_factory.mktemp("minio")
    try:
        with minio_server(folder / "data", folder / "minio.log") as endpoint:
            yield endpoint
    except LocalRunError as exc:
        require(False, str(exc))


def _image_tree(name: str) -> Path:
    try:
        from yuxi_k8s.app import images, source

        return images.image_tree(source.resolve(), name)
    except LocalRunError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def milvus_tree() -> Path:
    return _image_tree("milvus")


@pytest.fixture(scope="session")
def provisioner_tree() -> Path:
    """The sandbox-provisioner image's file tree (the application's provisioner)."""
    return _image_tree("sandbox-provisioner")


@pytest.fixture(scope="session")
def milvus_uri(milvus_tree: Path) -> Iterator[str]:
    """The e2e tier's Milvus (the milvus image's server) on loopback, for the app's knowledge bases."""
    from yuxi_k8s.app.localdeps import milvus_server

    with milvus_server(milvus_tree) as uri:
        yield uri


@contextlib.contextmanager
def _standin(port: int, log: Path) -> Iterator[str]:
    """The kit's model stand-in on 127.0.0.1:*port* (where the app's catalogue sends a model)."""
    from yuxi_k8s.cluster.kube import poll

    with socket.socket() as probe:
        free = probe.connect_ex(("127.0.0.1", port)) != 0
    require(free, f"port {port} on loopback (a model URL of the app's catalogue) is taken by another process")
    args = [sys.executable, "-m", "yuxi_k8s.probes.model_standin", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--chunk-delay", "0", "--hold-word", HOLD_WORD]
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            assert proc.poll() is None, log.read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        poll(f"the model stand-in on port {port} to listen", listening, 30, interval=0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(httpx.HTTPError):  # a held embedding would keep a process waiting
            httpx.post(f"http://127.0.0.1:{port}/hold/release", timeout=5)
        procfs.stop_child(proc)


@pytest.fixture(scope="session")
def model_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-in where the app's ``vllm/...`` models and (full_mode_env) the ``openai`` provider point."""
    with _standin(STANDIN_PORT, tmp_path_factory.mktemp("standin") / "standin.log") as url:
        yield url


OLLAMA_PORT = 11434


@pytest.fixture(scope="session")
def ollama_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second stand-in where the app's ``ollama/...`` embedding models point (another model)."""
    with _standin(OLLAMA_PORT, tmp_path_factory.mktemp("ollama") / "standin.log") as url:
        yield url


@pytest.fixture(scope="session")
def neo4j_tree() -> Path:
    try:
        from yuxi_k8s.app import images, source

        return images.image_tree(source.resolve(), "neo4j")
    except (LocalRunError, ImageError) as exc:
        require(False, f"the neo4j image tree: {exc}")
        raise


@pytest.fixture(scope="module")
def neo4j(neo4j_tree: Path) -> Iterator[dict[str, Any]]:
    """The kit's neo4j image on loopback, one per test module (the graph's vector index is one per
    database, made by the first upload): ``uri``, ``user``, ``password`` (and ``start_s``)."""
    from yuxi_k8s.app.localdeps import neo4j_server

    started = time.monotonic()
    with neo4j_server(neo4j_tree) as (uri, user, password):
        yield {"uri": uri, "user": user, "password": password, "start_s": time.monotonic() - started}


@pytest.fixture(scope="module")
def graph_env(minio: MinioEndpoint, milvus_uri: str, neo4j: dict[str, Any]) -> dict[str, str]:
    """Full mode with every store on loopback: MinIO, Milvus and Neo4j (LightRAG, the graph service)."""
    return full_mode_env(milvus_uri, minio, neo4j)
