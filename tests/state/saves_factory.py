"""A realistic saves/ tree, generated: what a Yuxi-Know install accumulates.

Several model providers (one with an unknown key), custom providers, milvus and
lightrag knowledge bases (``kb_`` and ``kb_private_`` ids), many files in every
status including the older ``done``/``failed``, folders, unicode names, an
orphan file, secrets in embed_info, TOML dates, unknown keys at every level,
graph_info.json and tasks.json. Deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import tomli_w

STATUSES = [
    "uploaded",
    "parsing",
    "parsed",
    "error_parsing",
    "indexing",
    "indexed",
    "error_indexing",
    "done",
    "failed",
]
NAMES = [
    "年度报告",
    "Produktübersicht",
    "manual técnico",
    "安装指南 v2",
    "naïve café notes",
    "réseau 🚀",
    "plain",
]
EXTS = ["pdf", "docx", "md", "txt", "html", "xlsx", "png"]


def _hash(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:10]


def providers() -> dict[str, dict[str, Any]]:
    return {
        "siliconflow": {
            "name": "SiliconFlow",
            "url": "https://cloud.siliconflow.cn/models",
            "base_url": "https://api.siliconflow.cn/v1",
            "default": "Qwen/Qwen3-32B",
            "env": "SILICONFLOW_API_KEY",
            "models": ["Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3.2", "THUDM/GLM-4-9B"],
        },
        "openai": {
            "name": "OpenAI",
            "base_url": "https://api.openai.com/v1",
            "default": "gpt-4o-mini",
            "env": "OPENAI_API_KEY",
            "models": ["gpt-4o-mini", "gpt-4.1"],
            "custom": False,
        },
        "deepseek": {
            "name": "DeepSeek",
            "base_url": "https://api.deepseek.com/v1",
            "default": "deepseek-chat",
            "env": "DEEPSEEK_API_KEY",
            "models": ["deepseek-chat", "deepseek-reasoner"],
            "future_field": {"rate_limit": 60},  # unknown to us: must survive
        },
        "dashscope": {
            "name": "阿里百炼",
            "base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1",
            "default": "qwen-max",
            "env": "DASHSCOPE_API_KEY",
            "models": ["qwen-max", "qwen-plus"],
        },
        "zhipu": {
            "name": "智谱AI",
            "base_url": "https://open.bigmodel.cn/api/paas/v4/",
            "default": "glm-4-flash",
            "env": "ZHIPUAI_API_KEY",
            "models": ["glm-4-flash"],
        },
    }


def build_saves(root: Path, *, n_files: int = 120, seed: int = 7, n_tasks: int = 12) -> Path:
    """Write a saves/ tree under *root* and return it."""
    rng = random.Random(seed)
    root = Path(root)
    (root / "config").mkdir(parents=True, exist_ok=True)
    base = {
        "enable_reranker": True,
        "enable_content_guard": False,
        "enable_web_search": True,
        "default_model": "siliconflow/Qwen/Qwen3-32B",
        "fast_model": "siliconflow/THUDM/GLM-4-9B",
        "embed_model": "siliconflow/BAAI/bge-m3",
        "reranker": "siliconflow/BAAI/bge-reranker-v2-m3",
        "default_agent_id": "ChatbotAgent",
        "model_dir": "/models",
        "experimental": {"sandbox": {"enabled": False, "limits": [1, 2, 3]}},
        "license_checked_at": __import__("datetime").datetime(2025, 1, 2, 3, 4, 5),
        "model_names": providers(),
    }
    (root / "config/base.toml").write_text(tomli_w.dumps(base), encoding="utf-8")
    custom = {
        "model_names": {
            "local-vllm": {
                "name": "本地 vLLM 服务",
                "url": "https://docs.vllm.ai",
                "base_url": "http://vllm.models.svc:8000/v1",
                "default": "Qwen/Qwen2.5-7B-Instruct",
                "env": "LOCAL_VLLM_API_KEY",
                "models": ["Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-14B-Instruct"],
                "custom": True,
            },
            "local-ollama": {
                "name": "本地 Ollama",
                "base_url": "http://ollama:11434/v1",
                "default": "llama3.2",
                "env": "NO_API_KEY",
                "models": ["llama3.2", "qwen2.5"],
                "custom": True,
            },
        },
        "schema_note": "kept verbatim",
    }
    (root / "config/custom_providers.toml").write_text(tomli_w.dumps(custom), encoding="utf-8")

    kbs: dict[str, dict[str, Any]] = {}
    for i, (kb_type, private) in enumerate(
        [("milvus", False), ("milvus", True), ("lightrag", False), ("lightrag", True)]
    ):
        db_id = f"kb_{'private_' if private else ''}{_hash('kb', seed, i)}"
        kbs[db_id] = {
            "name": f"{NAMES[i % len(NAMES)]} 知识库 {i}",
            "description": f"Knowledge base #{i} — ünïcödé",
            "kb_type": kb_type,
            "created_at": f"2025-0{i + 1}-0{i + 2}T09:14:27.118234",
            "embed_info": {
                "name": "siliconflow/BAAI/bge-m3",
                "dimension": 1024,
                "base_url": "https://api.siliconflow.cn/v1/embeddings",
                "api_key": f"sk-secret-{i}",  # metadata can hold secrets
                "model_id": "siliconflow/BAAI/bge-m3",
            },
            "llm_info": None
            if kb_type == "milvus"
            else {"provider": "siliconflow", "model_name": "Qwen/Qwen3-32B"},
            "metadata": {"chunk_size": 1000, "chunk_overlap": 200, "ocr": i % 2 == 0},
        }
    global_doc = {
        "databases": {
            db_id: {
                "name": kb["name"],
                "description": kb["description"],
                "kb_type": kb["kb_type"],
                "created_at": kb["created_at"],
                "additional_params": {
                    "language": "Chinese" if i % 2 else "English",
                    "auto_generate_questions": False,
                },
                **({"owner": "ops"} if i == 3 else {}),  # unknown key
            }
            for i, (db_id, kb) in enumerate(kbs.items())
        },
        "updated_at": "2025-05-06T08:00:11.002144",
        "version": "2.0",
    }
    # One base exists only in global_metadata (its type file entry was lost): kept as is.
    global_doc["databases"]["kb_orphan_global"] = {
        "name": "half-deleted",
        "description": "",
        "kb_type": "milvus",
        "created_at": "2024-12-31T23:59:59",
        "additional_params": {},
    }
    kb_dir = root / "knowledge_base_data"
    kb_dir.mkdir(parents=True, exist_ok=True)
    (kb_dir / "global_metadata.json").write_text(
        json.dumps(global_doc, ensure_ascii=False, indent=2), "utf-8"
    )

    ids = list(kbs)
    files: dict[str, dict[str, dict[str, Any]]] = {"milvus": {}, "lightrag": {}}
    folders: dict[str, str] = {}
    for n in range(n_files):
        db_id = ids[n % len(ids)]
        kb_type = kbs[db_id]["kb_type"]
        file_id = f"file_{_hash('file', seed, n)}"
        is_folder = n % 17 == 0
        name = f"{rng.choice(NAMES)} {n}" + ("" if is_folder else f".{rng.choice(EXTS)}")
        record = {
            "file_id": file_id,
            "database_id": db_id,
            "filename": name,
            "path": f"saves/uploads/{db_id}/{name}",
            "file_type": "folder" if is_folder else name.rsplit(".", 1)[-1],
            "status": "indexed" if is_folder else STATUSES[n % len(STATUSES)],
            "content_hash": None if is_folder else hashlib.md5(name.encode()).hexdigest(),
            "parent_id": folders.get(db_id) if not is_folder else None,
            "is_folder": is_folder,
            "markdown_file": None
            if is_folder
            else f"saves/knowledge_base_data/{kb_type}_data/{db_id}/{file_id}.md",
            "processing_params": {"enable_ocr": rng.choice(["disable", "onnx_rapid_ocr", "mineru_ocr"])},
            "created_at": f"2025-03-{1 + n % 28:02d}T09:20:01.{n:06d}",
            "created_by": rng.choice(["admin", "张三", "ops"]),
            "updated_by": "admin",
            "error": "解析失败: timeout"
            if STATUSES[n % len(STATUSES)] in ("error_parsing", "failed")
            else None,
        }
        if n % 11 == 0:
            record["extra_future_field"] = {"pages": n}
        if is_folder:
            folders[db_id] = file_id
        files[kb_type][file_id] = record
    files["milvus"]["file_orphan0001"] = {  # its base is gone; the app keeps it, so do we
        "file_id": "file_orphan0001",
        "database_id": "kb_deleted_long_ago",
        "filename": "孤儿.pdf",
        "status": "done",
    }
    for kb_type in ("milvus", "lightrag"):
        doc = {
            "databases": {k: v for k, v in kbs.items() if v["kb_type"] == kb_type},
            "files": files[kb_type],
            "benchmarks": {} if kb_type == "milvus" else {"bench_1": {"name": "recall@5", "score": 0.81}},
            "kb_type": kb_type,
            "updated_at": "2025-05-06T08:00:11.002144",
        }
        path = kb_dir / f"{kb_type}_data" / f"metadata_{kb_type}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")

    graph = root / "knowledge_graph/neo4j/graph_info.json"
    graph.parent.mkdir(parents=True, exist_ok=True)
    graph.write_text(
        json.dumps(
            {
                "graph_name": "neo4j",
                "status": "open",
                "embed_model_name": "siliconflow/BAAI/bge-m3",
                "embed_model_dimension": 1024,
                "unindexed_node_count": 3,
                "last_updated": "2025-05-01T12:00:00.000000",
            },
            ensure_ascii=False,
            indent=2,
        ),
        "utf-8",
    )
    tasks = []
    for n in range(n_tasks):
        status = ["success", "failed", "cancelled", "running", "pending"][n % 5]
        tasks.append(
            {
                "id": _hash("task", seed, n) * 3,
                "name": f"索引 {NAMES[n % len(NAMES)]}",
                "type": "knowledge_ingest",
                "status": status,
                "progress": 100.0 if status != "pending" else 0.0,
                "message": "任务已完成" if status == "success" else "任务执行失败",
                "created_at": f"2025-04-{1 + n:02d}T10:00:00Z",
                "updated_at": f"2025-04-{1 + n:02d}T10:05:00Z",
                "started_at": None,
                "completed_at": None,
                "payload": {"db_id": ids[n % len(ids)]},
                "result": None,
                "error": None,
                "cancel_requested": False,
            }
        )
    tasks_path = root / "tasks/tasks.json"
    tasks_path.parent.mkdir(parents=True, exist_ok=True)
    tasks_path.write_text(
        json.dumps({"tasks": tasks, "updated_at": "2025-05-06T08:00:00Z"}, ensure_ascii=False), "utf-8"
    )
    (root / "logs").mkdir(exist_ok=True)
    (root / "uploads").mkdir(exist_ok=True)
    return root


def parsed_tree(root: Path) -> dict[str, Any]:
    """Every managed file under *root*, parsed (content, not formatting)."""
    import tomllib

    out: dict[str, Any] = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(".yuxi-k8s") or not path.read_text("utf-8").strip():
            continue  # an empty file holds nothing, for the app and for us
        if path.suffix == ".toml":
            out[rel] = tomllib.loads(path.read_text("utf-8"))
        elif path.suffix == ".json":
            out[rel] = json.loads(path.read_text("utf-8"))
    return out
