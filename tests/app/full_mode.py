"""The application in full mode on loopback for the app-tier tests: its environment and the calls
that feed a knowledge base (upload a file to MinIO, add it with auto-index, read its files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.app.http import call
from yuxi_k8s.app.localdeps import MinioEndpoint
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.state.settings import libpq_url

EMBED_MODEL = "vllm/Qwen/Qwen3-Embedding-0.6B"  # the catalogue's URL: http://localhost:8000/v1/embeddings
STANDIN_PORT = 8000
HOLD_WORD = "Holdfast"  # the stand-in holds an embedding of a text with it (--hold-word) until released
STANDIN = f"http://127.0.0.1:{STANDIN_PORT}"
DOCUMENT = (
    "Harbour Lighthouse Maintenance\n\n"
    "The Harbour Lighthouse lamp is cleaned every Tuesday by the Coastal Guild.\n"
    "Its lens was made in Glasgow and weighs four tonnes.\n"
)
# LightRAG and the embedding truncation load tiktoken encodings; offline they come from here.
TIKTOKEN_CACHE = "/app/.venv/lib/python3.13/site-packages/llama_index/core/_static/tiktoken_cache"


def full_mode_env(
    milvus_uri: str, minio: MinioEndpoint, neo4j: dict[str, Any] | None = None
) -> dict[str, str]:
    """Knowledge bases on, Milvus and MinIO on loopback; with *neo4j* (the ``neo4j`` fixture) also
    the graph service and LightRAG's graph, else the graph service is off."""
    env = {
        "LITE_MODE": "false",
        "MILVUS_URI": milvus_uri,
        "MILVUS_DB_NAME": "default",  # as base/config/api-settings.env: LightRAG's Milvus storage needs it
        "RUNNING_IN_DOCKER": "",  # else Milvus' embedding calls go to host.docker.internal
        "TIKTOKEN_CACHE_DIR": TIKTOKEN_CACHE,
        "OPENAI_API_BASE": f"http://127.0.0.1:{STANDIN_PORT}/v1",  # the `openai` provider: the stand-in
        **minio.app_env(),
    }
    if neo4j is None:
        env["YUXI_SKIP_APP_INIT"] = "1"  # the graph service (Neo4j) is not part of these flows
    else:
        env["NEO4J_URI"], env["NEO4J_USERNAME"] = neo4j["uri"], neo4j["user"]
        env["NEO4J_PASSWORD"] = neo4j["password"]
    return env


def kb_files(server: Server, auth: dict[str, str], db_id: str) -> dict[str, dict[str, Any]]:
    reply = call(server, "GET", f"/api/knowledge/databases/{db_id}", auth)
    assert reply.status_code == 200, reply.text
    return dict(reply.json().get("files") or {})


def add_document(server: Server, auth: dict[str, str], db_id: str, doc: Path) -> None:
    """Upload *doc* and add it with auto-index, as the web does (the MinIO URL and its hash)."""
    with doc.open("rb") as fh:
        uploaded = call(
            server, "POST", f"/api/knowledge/files/upload?db_id={db_id}", auth, files={"file": fh}
        )
    assert uploaded.status_code == 200, uploaded.text
    path, digest = uploaded.json()["file_path"], uploaded.json()["content_hash"]
    params = {"content_type": "file", "auto_index": True, "content_hashes": {path: digest}}
    body = {"items": [path], "params": params}
    added = call(server, "POST", f"/api/knowledge/databases/{db_id}/documents", auth, json=body)
    assert added.status_code == 200, added.text


def file_rows(db_url: str, db_id: str) -> dict[str, dict[str, str]]:
    """The knowledge base's files as the application's table has them: file id -> filename, status."""
    with psycopg.connect(libpq_url(db_url)) as conn:
        rows = conn.execute(
            "SELECT file_id, filename, status FROM knowledge_files WHERE db_id = %s", (db_id,)
        )
        return {r[0]: {"filename": r[1], "status": r[2]} for r in rows}


def held_embeddings() -> int:
    """How many embedding requests the stand-in has held (with HOLD_WORD) since it started."""
    return int(httpx.get(f"{STANDIN}/stats", timeout=10).json()["held"])


def hold_embeddings() -> None:
    """The stand-in holds the next embedding requests with HOLD_WORD until release_embeddings()."""
    httpx.post(f"{STANDIN}/hold/arm", timeout=10).raise_for_status()


def release_embeddings() -> None:
    httpx.post(f"{STANDIN}/hold/release", timeout=10).raise_for_status()
