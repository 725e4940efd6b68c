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
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.app.full_mode import EMBED_MODEL, add_document, file_rows, kb_files
from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll

LLM_INFO = {"provider": "openai", "model_name": "standin-chat"}  # OPENAI_API_BASE: the stand-in
DOCUMENTS = {  # one per replica, each with entities of its own
    "lighthouse.md": "Harbour Lighthouse\n\nThe Harbour Lighthouse lamp is cleaned by the Coastal Guild.\n",
    "observatory.md": (
        "Northern Observatory\n\nThe Northern Observatory telescope is polished by the Astral Society.\n"
    ),
}
QUERIES = {"lighthouse.md": "Coastal Guild", "observatory.md": "Astral Society"}


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


def _doc_status(saves: Path, db_id: str) -> dict[str, Any]:
    """LightRAG's document status file of the knowledge base, on the shared volume."""
    found = [p for p in saves.rglob("kv_store_doc_status.json") if db_id in p.parts]
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
