"""A Milvus knowledge base and its documents across two replicas of the real application.

Full mode, with the e2e tier's dependencies on loopback: the kit's Milvus (milvus-lite's
server from the milvus image's tree), MinIO, and the model stand-in on 127.0.0.1:8000,
where the application's catalogue sends the ``vllm/...`` embedding model. A knowledge base
made on A is read on B at once; a document uploaded and indexed through A shows its status
on B, and a query on B returns a chunk of it; a document deleted on A stays deleted after B
edits the knowledge base.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.app.full_mode import EMBED_MODEL, add_document, file_rows, full_mode_env, kb_files
from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.cluster.kube import poll

DOCUMENT = (
    "Harbour Lighthouse Maintenance\n\n"
    "The Harbour Lighthouse lamp is cleaned every Tuesday by the Coastal Guild.\n"
    "Its lens was made in Glasgow and weighs four tonnes.\n"
)


def test_a_document_indexed_through_one_replica_is_found_and_stays_deleted_through_the_other(
    servers: StartServer,
    kit_db: str,
    minio: MinioEndpoint,
    milvus_uri: str,
    model_standin: None,
    tmp_path: Path,
) -> None:
    env = full_mode_env(milvus_uri, minio)
    a, b = servers("a", **env), servers("b", **env)
    auth = admin_headers(a)
    name = f"docs-{uuid.uuid4().hex[:6]}"
    body = {"database_name": name, "description": "lighthouse notes", "kb_type": "milvus"}
    made = call(a, "POST", "/api/knowledge/databases", auth, json={**body, "embed_model_name": EMBED_MODEL})
    assert made.status_code == 200, made.text
    db_id = made.json()["db_id"]
    seen = call(b, "GET", f"/api/knowledge/databases/{db_id}", auth)  # at once, on the other replica
    assert seen.status_code == 200 and seen.json()["name"] == name, seen.text

    doc = tmp_path / "lighthouse.md"
    doc.write_text(DOCUMENT)
    add_document(a, auth, db_id, doc)

    def indexed_on_b() -> bool:
        files = kb_files(b, auth, db_id)
        failed = [f for f in files.values() if str(f.get("status", "")).startswith("error")]
        assert not failed, failed
        return bool(files) and all(f.get("status") in ("indexed", "done") for f in files.values())

    poll("the document to be indexed, seen on B", indexed_on_b, 180, interval=1)
    assert kb_files(a, auth, db_id).keys() == kb_files(b, auth, db_id).keys()
    answer = call(
        b,
        "POST",
        f"/api/knowledge/databases/{db_id}/query",
        auth,
        json={"query": "Who cleans the Harbour Lighthouse lamp?", "meta": {}},
    )
    assert answer.status_code == 200, answer.text
    assert "Coastal Guild" in str(answer.json()["result"]), answer.text

    (file_id,) = kb_files(a, auth, db_id)
    gone = call(a, "DELETE", f"/api/knowledge/databases/{db_id}/documents/{file_id}", auth)
    assert gone.status_code == 200, gone.text
    changed = call(b, "PUT", f"/api/knowledge/databases/{db_id}/query-params", auth, json={"top_k": 3})
    assert changed.status_code == 200, changed.text  # B's save writes its view of the knowledge base
    renamed = call(
        b, "PUT", f"/api/knowledge/databases/{db_id}", auth, json={"name": f"{name}-b", "description": "x"}
    )
    assert renamed.status_code == 200, renamed.text
    assert file_rows(kit_db, db_id) == {}, "a deleted document came back"
    for server in (a, b):
        assert kb_files(server, auth, db_id) == {}
