"""The loopback services are tied to their checkout (yuxi_k8s.devservices), with real servers.

`make test` leaves its PostgreSQL and Redis running for the next session. A clone deleted with its
services still running (a temporary clone, as CI uses) must not keep the next clone elsewhere off
the ports; the services of a clone that still exists must not be touched by another clone.
Each test runs its own servers on free ports, so the session's services are never involved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.state import helpers
from yuxi_k8s import procfs
from yuxi_k8s.devservices import SHARED_PG_ROOT, DevServices, ServicesError

pytestmark = pytest.mark.db


@pytest.fixture
def clones(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for clones. Open to the ``postgres`` user (PostgreSQL keeps its data in the clone)
    or closed to it (as root: the data goes under SHARED_PG_ROOT), by the test's parameter."""
    base = Path(tempfile.mkdtemp(prefix="yuxi-clones-", dir="/tmp"))
    base.chmod(0o755 if request.param == "data in the clone" else 0o700)
    made: list[DevServices] = []
    request.node.made = made
    yield base
    # Whatever a failing test left: the servers on this test's own ports, and their data.
    for services in made:
        for port in (services.pg_port, services.redis_port):
            ours = [p for p in procfs.listening_pids(port) if procfs.alive(p, "postgres|redis-server")]
            procfs.terminate(ours, first=signal.SIGQUIT)
        shared = _shared_folder(services)
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


def _shared_folder(services: DevServices) -> Path | None:
    for path in SHARED_PG_ROOT.glob("*/owner") if SHARED_PG_ROOT.exists() else ():
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(services.run):
                return path.parent
    return None


def _clone(base: Path, name: str, ports: tuple[int, int], request: pytest.FixtureRequest) -> DevServices:
    run = base / name / ".run"
    run.mkdir(parents=True)
    services = DevServices(run, pg_port=ports[0], redis_port=ports[1])
    request.node.made.append(services)
    return services


def _answers(url: str, redis_url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return bool(redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping())
    except (psycopg.Error, redis.RedisError):
        return False


PLACES = ["data in the clone", "data under /var/lib"]


@pytest.mark.parametrize("clones", PLACES, indirect=True)
def test_a_deleted_clones_services_give_their_ports_to_the_next_clone(
    clones: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["clones"] == PLACES[1] and os.geteuid() != 0:
        pytest.skip("only root keeps PostgreSQL data under /var/lib")
    ports = (helpers.free_port(), helpers.free_port())
    first = _clone(clones, "first", ports, request)
    first.up()
    left = procfs.listening_pids(ports[0]) | procfs.listening_pids(ports[1])
    shared = _shared_folder(first)
    assert (shared is not None) == (request.node.callspec.params["clones"] == PLACES[1])

    shutil.rmtree(clones / "first")  # the clone is deleted; its servers run on
    assert all(procfs.alive(pid) for pid in left) and len(left) == 2

    second = _clone(clones, "second", ports, request)
    endpoints = second.up()  # before the fix: "something else answers on 127.0.0.1:<port>"
    assert _answers(endpoints.database_dsn, endpoints.redis_url)
    assert not any(procfs.alive(pid) for pid in left)
    assert shared is None or not shared.exists()  # the deleted clone's data went with its server

    # A clone that still exists keeps its services: a third one on the same ports is refused.
    third = _clone(clones, "third", ports, request)
    with pytest.raises(ServicesError, match="something else answers"):
        third.up()
    assert _answers(endpoints.database_dsn, endpoints.redis_url)
    second.down()
