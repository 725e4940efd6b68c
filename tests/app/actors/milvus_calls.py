"""The pymilvus calls of Yuxi-Know v0.6.1's Milvus code, each made against MILVUS_URI (runs in the app's env).

Two clients, as in the app:

- ``MilvusKB`` (``yuxi/knowledge/implementations/milvus.py``) and the knowledge-base
  manager use pymilvus' ORM (``connections``, ``db``, ``utility``, ``Collection``): the
  same calls with the same arguments are made here one by one (importing MilvusKB
  itself would start the whole application);
- LightRAG's ``MilvusVectorDBStorage`` (``lightrag/kg/milvus_impl.py``, ``MilvusClient``)
  is driven itself, as ``LightRagKB`` configures it (``MILVUS_DB_NAME`` as the compose
  files set it, the default threshold), so its own code makes its calls.

Prints one JSON line per call, ``{"call": ..., "ok": bool, "detail": ...}``, then
``{"done": true}``. Each check is written so that the call's wrong answer fails it:
LightRAG catches most errors and only logs them, so its results are read back.
"""

import asyncio
import json
import logging
import os
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

DIM = 8
URI = os.environ["MILVUS_URI"]
RESULTS: list[dict[str, Any]] = []


def vector(seed: int) -> list[float]:
    """A deterministic unit vector; distinct seeds give clearly different directions."""
    raw = np.random.default_rng(seed).normal(size=DIM)
    return [float(x) for x in raw / np.linalg.norm(raw)]


def report(call: str, ok: bool, detail: str) -> None:
    line = {"call": call, "ok": ok, "detail": detail[-1500:]}
    RESULTS.append(line)
    print(json.dumps(line, ensure_ascii=False), flush=True)


