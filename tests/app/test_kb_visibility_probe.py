"""The knowledge-base visibility probe (yuxi_k8s.probes.kb_visibility) against two replicas of the
real application on loopback: what the e2e tier runs in a pod, checked here where it is cheap."""

from __future__ import annotations

from tests.app.full_mode import EMBED_MODEL, full_mode_env
from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.probes import kb_visibility


def test_every_base_the_probe_makes_is_timed_on_the_other_replica_and_deleted_again(
    servers: StartServer, minio: MinioEndpoint, milvus_uri: str, model_standin: str
) -> None:
    env = full_mode_env(milvus_uri, minio)
    a, b = servers("a", **env), servers("b", **env)
    auth = admin_headers(a)
    token = auth["Authorization"].removeprefix("Bearer ")
    pods = {"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}
    result = kb_visibility.run(pods, token, EMBED_MODEL, count=4, prefix="probe", timeout=10)
    assert result["missed"] == 0, result["rounds"]
    assert [r["writer"] for r in result["rounds"]] == ["a", "b", "a", "b"]
    assert all(len(r["seen_after_s"]) == 1 for r in result["rounds"])
    assert result["p99_s"] is not None and result["p99_s"] <= result["max_s"]
    listed = call(b, "GET", "/api/knowledge/databases", auth).json()["databases"]
    assert not [d for d in listed if str(d.get("name", "")).startswith("probe-")], listed
