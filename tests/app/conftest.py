"""Fixtures of the tests that run the real application's code (db tier).

``app_runner``: how to start a process of Yuxi-Know itself, from the api image's
file tree (chroot; built and cached by ``yuxi-k8s images build``'s builder), or,
for development only, a Python named by YUXI_K8S_APP_PYTHON. ``kit_db``: a fresh
database of this test with the kit's schema at head, as the migrate Job leaves it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.app.replicas import Replica
from tests.services_fixtures import LoopbackServices
from tests.support import require
from yuxi_k8s import migrations
from yuxi_k8s.app.localrun import AppRunner, LocalRunError, chroot_runner, host_runner
from yuxi_k8s.state.db_backend import make_engine
from yuxi_k8s.state.settings import libpq_url


@pytest.fixture(scope="session")
def app_runner() -> AppRunner:
    try:
        runner = host_runner()
        if runner is not None:
            return runner
        from yuxi_k8s.app import images, source

        tree = images.api_tree(source.resolve())
        return chroot_runner(tree)
    except LocalRunError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def pg_base_url(loopback_services: LoopbackServices) -> str:
    return loopback_services.database_url


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5)


@pytest.fixture
def kit_db(pg_base_url: str) -> Iterator[str]:
    """A fresh database with the kit's schema at head; its URL in the app's asyncpg form."""
    name = f"yuxi_app_{uuid.uuid4().hex[:10]}"
    head = pg_base_url.rpartition("/")[0]
    with _admin(pg_base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{head}/{name}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    try:
        yield url.replace("postgresql+psycopg://", "postgresql+asyncpg://", 1)
    finally:
        with _admin(pg_base_url) as conn, contextlib.suppress(psycopg.Error):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def replicas(app_runner: AppRunner, kit_db: str, tmp_path: object) -> Iterator[list[Replica]]:
    """Start-on-demand settings replicas of the real app against this test's database."""
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()
