"""A LightRAG knowledge base (the app's default type) fed through two replicas at once (row 4).

Full mode on loopback: Milvus (vectors), Neo4j (the graph), MinIO, the model stand-in as
the embedding model and as LightRAG's LLM (``openai`` provider, ``OPENAI_API_BASE``).
LightRAG keeps each knowledge base's documents, chunks and document status in JSON files
under ``saves/`` that every process loads once and writes back whole. Both replicas take
their LightRAG instance first (a query each), then one document goes in through A and
another through B at the same time. With the kit both are in the status file on the
shared volume, each replica shows the chunks of the other's document, and a query on
each finds the other's text. The application alone ends with one of the two documents
missing from the status file: the replica that wrote last wrote only its own.

A knowledge base deleted through A while B is ingesting into it (the stand-in holds B's
embedding): with the kit the delete waits for B's ingest (the knowledge base's lock), B's ingest
ends, then the delete removes everything. The application alone deletes at once, under B's
ingest: B goes on into a knowledge base without its Milvus collections and folders, and its
ingest fails ("Indexing failed", the app's own log line).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from tests.app.full_mode import (
    EMBED_MODEL,
    HOLD_WORD,
    add_document,
    file_rows,
    held_embeddings,
    hold_embeddings,
    kb_files,
    release_embeddings,
)
from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.integration.lightrag_stores import LOCK_CLASS
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll
from yuxi_k8s.state.settings import libpq_url

LLM_INFO = {"provider": "openai", "model_name": "standin-chat"}  # OPENAI_API_BASE: the stand-in
DOCUMENTS = {  # one per replica, each with entities of its own
    "lighthouse.md": "Harbour Lighthouse\n\nThe Harbour Lighthouse lamp is cleaned by the Coastal Guild.\n",
    "observatory.md": (
        "Northern Observatory\n\nThe Northern Observatory telescope is polished by the Astral Society.\n"
    ),
}
QUERIES = {"lighthouse.md": "Coastal Guild", "observatory.md": "Astral Society"}
INGEST_FAILED = "Indexing failed for"  # LightRagKB.index_file's log line when an ingest fails
HELD_DOCUMENT = f"Quay Ledger\n\nThe {HOLD_WORD} quay ledger is kept by the Harbour Office.\n"


def _make_lightrag_kb(server: Server, auth: dict[str, str]) -> str:
    body = {
        "database_name": f"graph-{uuid.uuid4().hex[:6]}",
        "description": "two documents, two replicas",
        "kb_type": "lightrag",
        "embed_model_name": EMBED_MODEL,
        "llm_info": LLM_INFO,
    }
    made = call(server, "POST", "/api/knowledge/databases", auth, json=body)
    assert made.status_code == 200, made.text
    return str(made.json()["db_id"])


def _query(server: Server, auth: dict[str, str], db_id: str, text: str) -> dict[str, Any]:
    body = {"query": text, "meta": {}}
    reply = call(server, "POST", f"/api/knowledge/databases/{db_id}/query", auth, json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json().get("status") == "success", reply.text
    return dict(reply.json())


def _chunk_text(answer: dict[str, Any]) -> str:
    """The text of the chunks a LightRAG query returned (from its JSON chunk store, not the graph)."""
    result = answer.get("result") or {}
    data = result.get("data") or {} if isinstance(result, dict) else {}
    return json.dumps([c.get("content") for c in data.get("chunks") or []])


def _status_files(saves: Path, db_id: str) -> list[Path]:
    """LightRAG's document status files of the knowledge base, on the shared volume."""
    return [p for p in saves.rglob("kv_store_doc_status.json") if db_id in p.parts]


def _doc_status(saves: Path, db_id: str) -> dict[str, Any]:
    found = _status_files(saves, db_id)
    assert len(found) == 1, found
    return dict(json.loads(found[0].read_text()))


def _ingest_through_both(
    servers: StartServer, env: dict[str, str], db_url: str, tmp_path: Path, *, kit: bool
) -> tuple[Server, Server, dict[str, str], str, dict[str, str]]:
    """Both replicas hold an instance of one LightRAG knowledge base, then each ingests a document
    at the same time; returns both, the token, the knowledge base and the file id per file name."""
    a = servers("a", kit=kit, **env)
    auth = admin_headers(a)
    db_id = _make_lightrag_kb(a, auth)
    b = servers("b", kit=kit, **env)  # after the create: the app alone knows it only from its start
    for server in (a, b):
        _query(server, auth, db_id, "lamp")  # each replica's LightRAG instance, its stores loaded now
    docs = []
    for name, text in DOCUMENTS.items():
        doc = tmp_path / name
        doc.write_text(text)
        docs.append(doc)
    for server, doc in zip((a, b), docs, strict=True):
        add_document(server, auth, db_id, doc)  # queued at once: both ingest together

    ids: dict[str, str] = {}

    def both_indexed() -> bool:
        # The table, not each replica's page: a page read repairs files it believes interrupted,
        # and that repair still races another replica's parsing (row 3, open).
        rows = file_rows(db_url, db_id)
        failed = {k: r for k, r in rows.items() if r["status"].startswith("error")}
        assert not failed, failed
        ids.update({r["filename"]: k for k, r in rows.items()})
        return len(rows) == len(docs) and all(r["status"] == "indexed" for r in rows.values())

    poll("both documents to be indexed", both_indexed, 300, interval=1)
    return a, b, auth, db_id, ids


