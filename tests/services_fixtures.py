"""The loopback PostgreSQL and Redis (``yuxi_k8s.devservices``), started only for the tests that
need them.

- ``loopback_services`` (session): starts this checkout's services (or finds them running:
  ``up`` is idempotent), exports ``YUXI_TEST_DATABASE_URL`` / ``YUXI_TEST_DATABASE_DSN`` /
  ``YUXI_TEST_REDIS_URL`` into the environment (for fixtures, the code under test and the
  subprocesses that read them) and returns a :class:`LoopbackServices`: the URLs and the
  failure helpers (``restart_postgres``, ``stop_redis``, ``start_redis``).
- A test marked ``db`` (every test under tests/state, and those that say so) gets them before
  any of its fixtures is set up, so fixtures that read the variables work unchanged.

A session that collects no such test starts nothing. Where the services cannot be had (not root
and not installed, no apt), each such test fails with the reason where tests must run (CI, root
on Linux) and is skipped with it elsewhere (``tests.support.require``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.support import require
from yuxi_k8s.devservices import DevServices, Endpoints, ServicesError


@dataclass(frozen=True)
class LoopbackServices:
    endpoints: Endpoints
    control: DevServices

    @property
    def database_url(self) -> str:
        return self.endpoints.database_url

    @property
    def database_dsn(self) -> str:
        return self.endpoints.database_dsn

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url

    def restart_postgres(self) -> None:
        self.control.restart_postgres()

    def stop_redis(self) -> None:
        self.control.stop_redis()

    def start_redis(self) -> None:
        self.control.start_redis()


# Started at most once per session; a failure is kept so every test that needs them says why.
_STATE: dict[str, LoopbackServices | str] = {}


def start_loopback_services() -> LoopbackServices:
    if "services" not in _STATE:
        try:
            control = DevServices()
            started = LoopbackServices(control.up(), control)
        except ServicesError as exc:
            _STATE["services"] = f"the loopback PostgreSQL and Redis ({exc})"
        else:
            os.environ.update(started.endpoints.env())
            _STATE["services"] = started
    found = _STATE["services"]
    if isinstance(found, str):
        require(False, found)
        raise AssertionError(found)  # require() fails or skips; never reached
    return found


@pytest.fixture(scope="session")
def loopback_services() -> LoopbackServices:
    return start_loopback_services()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("db") is not None:
        start_loopback_services()
