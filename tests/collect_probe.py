"""A pytest plugin for tests/static/test_harness.py: after collection, one JSON line per test with
its markers and the fixtures it uses (``python -m pytest --collect-only -p tests.collect_probe``)."""

from __future__ import annotations

import json

import pytest

PREFIX = "COLLECTED "


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        markers = sorted({m.name for m in item.iter_markers()})
        fixtures = sorted(getattr(item, "fixturenames", []))
        print(PREFIX + json.dumps({"id": item.nodeid, "markers": markers, "fixtures": fixtures}))