def test_documents_ingested_through_two_replicas_at_once_are_all_kept_and_seen_by_both(
    servers: StartServer,
    graph_env: dict[str, str],
    kit_db: str,
    model_standin: str,
    tmp_path: Path,
) -> None:
    a, b, auth, db_id, ids = _ingest_through_both(servers, graph_env, kit_db, tmp_path, kit=True)

    status = _doc_status(tmp_path / "saves", db_id)
    statuses = {i: status.get(i, {}).get("status") for i in ids.values()}
    assert statuses == dict.fromkeys(ids.values(), "processed"), status
    for server in (a, b):
        files = kb_files(server, auth, db_id)
        assert {files[i]["status"] for i in ids.values()} == {"indexed"}, files
    for server, other in ((b, "lighthouse.md"), (a, "observatory.md")):  # the other replica's document
        path = f"/api/knowledge/databases/{db_id}/documents/{ids[other]}/content"
        content = call(server, "GET", path, auth)
        assert content.status_code == 200, content.text
        lines = content.json().get("lines") or []
        assert lines and QUERIES[other] in json.dumps(lines), content.text
        found = _chunk_text(_query(server, auth, db_id, f"Who works with {QUERIES[other]}?"))
        assert QUERIES[other] in found, found


def test_the_application_alone_loses_a_document_of_one_replica(
    servers: StartServer,
    graph_env: dict[str, str],
    kit_db: str,
    model_standin: str,
    tmp_path: Path,
) -> None:
    _a, _b, _auth, db_id, ids = _ingest_through_both(servers, graph_env, kit_db, tmp_path, kit=False)
    status = _doc_status(tmp_path / "saves", db_id)
    kept = {name for name, file_id in ids.items() if file_id in status}
    assert kept != set(ids), f"both documents kept by the app alone: {status}"
    assert len(kept) == 1, status  # the one of the replica that wrote last


def _waiting_for_a_knowledge_base(db_url: str) -> int:
    """Sessions waiting for a knowledge base's LightRAG lock (pg_advisory_lock(LOCK_CLASS, ...))."""
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND NOT granted"
    with psycopg.connect(libpq_url(db_url)) as conn:
        row = conn.execute(sql, (LOCK_CLASS,)).fetchone()
    return int(row[0]) if row else 0


def _delete_while_the_other_ingests(
    servers: StartServer, env: dict[str, str], db_url: str, tmp_path: Path, *, kit: bool
) -> tuple[Server, Server, dict[str, str], str]:
    """B ingests a document whose embedding the stand-in holds; A deletes the knowledge base
    meanwhile. With the kit the delete is seen waiting for B's lock before B goes on; the app
    alone answers the delete at once. Returns both replicas, the token and the knowledge base."""
    a = servers("a", kit=kit, **env)
    auth = admin_headers(a)
    db_id = _make_lightrag_kb(a, auth)
    b = servers("b", kit=kit, **env)
    _query(b, auth, db_id, "lamp")  # B's LightRAG instance, its stores loaded now
    doc = tmp_path / "ledger.md"
    doc.write_text(HELD_DOCUMENT)
    held = held_embeddings()
    hold_embeddings()
    try:
        add_document(b, auth, db_id, doc)
        poll("B's embedding to be held", lambda: held_embeddings() > held, 120, interval=0.5)
        with ThreadPoolExecutor(1) as pool:
            deleting = pool.submit(call, a, "DELETE", f"/api/knowledge/databases/{db_id}", auth)
            if kit:  # A's delete waits on the knowledge base's lock, which B's ingest holds
                poll("A's delete to wait for B's lock", lambda: _waiting_for_a_knowledge_base(db_url) > 0, 60)
                assert not deleting.done()
            else:
                deleting.result(timeout=120)  # done while B is still ingesting
            release_embeddings()
            deleted = deleting.result(timeout=300)
    finally:
        release_embeddings()
    assert deleted.status_code == 200, deleted.text
    return a, b, auth, db_id


def _listed(server: Server, auth: dict[str, str]) -> set[str]:
    listed = call(server, "GET", "/api/knowledge/databases", auth)
    assert listed.status_code == 200, listed.text
    return {d["db_id"] for d in listed.json()["databases"]}


def test_a_knowledge_base_deleted_while_the_other_replica_ingests_stays_deleted(
    servers: StartServer,
    graph_env: dict[str, str],
    kit_db: str,
    model_standin: str,
    tmp_path: Path,
) -> None:
    a, b, auth, db_id = _delete_while_the_other_ingests(servers, graph_env, kit_db, tmp_path, kit=True)
    # The delete ran after B's ingest, under the same lock: the ingest ended whole, then nothing
    # of the knowledge base is left.
    assert INGEST_FAILED not in b.log.read_text()
    assert _status_files(tmp_path / "saves", db_id) == []
    assert file_rows(kit_db, db_id) == {}
    for server in (a, b):
        assert db_id not in _listed(server, auth)


def test_the_application_alone_deletes_under_the_other_replicas_ingest(
    servers: StartServer,
    graph_env: dict[str, str],
    kit_db: str,
    model_standin: str,
    tmp_path: Path,
) -> None:
    a, b, auth, db_id = _delete_while_the_other_ingests(servers, graph_env, kit_db, tmp_path, kit=False)
    assert db_id not in _listed(a, auth)
    poll(
        "B's ingest into the knowledge base deleted under it to fail",
        lambda: INGEST_FAILED in b.log.read_text(),
        180,
        interval=1,
    )
