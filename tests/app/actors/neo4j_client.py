"""What Yuxi-Know 0.6.1 asks of Neo4j, from the app's own environment (neo4j driver, LightRAG).

Runs with the api image's Python against NEO4J_URI / NEO4J_USERNAME / NEO4J_PASSWORD and
prints one JSON object: each check's result, or {"error": ..., "trace": ...}.

- the driver with a wrong password (refused), a write and a read;
- the statements of the app's graph code (``yuxi/knowledge/graphs``): SHOW DATABASES,
  CREATE VECTOR INDEX, db.create.setNodeVectorProperty, db.index.vector.queryNodes,
  db.labels();
- LightRAG's own Neo4JStorage (the app's graph_storage): initialize (its range and
  full-text indexes), upserts, get_knowledge_graph (apoc.path.subgraphAll, with a
  fallback it logs) and search_labels (db.index.fulltext.queryNodes).
"""

import asyncio
import json
import logging
import os
import sys
import traceback
from typing import Any

URI = os.environ["NEO4J_URI"]
AUTH = (os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"])
WORKSPACE = "kb_neo4j_probe"


def driver_checks(out: dict[str, Any]) -> None:
    import neo4j
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError

    out["driver_version"] = neo4j.__version__
    try:
        with GraphDatabase.driver(URI, auth=(AUTH[0], AUTH[1] + "-wrong")) as wrong:
            wrong.verify_connectivity()
        out["wrong_password"] = "accepted"
    except AuthError as exc:
        out["wrong_password"] = exc.code
    with GraphDatabase.driver(URI, auth=AUTH) as driver, driver.session() as session:
        info = driver.get_server_info()
        out["server_agent"] = info.agent
        session.run("MERGE (n:Probe {key: $key}) SET n.value = $value", key="k1", value="written").consume()
        out["read"] = session.run("MATCH (n:Probe {key: $key}) RETURN n.value AS v", key="k1").single()["v"]
        # the app's graph code (upload_graph_service.py), statement by statement
        out["databases"] = sorted(r["name"] for r in session.run("SHOW DATABASES"))
        session.run(
            "CREATE VECTOR INDEX entityEmbeddings IF NOT EXISTS FOR (n:Entity) ON (n.embedding) "
            "OPTIONS {indexConfig: {`vector.dimensions`: 4, `vector.similarity_function`: 'cosine'}}"
        ).consume()
        session.run(
            "MERGE (e:Entity:Upload {name: $name}) WITH e "
            "CALL db.create.setNodeVectorProperty(e, 'embedding', $embedding)",
            name="probe-entity",
            embedding=[0.1, 0.2, 0.3, 0.4],
        ).consume()
        session.run("CALL db.awaitIndexes(120)").consume()
        hits = session.run(
            "CALL db.index.vector.queryNodes('entityEmbeddings', 10, $embedding) YIELD node, score "
            "RETURN node.name AS name, score",
            embedding=[0.1, 0.2, 0.3, 0.4],
        ).data()
        out["vector_hits"] = [h["name"] for h in hits]
        out["labels"] = sorted(
            session.run("CALL db.labels() YIELD label RETURN collect(label) AS l").single()["l"]
        )


def workspace_indexes() -> list[dict[str, Any]]:
    """The indexes on LightRAG's workspace label (it falls back to the default database)."""
    from neo4j import GraphDatabase

    with GraphDatabase.driver(URI, auth=AUTH) as driver, driver.session() as session:
        rows = session.run("SHOW INDEXES YIELD name, type, labelsOrTypes, state").data()
    return [row for row in rows if WORKSPACE in (row["labelsOrTypes"] or [])]


async def lightrag_checks(out: dict[str, Any]) -> None:
    from lightrag.kg.neo4j_impl import Neo4JStorage
    from lightrag.kg.shared_storage import initialize_share_data

    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("lightrag").addHandler(Collect())
    initialize_share_data()
    storage = Neo4JStorage(
        namespace="chunk_entity_relation",
        global_config={"max_graph_nodes": 1000},
        embedding_func=None,
        workspace=WORKSPACE,
    )
    await storage.initialize()
    try:
        for name, kind in (("阿尔法公司", "organization"), ("Beta Labs", "organization"), ("张三", "person")):
            await storage.upsert_node(name, {"entity_id": name, "entity_type": kind, "description": name})
        await storage.upsert_edge("张三", "阿尔法公司", {"weight": 1.0, "description": "works at"})
        await storage.upsert_edge("阿尔法公司", "Beta Labs", {"weight": 0.5, "description": "partner"})
        node = await storage.get_node("张三")
        out["lightrag_node"] = node.get("entity_type") if node else None
        out["lightrag_has_edge"] = await storage.has_edge("阿尔法公司", "张三")
        graph = await storage.get_knowledge_graph("张三", max_depth=3)
        out["lightrag_subgraph_nodes"] = sorted(n.id for n in graph.nodes)
        out["lightrag_search"] = await storage.search_labels("阿尔法")
        out["lightrag_labels"] = await storage.get_all_labels()
        out["lightrag_indexes"] = workspace_indexes()
        out["lightrag_warnings"] = warnings
    finally:
        await storage.drop()
        await storage.finalize()


def main() -> None:
    out: dict[str, Any] = {}
    try:
        driver_checks(out)
        asyncio.run(lightrag_checks(out))
    except Exception as exc:  # reported to the test, which fails naming it
        out.update(error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
