"""Subagents changed on one replica are used at once by the other (row 10 of the per-process state).

The application caches its subagents' specs per process and empties that cache only after
its own writes. The kit's test route shows what a replica's agents would use (the app's own
cached read). The route is the kit's, so the application alone cannot be asked the same way;
the test shows its own teeth by reading B's specs before the change (the cache is filled).
"""

from __future__ import annotations

import uuid

from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localrun import Server

HOOKS = {"YUXI_K8S_TEST_HOOKS": "1"}


def _specs(server: Server, auth: dict[str, str]) -> dict[str, str]:
    reply = call(server, "GET", "/api/yuxi-k8s/test/subagent-specs", auth)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["specs"])


def test_a_subagent_changed_on_one_replica_is_used_at_once_by_the_other(servers: StartServer) -> None:
    a, b = servers("a", **HOOKS), servers("b", **HOOKS)
    auth = admin_headers(a)
    _specs(b, auth)  # B's agents have read the specs once: its cache is filled
    name = f"helper-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "description": "first", "system_prompt": "You help.", "tools": []}
    made = call(a, "POST", "/api/system/subagents", auth, json=body)
    assert made.status_code == 200, made.text
    changed = call(a, "PUT", f"/api/system/subagents/{name}", auth, json={"description": "second"})
    assert changed.status_code == 200, changed.text
    assert _specs(b, auth).get(name) == "second"
    assert call(a, "DELETE", f"/api/system/subagents/{name}", auth).status_code == 200
    assert name not in _specs(b, auth)