def check(call: str, body: Callable[[], Any]) -> Any:
    """Run *body*; its return value (or the exception) is the call's result."""
    try:
        result = body()
    except Exception as exc:  # every failure is reported, not raised
        report(call, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        return None
    report(call, True, str(result)[:300])
    return result


def want(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- MilvusKB and the manager: pymilvus ORM ------------------------------------------------
def milvus_kb_calls() -> None:
    from pymilvus import (
        AnnSearchRequest,
        Collection,
        CollectionSchema,
        DataType,
        FieldSchema,
        Function,
        FunctionType,
        WeightedRanker,
        connections,
        db,
        utility,
    )

    alias = f"milvus_{uuid.uuid4().hex[:6]}"
    name = f"kb_{uuid.uuid4().hex[:12]}"
    model = "stand-in-embedding"

    check(
        "connections.connect(alias, uri, token='')",
        lambda: connections.connect(alias=alias, uri=URI, token=""),
    )

    def databases() -> list[str]:
        if "yuxi_know" not in db.list_database(using=alias):
            db.create_database("yuxi_know", using=alias)
        db.using_database("yuxi_know", using=alias)
        found = db.list_database(using=alias)
        want("yuxi_know" in found, f"yuxi_know not listed: {found}")
        return found

    check("db.list_database / db.create_database / db.using_database", databases)
    check(
        "utility.has_collection (absent)",
        lambda: want(not utility.has_collection(name, using=alias), "exists"),
    )

    def create() -> str:
        fields = [
            FieldSchema(name="id", dtype=DataType.VARCHAR, max_length=100, is_primary=True),
            FieldSchema(
                name="content",
                dtype=DataType.VARCHAR,
                max_length=65535,
                enable_analyzer=True,
                analyzer_params={"type": "chinese"},
            ),
            FieldSchema(name="source", dtype=DataType.VARCHAR, max_length=500),
            FieldSchema(name="chunk_id", dtype=DataType.VARCHAR, max_length=100),
            FieldSchema(name="file_id", dtype=DataType.VARCHAR, max_length=100),
            FieldSchema(name="chunk_index", dtype=DataType.INT64),
            FieldSchema(name="embedding", dtype=DataType.FLOAT_VECTOR, dim=DIM),
            FieldSchema(name="content_sparse", dtype=DataType.SPARSE_FLOAT_VECTOR),
        ]
        bm25 = Function(
            name="content_bm25",
            input_field_names=["content"],
            output_field_names=["content_sparse"],
            function_type=FunctionType.BM25,
        )
        schema = CollectionSchema(
            fields=fields, description=f"Knowledge base collection for {name} using {model}", functions=[bm25]
        )
        Collection(name=name, schema=schema, using=alias)
        return name

    if (
        check(
            "Collection(name, schema: VARCHAR analyzer 'chinese', FLOAT_VECTOR, SPARSE, BM25 function)",
            create,
        )
        is None
    ):
        report("MilvusKB: the calls after creating its collection", False, "not reached")
        return
    check(
        "Collection.create_index(embedding, IVF_FLAT COSINE nlist=1024)",
        lambda: Collection(name=name, using=alias).create_index(
            "embedding", {"metric_type": "COSINE", "index_type": "IVF_FLAT", "params": {"nlist": 1024}}
        ),
    )
    check(
        "Collection.create_index(content_sparse, SPARSE_INVERTED_INDEX BM25 DAAT_MAXSCORE)",
        lambda: Collection(name=name, using=alias).create_index(
            "content_sparse",
            {
                "metric_type": "BM25",
                "index_type": "SPARSE_INVERTED_INDEX",
                "params": {"inverted_index_algo": "DAAT_MAXSCORE"},
            },
        ),
    )
    check(
        "utility.has_collection (present)", lambda: want(utility.has_collection(name, using=alias), "missing")
    )

    def reopen() -> str:
        collection = Collection(name=name, using=alias)
        want(model in collection.description, f"description {collection.description!r}")
        fields = {f.name: f for f in collection.schema.fields}
        want(fields["content"].dtype == DataType.VARCHAR, "content is not VARCHAR")
        want(
            fields["content"].params.get("enable_analyzer") is True,
            f"content params {fields['content'].params}",
        )
        want(fields["content_sparse"].dtype == DataType.SPARSE_FLOAT_VECTOR, "content_sparse is not sparse")
        bm25 = [
            fn
            for fn in collection.schema.functions
            if fn.type == FunctionType.BM25
            and fn.input_field_names == ["content"]
            and fn.output_field_names == ["content_sparse"]
        ]
        want(len(bm25) == 1, f"functions {collection.schema.functions}")
        return collection.description

    check(
        "Collection(name) existing: description, schema.fields params, schema.functions (BM25 check)", reopen
    )
    check("Collection.load()", lambda: Collection(name=name, using=alias).load())

    texts = {
        "f1": ["向量数据库支持语义检索", "知识图谱描述实体之间的关系"],
        "f2": ["今天的天气很好适合散步"],
    }
    rows = [
        (f"{fid}_{i}", text, f"{fid}-doc.md", f"{fid}_{i}", fid, i, vector(seed))
        for seed, (fid, i, text) in enumerate(
            (fid, i, text) for fid, chunks in texts.items() for i, text in enumerate(chunks)
        )
    ]

    def insert() -> int:
        entities = [[row[k] for row in rows] for k in range(7)]  # column lists, no content_sparse
        result = Collection(name=name, using=alias).insert(entities)
        want(result.insert_count == len(rows), f"insert_count {result.insert_count}")
        return int(result.insert_count)

    check("Collection.insert(column lists, sparse field from the BM25 function)", insert)
    collection = Collection(name=name, using=alias)
    output_fields = ["content", "source", "chunk_id", "file_id", "chunk_index"]

    def query_one() -> Any:
        found = collection.query(expr='file_id == "f1"', output_fields=["id"], limit=1)
        want(len(found) == 1, f"query returned {found}")
        return found

    check("Collection.query(expr file_id ==, output_fields [id], limit=1)", query_one)

    def search_vector() -> Any:
        hits = collection.search(
            data=[vector(1)],
            anns_field="embedding",
            param={"metric_type": "COSINE", "params": {"nprobe": 10}},
            limit=3,
            expr=None,
            output_fields=output_fields,
        )[0]
        want(len(hits) == 3, f"{len(hits)} hits")
        top = hits[0]
        want(top.entity.get("chunk_id") == "f1_1", f"top hit {top.entity.get('chunk_id')}")
        want(abs(float(top.distance) - 1.0) < 1e-3, f"COSINE similarity of the same vector {top.distance}")
        want(top.entity.get("content") == texts["f1"][1], f"content {top.entity.get('content')!r}")
        want(top.entity.get("chunk_index") == 1, f"chunk_index {top.entity.get('chunk_index')!r}")
        return [(h.entity.get("chunk_id"), round(float(h.distance), 3)) for h in hits]

    check("Collection.search(vector, COSINE nprobe, output_fields)", search_vector)

    def search_like() -> Any:
        hits = collection.search(
            data=[vector(1)],
            anns_field="embedding",
            param={"metric_type": "COSINE", "params": {"nprobe": 10}},
            limit=10,
            expr='source like "%f2-doc%"',
            output_fields=output_fields,
        )[0]
        sources = {h.entity.get("source") for h in hits}
        want(sources == {"f2-doc.md"}, f"sources {sources}")
        return sources

    check("Collection.search(expr 'source like \"%name%\"')", search_like)

    def search_bm25() -> Any:
        hits = collection.search(
            data=["语义检索"],
            anns_field="content_sparse",
            param={"metric_type": "BM25", "params": {"drop_ratio_search": 0.0}},
            limit=3,
            expr=None,
            output_fields=output_fields,
        )[0]
        want(len(hits) >= 1, "no BM25 hit")
        want(hits[0].entity.get("chunk_id") == "f1_0", f"top BM25 hit {hits[0].entity.get('chunk_id')}")
        want(float(hits[0].distance) > 0, f"BM25 score {hits[0].distance} (Milvus answers scores > 0)")
        return [(h.entity.get("chunk_id"), round(float(h.distance), 3)) for h in hits]

    check("Collection.search(text on content_sparse, BM25 drop_ratio_search=0)", search_bm25)

    def search_bm25_pruned() -> Any:  # bm25_drop_ratio_search is a knowledge base's query parameter (0..1)
        hits = collection.search(
            data=["语义检索"],
            anns_field="content_sparse",
            param={"metric_type": "BM25", "params": {"drop_ratio_search": 0.5}},
            limit=3,
            expr=None,
            output_fields=output_fields,
        )[0]
        want(len(hits) >= 1 and hits[0].entity.get("chunk_id") == "f1_0", f"hits {list(hits)}")
        return [(h.entity.get("chunk_id"), round(float(h.distance), 3)) for h in hits]

    check("Collection.search(BM25 drop_ratio_search=0.5)", search_bm25_pruned)

    def hybrid() -> Any:
        dense = AnnSearchRequest(
            data=[vector(0)],
            anns_field="embedding",
            param={"metric_type": "COSINE", "params": {"nprobe": 10}},
            limit=3,
            expr=None,
        )
        sparse = AnnSearchRequest(
            data=["语义检索"],
            anns_field="content_sparse",
            param={"metric_type": "BM25", "params": {"drop_ratio_search": 0.0}},
            limit=3,
            expr=None,
        )
        hits = collection.hybrid_search(
            reqs=[dense, sparse], rerank=WeightedRanker(0.7, 0.3), limit=3, output_fields=output_fields
        )[0]
        want(len(hits) >= 1, "no hybrid hit")
        want(hits[0].entity.get("chunk_id") == "f1_0", f"top hybrid hit {hits[0].entity.get('chunk_id')}")
        return [(h.entity.get("chunk_id"), round(float(h.distance), 3)) for h in hits]

    check("Collection.hybrid_search(AnnSearchRequest dense + BM25, WeightedRanker)", hybrid)

    def query_content() -> Any:
        found = collection.query(
            expr='file_id == "f1"', output_fields=["content", "chunk_id", "chunk_index"], limit=10000
        )
        want(sorted(r["chunk_id"] for r in found) == ["f1_0", "f1_1"], f"query returned {found}")
        want(all("content" in r and "chunk_index" in r for r in found), f"fields {found}")
        return found

    check(
        "Collection.query(expr, output_fields [content, chunk_id, chunk_index], limit=10000)", query_content
    )

    def delete_expr() -> Any:
        collection.delete('file_id == "f1"')
        left = collection.query(expr='file_id == "f1"', output_fields=["id"], limit=1)
        want(left == [], f"left after delete: {left}")
        others = collection.query(expr='file_id == "f2"', output_fields=["id"], limit=10)
        want(len(others) == 1, f"f2 rows {others}")
        return "deleted"

    check("Collection.delete(expr on a non-primary field)", delete_expr)

    def listing() -> Any:
        names = utility.list_collections(using=alias)
        want(name in names, f"{name} not in {names}")
        reopened = Collection(name=name, using=alias)
        return {"num_entities": reopened.num_entities, "description": reopened.description}

    check("utility.list_collections, Collection.num_entities / description (consistency check)", listing)

    def drop() -> Any:
        utility.drop_collection(name, using=alias)
        want(not utility.has_collection(name, using=alias), "still there after drop")
        return "dropped"

    check("utility.drop_collection", drop)
    check("connections.disconnect", lambda: connections.disconnect(alias))


# --- LightRAG's MilvusVectorDBStorage: MilvusClient -----------------------------------------
class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def lightrag_calls() -> None:
    os.environ.setdefault("MILVUS_DB_NAME", "default")  # what upstream's compose files set
    from lightrag.kg.milvus_impl import MilvusVectorDBStorage
    from lightrag.kg.shared_storage import initialize_share_data
    from lightrag.utils import EmbeddingFunc, compute_mdhash_id
    from lightrag.utils import logger as lightrag_logger

    captured = Captured()
    lightrag_logger.addHandler(captured)
    initialize_share_data()
    workspace = f"kb_{uuid.uuid4().hex[:12]}"
    vectors = {"Alice": vector(10), "Bob": vector(11), "Carol": vector(12)}

    async def embed(texts: list[str], **_: Any) -> np.ndarray:
        return np.array([vectors.get(t.split(" ", 1)[0], vector(abs(hash(t)) % 1000 + 100)) for t in texts])

    work = tempfile.mkdtemp(prefix="lightrag-")
    config = {
        "working_dir": work,
        "embedding_batch_num": 10,
        "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": 0.2},
    }
    embedding = EmbeddingFunc(embedding_dim=DIM, func=embed)
    meta = {
        "entities": {"entity_name", "source_id", "content", "file_path"},
        "relationships": {"src_id", "tgt_id", "source_id", "content", "file_path"},
        "chunks": {"full_doc_id", "content", "file_path"},
    }

    def storage(namespace: str) -> Any:
        return MilvusVectorDBStorage(
            namespace=namespace,
            workspace=workspace,
            global_config=config,
            embedding_func=embedding,
            meta_fields=set(meta[namespace]),
        )

    def run(coro: Any) -> Any:
        return asyncio.run(coro)

    def logged_since(mark: int) -> str:
        return " | ".join(captured.lines[mark:])

    stores: dict[str, Any] = {}

    def initialize(namespace: str) -> Any:
        mark = len(captured.lines)
        store = storage(namespace)
        run(store.initialize())
        stores[namespace] = store
        client = store._client
        want(client.has_collection(store.final_namespace), "collection not created")
        indexes = client.list_indexes(store.final_namespace)
        described = client.describe_collection(store.final_namespace)
        dims = [f.get("params", {}).get("dim") for f in described["fields"] if f["name"] == "vector"]
        want(dims and int(dims[0]) == DIM, f"vector dim {dims}")
        return {"indexes": indexes, "warnings": logged_since(mark)}

    for namespace in ("entities", "relationships", "chunks"):
        check(
            f"LightRAG {namespace}: MilvusClient(uri, user, password, token), list_databases, "
            "use_database, has_collection, create_collection(schema nullable, dynamic), "
            "create_index(AUTOINDEX COSINE + INVERTED), load_collection",
            lambda namespace=namespace: initialize(namespace),
        )

    def scalar_indexes() -> Any:
        expected = {"entities": "entity_name", "relationships": "src_id", "chunks": "full_doc_id"}
        missing = {}
        for namespace, field in expected.items():
            store = stores[namespace]
            names = store._client.list_indexes(store.final_namespace)
            described = [store._client.describe_index(store.final_namespace, n) for n in names]
            if not any(d.get("field_name") == field for d in described):
                missing[namespace] = described
        want(not missing, f"scalar INVERTED index not created: {missing}")
        return "INVERTED indexes present"

    if len(stores) == 3:
        check(
            "LightRAG: create_index(INVERTED on entity_name / src_id / full_doc_id) took effect",
            scalar_indexes,
        )
    ents, rels, chunks = (stores.get(n) for n in ("entities", "relationships", "chunks"))
    if ents is None or rels is None or chunks is None:
        return

    ids = {name: compute_mdhash_id(name, prefix="ent-") for name in vectors}

    def upsert_entities() -> Any:
        data = {
            ids[name]: {
                "content": f"{name} is a person",
                "entity_name": name,
                "source_id": "chunk-1",
                "file_path": "people.md",
            }
            for name in vectors
        }
        run(ents.upsert(data))
        run(
            ents.upsert({ids["Alice"]: {**data[ids["Alice"]], "source_id": "chunk-2"}})
        )  # an upsert, not a copy
        got = run(ents.get_by_ids(list(ids.values())))
        want([g and g["entity_name"] for g in got] == list(vectors), f"get_by_ids {got}")
        want(got[0]["source_id"] == "chunk-2", f"upsert did not replace: {got[0]}")
        rows = ents._client.query(ents.final_namespace, filter="", output_fields=["count(*)"])
        want(rows[0]["count(*)"] == 3, f"count {rows}")
        return "3 entities"

    check(
        "LightRAG upsert(dicts, numpy vectors, dynamic fields) + query(filter id in [...])", upsert_entities
    )

    def search() -> Any:
        mark = len(captured.lines)
        hits = run(ents.query("Bob?", top_k=3, query_embedding=vectors["Bob"]))
        want(bool(hits), f"no hit; log: {logged_since(mark)}")
        want(hits[0]["entity_name"] == "Bob", f"top hit {hits[0]}")
        want(all(h["distance"] > 0.2 for h in hits), f"radius 0.2 not applied: {hits}")
        want(hits[0].get("created_at") is not None, f"created_at {hits[0]}")
        return [(h["entity_name"], round(float(h["distance"]), 3)) for h in hits]

    check("LightRAG search(search_params COSINE radius=cosine_better_than_threshold)", search)

    def by_id() -> Any:
        got = run(ents.get_by_id(ids["Carol"]))
        want(got is not None and got["entity_name"] == "Carol", f"get_by_id {got}")
        vecs = run(ents.get_vectors_by_ids([ids["Carol"]]))
        want(np.allclose(vecs.get(ids["Carol"], []), vectors["Carol"], atol=1e-5), f"vectors {vecs}")
        return "ok"

    check("LightRAG query(filter id ==) and query(output_fields [vector])", by_id)

    def delete_entity() -> Any:
        mark = len(captured.lines)
        run(ents.delete_entity("Carol"))
        want(not logged_since(mark), f"logged: {logged_since(mark)}")  # LightRAG reads the delete's answer
        want(run(ents.get_by_id(ids["Carol"])) is None, "Carol still there")
        return "deleted"

    check("LightRAG delete(pks=[...]) (delete_entity)", delete_entity)

    def relations() -> Any:
        rid = compute_mdhash_id("AliceBob", prefix="rel-")
        other = compute_mdhash_id("BobCarol", prefix="rel-")
        data = {
            rid: {
                "content": "Alice knows Bob",
                "src_id": "Alice",
                "tgt_id": "Bob",
                "source_id": "c",
                "file_path": "p",
            },
            other: {
                "content": "Bob knows Carol",
                "src_id": "Bob",
                "tgt_id": "Carol",
                "source_id": "c",
                "file_path": "p",
            },
        }
        run(rels.upsert(data))
        mark = len(captured.lines)
        run(rels.delete_entity_relation("Alice"))
        want(not logged_since(mark), f"logged: {logged_since(mark)}")
        left = run(rels.get_by_ids([rid, other]))
        want(left[0] is None and left[1] is not None, f"after delete_entity_relation: {left}")
        return "ok"

    check("LightRAG query(filter 'src_id == or tgt_id ==') + delete(pks) (delete_entity_relation)", relations)

    def chunk_delete() -> Any:
        cid = compute_mdhash_id("chunk text", prefix="chunk-")
        run(chunks.upsert({cid: {"content": "Alice chunk", "full_doc_id": "doc-1", "file_path": "p"}}))
        want(run(chunks.get_by_id(cid)) is not None, "chunk not stored")
        mark = len(captured.lines)
        run(chunks.delete([cid]))
        want(not logged_since(mark), f"logged: {logged_since(mark)}")
        want(run(chunks.get_by_id(cid)) is None, "chunk still there")
        return "ok"

    check("LightRAG delete(ids) on chunks", chunk_delete)

    def reopen() -> Any:
        mark = len(captured.lines)
        again = storage("entities")
        run(again.initialize())
        got = run(again.get_by_id(ids["Alice"]))
        want(got is not None, f"existing data not found; log: {logged_since(mark)}")
        return {"warnings": logged_since(mark)}

    check("LightRAG initialize on an existing collection: describe_collection + schema checks", reopen)

    def migration_calls() -> Any:
        client = ents._client
        temp = f"{ents.final_namespace}_temp"
        client.create_collection(collection_name=temp, schema=ents._create_schema_for_namespace())
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE", params={})
        client.create_index(collection_name=temp, index_params=index)
        client.load_collection(temp)
        iterator = client.query_iterator(
            collection_name=ents.final_namespace, batch_size=1, filter="", output_fields=["*"]
        )
        copied = 0
        while batch := iterator.next():
            client.insert(collection_name=temp, data=batch)
            copied += len(batch)
        iterator.close()
        want(copied == 2, f"iterated {copied} rows")
        renamed = f"{ents.final_namespace}_old"
        client.rename_collection(ents.final_namespace, renamed)
        client.rename_collection(temp, ents.final_namespace)
        client.drop_collection(renamed)
        client.load_collection(ents.final_namespace)
        rows = client.query(ents.final_namespace, filter="", output_fields=["count(*)"])
        want(rows[0]["count(*)"] == 2, f"count after migration {rows}")
        return "copied and renamed"

    check(
        "LightRAG schema migration: query_iterator, insert(rows), rename_collection, drop_collection",
        migration_calls,
    )

    def drop() -> Any:
        result = run(ents.drop())
        want(result.get("status") == "success", f"drop: {result}")
        want(run(ents.get_by_id(ids["Alice"])) is None, "data survived drop")
        return result

    check("LightRAG drop(): drop_collection + create again", drop)

    def app_delete_database() -> Any:
        from pymilvus import connections, utility

        alias = f"lightrag_{uuid.uuid4().hex[:6]}"
        connections.connect(alias=alias, uri=URI, token="")
        for suffix in ("_chunks", "_relationships", "_entities"):
            if utility.has_collection(f"{workspace}{suffix}", using=alias):
                utility.drop_collection(f"{workspace}{suffix}", using=alias)
        left = [
            s
            for s in ("_chunks", "_relationships", "_entities")
            if utility.has_collection(f"{workspace}{s}", using=alias)
        ]
        connections.disconnect(alias)
        want(not left, f"left: {left}")
        return "dropped 3"

    check(
        "LightRagKB.delete_database: connections.connect + utility.has/drop_collection", app_delete_database
    )


# --- a knowledge base across a restart of the server ----------------------------------------
PERSISTED = "kb_persisted"


def persist_write() -> None:
    """MilvusKB's collection with two chunks, for :func:`persist_read` on the next server."""
    from pymilvus import (
        Collection,
        CollectionSchema,
        DataType,
        FieldSchema,
        Function,
        FunctionType,
        connections,
    )

    connections.connect(alias="w", uri=URI, token="")
    fields = [
        FieldSchema(name="id", dtype=DataType.VARCHAR, max_length=100, is_primary=True),
        FieldSchema(
            name="content",
            dtype=DataType.VARCHAR,
            max_length=65535,
            enable_analyzer=True,
            analyzer_params={"type": "chinese"},
        ),
        FieldSchema(name="embedding", dtype=DataType.FLOAT_VECTOR, dim=DIM),
        FieldSchema(name="content_sparse", dtype=DataType.SPARSE_FLOAT_VECTOR),
    ]
    bm25 = Function(
        name="content_bm25",
        input_field_names=["content"],
        output_field_names=["content_sparse"],
        function_type=FunctionType.BM25,
    )
    schema = CollectionSchema(fields=fields, description="made by model-x", functions=[bm25])

    def write() -> str:
        collection = Collection(name=PERSISTED, schema=schema, using="w")
        collection.create_index(
            "embedding", {"metric_type": "COSINE", "index_type": "IVF_FLAT", "params": {}}
        )
        collection.create_index(
            "content_sparse", {"metric_type": "BM25", "index_type": "SPARSE_INVERTED_INDEX"}
        )
        collection.load()
        collection.insert([["a", "b"], ["向量数据库支持语义检索", "今天的天气很好"], [vector(1), vector(2)]])
        return "written"

    check("persist: create, index, load, insert", write)


def persist_read() -> None:
    from pymilvus import Collection, connections

    connections.connect(alias="r", uri=URI, token="")

    def read() -> Any:
        collection = Collection(name=PERSISTED, using="r")
        want(collection.description == "made by model-x", f"description {collection.description!r}")
        collection.load()
        rows = collection.query(expr='id in ["a", "b"]', output_fields=["content"])
        want(len(rows) == 2, f"rows {rows}")
        hits = collection.search(
            data=["语义检索"], anns_field="content_sparse", param={"metric_type": "BM25"}, limit=2
        )[0]
        want(len(hits) >= 1 and hits[0].id == "a", f"BM25 hits {list(hits)}")
        return rows

    check("persist: description, rows and BM25 after a restart", read)


def main() -> None:
    parts = sys.argv[1:] or ["milvus_kb", "lightrag"]
    if "milvus_kb" in parts:
        milvus_kb_calls()
    if "lightrag" in parts:
        lightrag_calls()
    if "persist_write" in parts:
        persist_write()
    if "persist_read" in parts:
        persist_read()
    print(json.dumps({"done": True, "failed": [r["call"] for r in RESULTS if not r["ok"]]}), flush=True)


if __name__ == "__main__":
    main()
