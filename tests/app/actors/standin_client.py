"""The application's own model clients against the model stand-in (runs in the app's env).

``python standin_client.py http://127.0.0.1:PORT`` prints one JSON object: what Yuxi-Know
v0.6.1's code and its LightRAG (1.4.13) made of the stand-in's answers:

- ``embeddings``: per model of the app's embedding catalogue (its base_url pointed at
  the stand-in, path kept), the vector lengths the LightRAG path (``LightRagKB``'s
  embedding function: LightRAG's ``openai_embed`` or ``ollama_embed``, which checks the
  declared dimension) and the Milvus path (``select_embedding_model(...).aencode``) got,
  next to the dimension the catalogue declares;
- ``extraction``: LightRAG's ``extract_entities`` on two chunks, through the app's LLM
  function for a knowledge base whose llm_info names the stand-in provider: the
  entities and relations it parsed;
- ``keywords``: LightRAG's ``extract_keywords_only`` for a query;
- ``tool_call``: the app's chat model (``load_chat_model``) with the real ``query_kb``
  tool bound, asked about a named knowledge base, invoked and streamed.
"""

import asyncio
import json
import os
import sys
import tempfile
import traceback
from typing import Any

DOCS = {
    "chunk-a": "Ada Lovelace wrote notes on the Analytical Engine. Charles Babbage designed the engine.",
    "chunk-b": "Grace Hopper built a compiler at Remington Rand. Grace Hopper worked in Philadelphia.",
}


def _point_at(url: str, base: str) -> str:
    """*url* with its scheme and host replaced by the stand-in's (the path is what the app calls)."""
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]
    return base + path


async def embeddings(base: str, kb: Any) -> dict[str, Any]:
    from yuxi import config
    from yuxi.models.embed import select_embedding_model

    out: dict[str, Any] = {}
    for model_id, info in list(config.embed_model_names.items()):
        info.base_url = _point_at(info.base_url, base)
        milvus_vectors = await select_embedding_model(model_id).aencode(["Ada Lovelace"])
        out[model_id] = {"name": info.name, "declared": info.dimension}
        out[model_id]["milvus"] = [len(v) for v in milvus_vectors]
        try:
            lightrag_func = kb._get_embedding_func({"model_id": model_id})
        except ModuleNotFoundError as exc:  # LightRAG's ollama_embed imports a package the image lacks
            out[model_id]["lightrag_missing"] = exc.name
            continue
        lightrag_vectors = await lightrag_func(["Ada Lovelace and the Analytical Engine", "Grace Hopper"])
        out[model_id]["lightrag"] = [len(v) for v in lightrag_vectors]
    return out


class _Tokenizer:
    def encode(self, text: str) -> list[int]:
        return [0] * len(text.split())


async def extraction(llm: Any) -> dict[str, Any]:
    from lightrag.operate import extract_entities
    from lightrag.utils import TiktokenTokenizer

    chunks = {
        key: {"content": text, "tokens": len(text.split()), "full_doc_id": key, "chunk_order_index": 0,
              "file_path": f"{key}.txt"}
        for key, text in DOCS.items()
    }  # fmt: skip
    global_config = {
        "llm_model_func": llm,
        "entity_extract_max_gleaning": 1,  # LightRAG's default: one gleaning call per chunk
        "addon_params": {"language": "English"},
        "tokenizer": TiktokenTokenizer(),  # what LightRAG builds by default (o200k_base)
        "max_extract_input_tokens": 20480,
        "llm_model_max_async": 2,
    }
    results = await extract_entities(chunks, global_config)
    entities: dict[str, list[str]] = {}
    relations: list[list[str]] = []
    for nodes, edges in results:
        for name, found in nodes.items():
            entities.setdefault(name, []).extend(e["source_id"] for e in found)
        relations.extend([src, tgt] for src, tgt in edges)
    return {"entities": entities, "relations": relations}


async def keywords(llm: Any) -> dict[str, Any]:
    from lightrag import QueryParam
    from lightrag.operate import extract_keywords_only

    class _NoCache:  # LightRAG reads only this of its cache storage when caching is off
        def __init__(self) -> None:
            self.global_config = {"enable_llm_cache": False}

    param = QueryParam(mode="mix", model_func=llm)
    config = {"addon_params": {"language": "English"}, "tokenizer": _Tokenizer()}
    high, low = await extract_keywords_only("What did Ada Lovelace write?", param, config, _NoCache())
    return {"high": high, "low": low}


async def tool_call() -> dict[str, Any]:
    from yuxi.agents.models import load_chat_model
    from yuxi.agents.toolkits.kbs import get_common_kb_tools

    model = load_chat_model("standin/standin-chat").bind_tools(get_common_kb_tools())
    question = 'What does the knowledge base "Computing History" say about Ada Lovelace?'
    invoked = await model.ainvoke(question)
    streamed = None
    async for chunk in model.astream(question):
        streamed = chunk if streamed is None else streamed + chunk
    return {
        "invoked": invoked.tool_calls,
        "streamed": getattr(streamed, "tool_calls", None),
    }


async def run(base: str) -> dict[str, Any]:
    from yuxi import config
    from yuxi.config.static.models import ChatModelProvider
    from yuxi.knowledge.implementations.lightrag import LightRagKB

    config.model_names["standin"] = ChatModelProvider(
        name="Stand-in", url=base, base_url=base + "/v1", default="standin-chat", env="NO_API_KEY",
        models=["standin-chat"], custom=True,
    )  # fmt: skip
    kb = LightRagKB(tempfile.mkdtemp(prefix="standin-kb-"))
    # What a knowledge base created with llm_info naming the stand-in provider gets.
    llm = kb._get_llm_func({"provider": "standin", "model_name": "standin-chat"})
    return {
        "embeddings": await embeddings(base, kb),
        "extraction": await extraction(llm),
        "keywords": await keywords(llm),
        "tool_call": await tool_call(),
    }


def main() -> None:
    sys.path.insert(0, os.getcwd())
    try:
        result = asyncio.run(run(sys.argv[1].rstrip("/")))
    except Exception as exc:  # one line the test shows, the trace on stderr
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
