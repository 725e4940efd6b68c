"""A Milvus knowledge base and its documents across two replicas of the real application.

Full mode, with the e2e tier's dependencies on loopback: the kit's Milvus (milvus-lite's
server from the milvus image's tree), MinIO, and the model stand-in on 127.0.0.1:8000,
where the application's catalogue sends the ``vllm/...`` embedding model. A knowledge base
made on A is read on B at once; a document uploaded and indexed through A shows its status
on B, and a query on B returns a chunk of it; a document deleted on A stays deleted after B
edits the knowledge base. A document A is indexing (the stand-in holds its embedding) is
neither marked failed on B nor indexed a second time through B (row 3).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.app.full_mode import (
    DOCUMENT,
    EMBED_MODEL,
    HOLD_WORD,
    add_document,
    file_rows,
    full_mode_env,
    held_embeddings,
    hold_embeddings,
    kb_files,
    release_embeddings,
)
from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll

HELD_DOCUMENT = f"{HOLD_WORD} Quay\n\nThe {HOLD_WORD} Quay crane lifts forty tonnes.\n"


@pytest.fixture
def full_mode(minio: MinioEndpoint, milvus_uri: str, model_standin: str) -> dict[str, str]:
    """The app's environment for full mode on this module's dependencies (the stand-in up)."""
    return full_mode_env(milvus_uri, minio)


def _new_kb(server: Server, auth: dict[str, str]) -> tuple[str, str]:
    name = f"docs-{uuid.uuid4().hex[:6]}"
    body = {"database_name": name, "description": "lighthouse notes", "kb_type": "milvus"}
    made = call(
        server, "POST", "/api/knowledge/databases", auth, json={**body, "embed_model_name": EMBED_MODEL}
    )
    assert made.status_code == 200, made.text
    return str(made.json()["db_id"]), name


def _kb_on_two_replicas(
    servers: StartServer, env: dict[str, str]
) -> tuple[Server, Server, dict[str, str], str, str]:
    """Replicas A and B in full mode, the admin's header, a new Milvus knowledge base made on A."""
    a, b = servers("a", **env), servers("b", **env)
    auth = admin_headers(a)
    db_id, name = _new_kb(a, auth)
    return a, b, auth, db_id, name


def test_a_document_indexed_through_one_replica_is_found_and_stays_deleted_through_the_other(
    servers: StartServer, kit_db: str, full_mode: dict[str, str], tmp_path: Path
) -> None:
    a, b, auth, db_id, name = _kb_on_two_replicas(servers, full_mode)
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


def _index_through(server: Server, auth: dict[str, str], db_id: str, file_id: str) -> dict[str, Any]:
    """A retry: the app's own "index these documents" task on *server*; its finished task."""
    asked = call(
        server,
        "POST",
        f"/api/knowledge/databases/{db_id}/documents/index",
        auth,
        json={"file_ids": [file_id]},
    )
    assert asked.status_code == 200 and asked.json().get("task_id"), asked.text
    task_id = asked.json()["task_id"]
    finished: dict[str, Any] = {}

    def done() -> bool:
        body = call(server, "GET", f"/api/tasks/{task_id}", auth).json()
        finished.update(body.get("task", body))
        return finished.get("status") in ("success", "failed", "cancelled")

    poll(f"the index task {task_id} to finish", done, 50, interval=0.5)
    return finished


def _hold_a_document_on(a: Server, auth: dict[str, str], db_id: str, tmp_path: Path) -> str:
    """Add a document through *a* whose embedding the stand-in holds: *a* is indexing it."""
    held_before = held_embeddings()
    hold_embeddings()
    doc = tmp_path / "quay.md"
    doc.write_text(HELD_DOCUMENT)
    add_document(a, auth, db_id, doc)
    poll(
        "A's embedding of the document to be held", lambda: held_embeddings() > held_before, 120, interval=0.5
    )
    (file_id,) = kb_files(a, auth, db_id)
    return str(file_id)


def test_a_document_one_replica_is_indexing_is_neither_failed_nor_indexed_again_by_the_other(
    servers: StartServer, kit_db: str, full_mode: dict[str, str], tmp_path: Path
) -> None:
    a, b, auth, db_id, _ = _kb_on_two_replicas(servers, full_mode)
    held = held_embeddings()
    try:
        file_id = _hold_a_document_on(a, auth, db_id, tmp_path)
        # B's reads run the app's repair of interrupted files: A's file is in flight, not failed.
        assert kb_files(b, auth, db_id)[file_id]["status"] == "indexing"
        listed = call(b, "GET", "/api/knowledge/databases", auth)
        assert listed.status_code == 200, listed.text
        assert file_rows(kit_db, db_id)[file_id]["status"] == "indexing"
        # A retry through B while A holds it: refused, and B sent no embedding of its own.
        task = _index_through(b, auth, db_id, file_id)
        items = (task.get("result") or {}).get("items") or []
        assert [i.get("status") for i in items] == ["failed"], task
        assert "indexing" in str(items[0].get("error")), task
        assert held_embeddings() == held + 1
    finally:
        release_embeddings()

    poll(
        "A to finish indexing, seen on B",
        lambda: kb_files(b, auth, db_id)[file_id]["status"] in ("indexed", "done"),
        120,
        interval=1,
    )
    assert held_embeddings() == held + 1  # embedded once, by A


def test_the_application_alone_fails_the_document_being_indexed_and_indexes_it_again(
    servers: StartServer, full_mode: dict[str, str], tmp_path: Path
) -> None:
    env = full_mode
    a = servers("a", kit=False, **env)
    auth = admin_headers(a)
    db_id, _ = _new_kb(a, auth)
    held = held_embeddings()
    try:
        file_id = _hold_a_document_on(a, auth, db_id, tmp_path)
        b = servers("b", kit=False, **env)  # B reads the knowledge bases now: the file is indexing
        assert kb_files(b, auth, db_id)[file_id]["status"] == "error_indexing"
        asked = call(
            b, "POST", f"/api/knowledge/databases/{db_id}/documents/index", auth, json={"file_ids": [file_id]}
        )
        assert asked.status_code == 200, asked.text
        poll(
            "B to embed the document A is embedding", lambda: held_embeddings() == held + 2, 60, interval=0.5
        )
    finally:
        release_embeddings()
