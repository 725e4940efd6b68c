"""Test tiers and the rule that nothing is skipped in silence.

Tiers follow the folder: tests/static -> ``static``, tests/state -> ``db``,
tests/cluster and tests/e2e -> ``cluster``. They run in that order, so the
slow cluster tier comes last and a broken render fails fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the tiers need, set up only when a collected test needs it: the kube_cluster fixture
# (tests/kube_fixtures.py; builds and starts a cluster) and the loopback PostgreSQL and Redis for
# tests marked db (tests/services_fixtures.py). A static run starts and builds none of it.
pytest_plugins = ["tests.kube_fixtures", "tests.services_fixtures"]

TIER_BY_FOLDER = {"static": "static", "state": "db", "app": "db", "cluster": "cluster", "e2e": "cluster"}
TIER_ORDER = {"static": 0, "db": 1, "cluster": 2}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-cluster",
        action="store_true",
        help="leave the cluster (and e2e namespaces) running after the tests, for debugging",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT / "tests")
        tier = TIER_BY_FOLDER.get(rel.parts[0]) if len(rel.parts) > 1 else None
        # A test that names its tier explicitly keeps it (e.g. tests/e2e/test_server_local.py is db).
        if tier and not any(m.name in TIER_ORDER for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=_tier_rank)


def _tier_rank(item: pytest.Item) -> int:
    return min((TIER_ORDER[m.name] for m in item.iter_markers() if m.name in TIER_ORDER), default=0)
