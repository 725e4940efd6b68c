"""The application's own model clients accept the model stand-in's answers (db tier: the api image tree).

The stand-in (yuxi_k8s.probes.model_standin) runs here on loopback; the real Yuxi-Know
v0.6.1 code and its LightRAG 1.4.13 run from the api image's tree
(tests/app/actors/standin_client.py) and talk to it: every embedding model of the app's
catalogue gets vectors of the length it declares, on both the LightRAG and the Milvus
path; LightRAG's own extraction parses entities and relations out of the stand-in's
answers and its keyword extraction reads the stand-in's JSON; the app's chat model,
with the real knowledge-base tools bound, gets a ``query_kb`` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.servers import actor_result
from yuxi_k8s.app.localrun import AppRunner
from yuxi_k8s.probes import model_standin

ACTOR = "tests/app/actors/standin_client.py"
# LightRAG counts tokens with tiktoken, whose encodings are downloaded on first use (no internet
# here or on the cluster); llama-index-core, in the app's venv, ships cl100k_base and o200k_base.
TIKTOKEN_CACHE_DIR = "/app/.venv/lib/python3.13/site-packages/llama_index/core/_static/tiktoken_cache"


@pytest.fixture
def standin() -> Iterator[str]:
    with model_standin.serving(chunk_delay=0.0) as url:
        yield url


def _run_actor(runner: AppRunner, standin: str, tmp_path: Path) -> dict[str, Any]:
    saves = tmp_path / "saves"
    saves.mkdir()
    env = {
        "SAVE_DIR": str(saves),
        "YUXI_SKIP_APP_INIT": "1",  # no graph service (Neo4j) at import
        "OPENAI_API_KEY": "stand-in",  # the app refuses to start without a provider key
        "TIKTOKEN_CACHE_DIR": TIKTOKEN_CACHE_DIR,
    }
    done = runner.run(["python", runner.in_checkout(ACTOR), standin], env, timeout=300)
    return actor_result(done)


def test_the_apps_clients_accept_the_standins_answers(
    app_runner: AppRunner, standin: str, tmp_path: Path
) -> None:
    before = dict(model_standin.STATS)
    result = _run_actor(app_runner, standin, tmp_path)

    embeddings = result["embeddings"]
    assert len(embeddings) >= 7, embeddings  # v0.6.1's catalogue has seven embedding models
    for model_id, seen in embeddings.items():
        declared = seen["declared"]
        assert seen["milvus"] == [declared], (model_id, seen)
        assert seen["name"] in model_standin.standin_vectors.DIMENSIONS, (
            f"{seen['name']} missing from the table"
        )
        if model_id.startswith("ollama/"):
            # LightRAG's ollama_embed imports the `ollama` package, which the app's lock leaves out:
            # a LightRAG knowledge base on an Ollama model cannot work in v0.6.1's image.
            assert seen.get("lightrag_missing") == "ollama", (model_id, seen)
        else:
            assert seen["lightrag"] == [declared, declared], (model_id, seen)

    extraction = result["extraction"]
    entities = extraction["entities"]
    for name, chunk in [
        ("Ada Lovelace", "chunk-a"),
        ("Analytical Engine", "chunk-a"),
        ("Grace Hopper", "chunk-b"),
    ]:
        assert chunk in entities.get(name, []), entities
    assert ["Ada Lovelace", "Analytical Engine"] in extraction["relations"], extraction["relations"]
    assert ["Grace Hopper", "Remington Rand"] in extraction["relations"], extraction["relations"]

    assert result["keywords"]["low"] == ["Ada Lovelace"], result["keywords"]
    assert result["keywords"]["high"], result["keywords"]

    for calls in (result["tool_call"]["invoked"], result["tool_call"]["streamed"]):
        assert [c["name"] for c in calls] == ["query_kb"], calls
        assert calls[0]["args"]["kb_name"] == "Computing History", calls

    after = model_standin.STATS
    # two chunks, each an extraction and a gleaning call, and one keyword call
    assert after["lightrag"] - before["lightrag"] == 5, (before, after)
    assert after["tool_calls"] - before["tool_calls"] == 2, (before, after)
