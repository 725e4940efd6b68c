"""The uploaded graph's embedding model is chosen once for every replica (row 5).

Full mode with Neo4j on loopback and the model stand-in where the app's ``ollama/...``
embedding models point (port 11434; it counts embeddings per model). Two replicas start
before the graph has any data; a user uploads triples through A choosing one model while
another uploads through B choosing another, at the same time. With the kit the second
upload uses the model the first wrote to ``graph_info.json``: one model computed every
embedding, and both replicas report it as fixed. The application alone embeds one graph
with both models. A query on a replica started before the first upload embeds the query with
the graph's model too: the application alone fails it (the model was never loaded there).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.app.http import StartServer, admin_headers, call
from yuxi_k8s.app.localrun import Server

MODELS = ("ollama/bge-m3", "ollama/nomic-embed-text")  # the catalogue: http://localhost:11434/api/embed


def _upload_triples(server: Server, auth: dict[str, str], name: str, tag: str) -> str:
    triples = [
        {"h": f"{name} Keeper {tag}", "r": "tends", "t": f"{name} Lamp {tag}"},
        {"h": f"{name} Lamp {tag}", "r": "stands_in", "t": f"{name} Harbour {tag}"},
    ]
    body = "\n".join(json.dumps(t) for t in triples) + "\n"
    files = {"file": (f"{name.lower()}.jsonl", body.encode(), "application/jsonl")}
    uploaded = call(server, "POST", "/api/knowledge/files/upload?allow_jsonl=true", auth, files=files)
    assert uploaded.status_code == 200, uploaded.text
    return str(uploaded.json()["file_path"])


def _add_entities(server: Server, file_path: str, *, model: str, auth: dict[str, str]) -> dict[str, Any]:
    reply = call(
        server,
        "POST",
        "/api/graph/neo4j/add-entities",
        auth,
        json={"file_path": file_path, "kgdb_name": "neo4j", "embed_model_name": model},
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _embedded(standin: str) -> dict[str, int]:
    """How many texts the stand-in embedded, per model of MODELS."""
    stats = httpx.get(f"{standin}/stats", timeout=10).json()
    return {model: int(stats.get(f"embeddings:{model.partition('/')[2]}", 0)) for model in MODELS}


def _first_uploads_at_once(
    servers: StartServer, env: dict[str, str], standin: str, *, kit: bool
) -> tuple[list[Server], dict[str, str], list[dict[str, Any]], dict[str, int]]:
    """Two replicas, both started before any upload, each take a first upload with another model;
    returns them, the token, the replies and how many embeddings each model computed."""
    a, b = servers("a", kit=kit, **env), servers("b", kit=kit, **env)
    auth = admin_headers(a)
    tag = uuid.uuid4().hex[:6]  # the graph is the session's one Neo4j: entities of this test only
    uploads = [(a, _upload_triples(a, auth, "North", tag), MODELS[0])]
    uploads.append((b, _upload_triples(b, auth, "South", tag), MODELS[1]))
    before = _embedded(standin)
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda u: _add_entities(*u[:2], model=u[2], auth=auth), uploads))
    after = _embedded(standin)
    return [a, b], auth, replies, {model: after[model] - before[model] for model in MODELS}


def _query_on_a_replica_that_never_read_the_graph(
    servers: StartServer, env: dict[str, str], *, kit: bool
) -> tuple[str, httpx.Response]:
    """Two replicas started before any upload; A uploads, then B's first graph call is a query
    (the graph page's search) for A's entities: returns the run's tag and B's answer."""
    a, b = servers("a", kit=kit, **env), servers("b", kit=kit, **env)
    auth = admin_headers(a)
    tag = uuid.uuid4().hex[:6]
    _add_entities(a, _upload_triples(a, auth, "East", tag), model=MODELS[0], auth=auth)
    return tag, call(b, "GET", f"/api/graph/subgraph?db_id=neo4j&node_label={tag}", auth)


# First in the module: the module's Neo4j has no vector index yet, so A's upload makes it with
# MODELS[0]'s dimension, the one B's query embeds with (the other tests mix both models).
def test_a_replica_started_before_the_first_upload_answers_a_query_of_it(
    servers: StartServer, graph_env: dict[str, str], ollama_standin: str
) -> None:
    tag, answer = _query_on_a_replica_that_never_read_the_graph(servers, graph_env, kit=True)
    assert answer.status_code == 200, answer.text
    names = {node["name"] for node in answer.json()["data"]["nodes"]}
    assert {f"East Keeper {tag}", f"East Lamp {tag}", f"East Harbour {tag}"} <= names, names


def test_the_application_alone_fails_that_query(
    servers: StartServer, graph_env: dict[str, str], ollama_standin: str
) -> None:
    _tag, answer = _query_on_a_replica_that_never_read_the_graph(servers, graph_env, kit=False)
    assert answer.status_code == 500 and "'encode'" in answer.text, answer.text


def _graph_info_file(saves: Path) -> dict[str, Any]:
    return dict(json.loads((saves / "knowledge_graph" / "neo4j" / "graph_info.json").read_text()))


def test_replicas_started_before_the_first_upload_embed_the_graph_with_one_model(
    servers: StartServer,
    graph_env: dict[str, str],
    ollama_standin: str,
    tmp_path: Path,
) -> None:
    replicas, auth, replies, computed = _first_uploads_at_once(servers, graph_env, ollama_standin, kit=True)
    assert [r.get("status") for r in replies] == ["success", "success"], replies
    used = [model for model, count in computed.items() if count > 0]
    assert len(used) == 1, computed  # one model embedded every entity of the graph
    assert _graph_info_file(tmp_path / "saves")["embed_model_name"] == used[0]
    for server in replicas:
        info = call(server, "GET", "/api/graph/neo4j/info", auth)
        assert info.status_code == 200, info.text
        data = info.json()["data"]
        assert (data["embed_model_name"], data["embed_model_configurable"]) == (used[0], False), data


def test_the_application_alone_embeds_one_graph_with_two_models(
    servers: StartServer,
    graph_env: dict[str, str],
    ollama_standin: str,
) -> None:
    _replicas, _auth, _replies, computed = _first_uploads_at_once(
        servers, graph_env, ollama_standin, kit=False
    )
    assert all(count > 0 for count in computed.values()), computed  # mixed embeddings in one graph
