"""The DistributedConfig contract, the same for both backends: file mode and database mode."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.state import workers
from tests.state.saves_factory import build_saves
from yuxi_k8s.state import ConflictError, DistributedConfig, NotFoundError, Settings, Versioned


@pytest.fixture(params=["file", "database"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if mode == "file":
        root = tmp_path / "saves"
        root.mkdir()
        return str(root)
    return str(request.getfixturevalue("db_url"))


@pytest.fixture
def cfg(mode: str, target: str) -> Iterator[DistributedConfig]:
    config = workers._open(mode, target)
    yield config
    config.close()


def test_set_get_versions_and_conflicts(cfg: DistributedConfig) -> None:
    assert cfg.get("default_model") is None
    assert cfg.get("default_model", "fallback") == "fallback"
    assert cfg.set("default_model", "siliconflow/Qwen/Qwen3-32B") == 1
    assert cfg.get_versioned("default_model") == Versioned("siliconflow/Qwen/Qwen3-32B", 1)
    assert cfg.set("default_model", "openai/gpt-4o-mini", expected_version=1) == 2
    with pytest.raises(ConflictError, match="default_model") as err:
        cfg.set("default_model", "stale", expected_version=1)
    assert (err.value.expected, err.value.actual) == (1, 2)
    assert cfg.get("default_model") == "openai/gpt-4o-mini"
    # expected_version=0: create only
    with pytest.raises(ConflictError):
        cfg.set("default_model", "x", expected_version=0)
    assert cfg.set("fresh", {"a": [1, 2]}, expected_version=0) == 1
    # a write without expected_version is a plain upsert that still bumps the version
    assert cfg.set("fresh", {"a": [3]}) == 2


def test_delete_really_deletes(cfg: DistributedConfig) -> None:
    cfg.set("enable_reranker", True)
    cfg.set("fast_model", "a/b")
    with pytest.raises(ConflictError):
        cfg.delete("enable_reranker", expected_version=7)
    cfg.delete("enable_reranker", expected_version=1)
    assert cfg.get("enable_reranker") is None
    assert "enable_reranker" not in cfg.items()
    cfg.delete("enable_reranker")  # deleting an absent key is a no-op
    with pytest.raises(ConflictError):
        cfg.delete("enable_reranker", expected_version=1)
    assert cfg.items() == {"fast_model": "a/b"}
    assert cfg.set("enable_reranker", False) == 1  # a re-created key starts again at 1


def test_returned_values_are_copies(cfg: DistributedConfig) -> None:
    cfg.set("nested", {"list": [1]})
    value = cfg.get("nested")
    value["list"].append(2)
    assert cfg.get("nested") == {"list": [1]}


def test_model_names_are_provider_records(cfg: DistributedConfig) -> None:
    cfg.put_provider("openai", {"name": "OpenAI", "models": ["gpt-4o-mini"]})
    cfg.put_provider("local", {"name": "本地", "custom": True}, scope="custom")
    assert cfg.get("model_names") == {"openai": {"name": "OpenAI", "models": ["gpt-4o-mini"]}}
    assert cfg.list_providers("custom") == {"local": {"name": "本地", "custom": True}}
    with pytest.raises(ValueError):
        cfg.set("model_names", {})
    with pytest.raises(ConflictError):
        cfg.put_provider("openai", {"name": "x"}, expected_version=5)
    assert cfg.put_provider("openai", {"name": "OpenAI 2"}, expected_version=1) == 2
    cfg.delete_provider("openai")
    assert cfg.get_provider("openai") is None
    assert cfg.get("model_names") == {}


def test_knowledge_bases_and_files(cfg: DistributedConfig) -> None:
    kb = {
        "name": "手册",
        "description": "d",
        "kb_type": "milvus",
        "created_at": "2025-01-01T00:00:00",
        "additional_params": {"language": "Chinese"},
        "embed_info": {"name": "bge-m3", "dimension": 1024},
    }
    assert cfg.put_kb("kb_1", kb) == 1
    assert cfg.get_kb("kb_1") == kb
    cfg.put_kb("kb_2", {"name": "graph", "kb_type": "lightrag"})
    assert set(cfg.list_kbs()) == {"kb_1", "kb_2"}
    assert set(cfg.list_kbs("lightrag")) == {"kb_2"}
    record = {"file_id": "file_1", "database_id": "kb_1", "filename": "年报.pdf", "status": "uploaded"}
    assert cfg.put_file("file_1", record) == 1
    assert cfg.put_file("file_1", {**record, "status": "indexed"}, expected_version=1) == 2
    with pytest.raises(ConflictError, match="file:file_1"):
        cfg.put_file("file_1", {**record, "status": "error_indexing"}, expected_version=1)
    cfg.put_file("file_2", {"file_id": "file_2", "database_id": "kb_2", "status": "parsed"})
    assert cfg.get_file("file_1")["status"] == "indexed"  # type: ignore[index]
    assert set(cfg.list_files("kb_1")) == {"file_1"}
    assert set(cfg.list_files()) == {"file_1", "file_2"}
    with pytest.raises(NotFoundError):
        cfg.put_file("file_3", {"file_id": "file_3", "database_id": "kb_missing"})
    cfg.delete_file("file_2")
    assert cfg.get_file("file_2") is None
    cfg.delete_kb("kb_1")  # takes its files along
    assert cfg.get_kb("kb_1") is None and cfg.list_files("kb_1") == {}


def test_tasks_and_graph_info(cfg: DistributedConfig) -> None:
    cfg.put_task("t1", {"name": "索引", "status": "pending"})
    cfg.put_task("t2", {"name": "b", "status": "running"})
    cfg.put_task("t1", {"name": "索引", "status": "success"})
    assert [(t["id"], t["status"]) for t in cfg.list_tasks()] == [("t1", "success"), ("t2", "running")]
    graph = "knowledge_graph/neo4j/graph_info.json"
    assert cfg.get_document(graph) is None
    assert cfg.put_document(graph, {"graph_name": "neo4j"}) == 1
    assert cfg.get_document(graph) == Versioned({"graph_name": "neo4j"}, 1)
    with pytest.raises(ValueError):
        cfg.put_document("anything.json", {})


def test_file_mode_writes_the_application_layout(tmp_path: Path) -> None:
    root = build_saves(tmp_path / "saves", n_files=10)
    cfg = DistributedConfig.open(Settings(mode="file", save_dir=root))
    assert cfg.get("default_model") == "siliconflow/Qwen/Qwen3-32B"
    assert "deepseek" in cfg.get("model_names")
    cfg.set("default_model", "openai/gpt-4.1")
    cfg.put_kb("kb_new", {"name": "n", "kb_type": "lightrag", "additional_params": {"x": 1}})
    import json
    import tomllib

    base = tomllib.loads((root / "config/base.toml").read_text())
    assert base["default_model"] == "openai/gpt-4.1" and "deepseek" in base["model_names"]
    glob = json.loads((root / "knowledge_base_data/global_metadata.json").read_text())
    assert glob["databases"]["kb_new"] == {"name": "n", "kb_type": "lightrag", "additional_params": {"x": 1}}
    typed = json.loads((root / "knowledge_base_data/lightrag_data/metadata_lightrag.json").read_text())
    assert typed["databases"]["kb_new"] == {"name": "n", "kb_type": "lightrag"}
    leftovers = [p.name for p in root.rglob("*.tmp")]
    assert leftovers == []


@pytest.mark.parametrize("processes,rounds", [(4, 15)])
def test_concurrent_writers_lose_nothing(mode: str, target: str, processes: int, rounds: int) -> None:
    """Several processes read-modify-write the same key and the same file record."""
    seed = workers._open(mode, target)
    seed.set("counter", 0)
    seed.put_kb("kb_1", {"name": "shared", "kb_type": "milvus"})
    seed.put_file("file_shared", {"file_id": "file_shared", "database_id": "kb_1", "status": "indexed"})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.starmap(workers.increment, [(mode, target, rounds)] * processes)
    applied = sum(r["applied"] for r in results)
    assert applied == 2 * processes * rounds  # every write applied (after its conflicts were retried)
    if mode == "database":
        assert seed.wait_fresh()
        deadline = time.monotonic() + 5
        while seed.get("counter") != processes * rounds and time.monotonic() < deadline:
            time.sleep(0.05)
    assert seed.get("counter") == processes * rounds
    marks = seed.get_file("file_shared")["marks"]  # type: ignore[index]
    assert len(marks) == len(set(marks)) == processes * rounds
    assert seed.get_versioned("counter").version == processes * rounds + 1  # type: ignore[union-attr]
    seed.close()


def test_blind_upserts_bump_versions_atomically(mode: str, target: str) -> None:
    processes, rounds = 3, 20
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        pool.starmap(workers.blind_writes, [(mode, target, rounds)] * processes)
    cfg = workers._open(mode, target)
    try:
        assert cfg.get_versioned("shared_blind").version == processes * rounds  # type: ignore[union-attr]
    finally:
        cfg.close()


def test_odd_types_in_filter_fields_are_kept(cfg: DistributedConfig) -> None:
    cfg.put_kb("kb_9", {"name": 42, "kb_type": "milvus"})
    cfg.put_file("file_9", {"file_id": "file_9", "database_id": "kb_9", "status": 3, "filename": None})
    assert cfg.get_kb("kb_9") == {"name": 42, "kb_type": "milvus"}
    assert cfg.get_file("file_9")["status"] == 3  # type: ignore[index]
