"""Knowledge bases across two replicas of the real application (its HTTP API under uvicorn, full mode).

The application alone caches every knowledge base per process and writes the whole cache
back: a replica that saw a knowledge base before another replica deleted it writes it back
on its next rename or query-params change. With ``yuxi-k8s-app`` the deleted one stays
deleted, and every create, rename and delete is read at once on the other replica.

These use Dify-type knowledge bases (read-only retrieval through Dify's API, never called
here), which need neither Milvus nor Neo4j: the metadata paths are the same for every type
(``yuxi/knowledge/base.py``). Files and their statuses are in the e2e tier, where the
application has Milvus, Neo4j and MinIO.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll
from yuxi_k8s.state.settings import libpq_url

# Full mode (the knowledge-base routes exist). Milvus is out of reach (only its knowledge bases'
# files would need it); the graph service, which connects to Neo4j when the app imports it, is
# left out with the application's own test switch (YUXI_SKIP_APP_INIT, its test/conftest.py).
FULL_MODE = {
    "LITE_MODE": "false",
    "MILVUS_URI": "http://127.0.0.1:9",
    "YUXI_SKIP_APP_INIT": "1",
    "YUXI_K8S_KB_REFRESH_SECONDS": "0.5",
}
DIFY = {"dify_api_url": "http://127.0.0.1:9/v1", "dify_token": "unused", "dify_dataset_id": "unused"}


def _create(server: Server, auth: dict[str, str], name: str) -> str:
    body = {
        "database_name": name,
        "description": f"{name} (test)",
        "kb_type": "dify",
        "additional_params": DIFY,
    }
    reply = call(server, "POST", "/api/knowledge/databases", auth, json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["db_id"])


def _info(server: Server, auth: dict[str, str], db_id: str) -> dict[str, Any] | None:
    reply = call(server, "GET", f"/api/knowledge/databases/{db_id}", auth)
    if reply.status_code == 404:
        return None
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _listed(server: Server, auth: dict[str, str]) -> dict[str, str]:
    reply = call(server, "GET", "/api/knowledge/databases", auth)
    assert reply.status_code == 200, reply.text
    return {d["db_id"]: d["name"] for d in reply.json()["databases"]}


def _rename(server: Server, auth: dict[str, str], db_id: str, name: str) -> None:
    reply = call(
        server, "PUT", f"/api/knowledge/databases/{db_id}", auth, json={"name": name, "description": name}
    )
    assert reply.status_code == 200, reply.text


def _set_query_params(server: Server, auth: dict[str, str], db_id: str, params: dict[str, Any]) -> None:
    reply = call(server, "PUT", f"/api/knowledge/databases/{db_id}/query-params", auth, json=params)
    assert reply.status_code == 200, reply.text


def _rows(db_url: str) -> dict[str, str]:
    """The application's own table: knowledge base id -> name."""
    with psycopg.connect(libpq_url(db_url)) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT db_id, name FROM knowledge_bases")}


def _deleted_then_edited_elsewhere(
    servers: StartServer, db_url: str, minio: MinioEndpoint, *, kit: bool
) -> tuple[dict[str, Any], str]:
    """A makes X and Y; B lists them; A deletes X; B renames Y and changes Y's query params."""
    a = servers("a", kit=kit, **FULL_MODE, **minio.app_env())
    b = servers("b", kit=kit, **FULL_MODE, **minio.app_env())
    auth = admin_headers(a)
    x = _create(a, auth, f"doomed-{uuid.uuid4().hex[:6]}")
    y = _create(a, auth, f"kept-{uuid.uuid4().hex[:6]}")
    poll("B to list both knowledge bases", lambda: {x, y} <= set(_listed(b, auth)), 30)
    reply = call(a, "DELETE", f"/api/knowledge/databases/{x}", auth)
    assert reply.status_code == 200, reply.text
    assert x not in _rows(db_url)
    _rename(b, auth, y, "renamed-on-b")
    _set_query_params(b, auth, y, {"top_k": 7})  # its save is awaited within the request
    return {"a": a, "b": b, "auth": auth, "x": x, "y": y}, db_url


def test_a_knowledge_base_deleted_on_one_replica_stays_deleted_when_the_other_edits_another(
    servers: StartServer, kit_db: str, minio: MinioEndpoint
) -> None:
    seen, db_url = _deleted_then_edited_elsewhere(servers, kit_db, minio, kit=True)
    a, b, auth, x, y = seen["a"], seen["b"], seen["auth"], seen["x"], seen["y"]
    rows = _rows(db_url)
    assert x not in rows, "a deleted knowledge base came back"
    assert rows[y] == "renamed-on-b"
    for server in (a, b):
        assert _info(server, auth, x) is None
        listed = _listed(server, auth)
        assert x not in listed and listed[y] == "renamed-on-b"
        info = _info(server, auth, y)
        assert info is not None and (info.get("query_params") or {}).get("options", {}).get("top_k") == 7


def test_the_application_alone_brings_the_deleted_knowledge_base_back(
    servers: StartServer, kit_db: str, minio: MinioEndpoint
) -> None:
    """The loss the kit prevents, on the same code and the same steps without yuxi-k8s-app."""
    seen, db_url = _deleted_then_edited_elsewhere(servers, kit_db, minio, kit=False)
    assert seen["x"] in _rows(db_url), "the unmodified application no longer resurrects: re-read its source"


def test_every_write_is_read_at_once_on_the_other_replica(
    servers: StartServer, kit_db: str, minio: MinioEndpoint
) -> None:
    """Read your writes across replicas: a read on B that starts after A acknowledged the write."""
    a = servers("a", **FULL_MODE, **minio.app_env())
    b = servers("b", **FULL_MODE, **minio.app_env())
    auth = admin_headers(a)
    stale: list[str] = []
    for i in range(20):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        db_id = _create(writer, auth, f"kb-{i}-{uuid.uuid4().hex[:6]}")
        info = _info(reader, auth, db_id)
        if info is None:
            stale.append(f"create {i}: unknown on the other replica")
        _rename(reader, auth, db_id, f"renamed-{i}")
        if (_info(writer, auth, db_id) or {}).get("name") != f"renamed-{i}":
            stale.append(f"rename {i}: old name on the writer")
        if i % 3 == 0:
            assert call(writer, "DELETE", f"/api/knowledge/databases/{db_id}", auth).status_code == 200
            if db_id in _listed(reader, auth):
                stale.append(f"delete {i}: still listed on the other replica")
    assert stale == []
