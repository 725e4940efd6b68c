"""The application in full mode (knowledge bases on) on loopback: what its processes need.

The e2e tier's dependencies run beside them (the kit's Milvus, MinIO; fixtures in
tests/app/conftest.py) and the model stand-in listens on 127.0.0.1:8000, where the
application's catalogue sends the ``vllm/...`` embedding model.
"""

from __future__ import annotations

from yuxi_k8s.app.localdeps import MinioEndpoint

EMBED_MODEL = "vllm/Qwen/Qwen3-Embedding-0.6B"  # the catalogue's URL: http://localhost:8000/v1/embeddings
STANDIN_PORT = 8000
HOLD_WORD = "Holdfast"  # the stand-in holds an embedding of a text with it (--hold-word) until released
# LightRAG and the embedding truncation load tiktoken encodings; offline they come from here.
TIKTOKEN_CACHE = "/app/.venv/lib/python3.13/site-packages/llama_index/core/_static/tiktoken_cache"
DOCUMENT = (
    "Harbour Lighthouse Maintenance\n\n"
    "The Harbour Lighthouse lamp is cleaned every Tuesday by the Coastal Guild.\n"
    "Its lens was made in Glasgow and weighs four tonnes.\n"
)


def full_mode_env(milvus_uri: str, minio: MinioEndpoint) -> dict[str, str]:
    """The api container's environment in full mode, for app processes on loopback."""
    return {
        "LITE_MODE": "false",
        "MILVUS_URI": milvus_uri,
        "YUXI_SKIP_APP_INIT": "1",  # the graph service (Neo4j) is not part of these flows
        "RUNNING_IN_DOCKER": "",  # else Milvus' embedding calls go to host.docker.internal
        "TIKTOKEN_CACHE_DIR": TIKTOKEN_CACHE,
        **minio.app_env(),
    }
