"""Read your writes across replicas of the real application: a browser going round-robin saves a
setting on A and reads the settings on B at once; B must show the save.

With ``yuxi-k8s-app`` each request first brings the replica's settings up to every change
committed before it started (one query when nothing is new); without that step B answers from
the copy the change feed updates, some milliseconds behind. (The application alone never
hears of A's save at all: each replica keeps its own ``base.toml`` copy in memory.)
"""

from __future__ import annotations

import time

import httpx

from tests.app.http import StartServer, admin_headers
from yuxi_k8s.app.localrun import Server

PAIRS = 1000
KEY = "sandbox_exec_timeout_seconds"  # an int setting nothing in these tests depends on


def _stale_pairs(writer: Server, reader: Server, auth: dict[str, str], pairs: int) -> tuple[int, list[float]]:
    stale, write_s = 0, []
    with httpx.Client(headers=auth, timeout=30) as client:
        for i in range(pairs):
            a, b = (writer, reader) if i % 2 == 0 else (reader, writer)
            value = 100 + i
            t0 = time.perf_counter()
            saved = client.post(a.url + "/api/system/config", json={"key": KEY, "value": value})
            write_s.append(time.perf_counter() - t0)
            assert saved.status_code == 200, saved.text
            seen = client.get(b.url + "/api/system/config")
            assert seen.status_code == 200, seen.text
            stale += seen.json().get(KEY) != value
    return stale, write_s


def test_a_save_on_one_replica_is_read_at_once_on_the_other(servers: StartServer) -> None:
    a, b = servers("a"), servers("b")
    auth = admin_headers(a)
    stale, write_s = _stale_pairs(a, b, auth, PAIRS)
    p50_ms = sorted(write_s)[len(write_s) // 2] * 1000
    print(f"settings read-your-writes: {stale} stale of {PAIRS}; save p50 {p50_ms:.1f} ms")
    assert stale == 0
