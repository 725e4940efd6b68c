"""The model stand-in's pure parts and its HTTP answers, in process (static tier: no services).

Vectors: deterministic, unit length, of the declared dimension, close when texts share
words. LightRAG answers: records in the field layout lightrag-hku 1.4.13's parser
accepts (its real parser runs in tests/app/test_model_standin.py). HTTP: the shapes
OpenAI's, Ollama's and the rerank clients read, and a tool call only when asked for.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from yuxi_k8s.probes import model_standin, standin_graph, standin_vectors

DELIM = standin_graph.TUPLE_DELIMITER


# --- vectors -------------------------------------------------------------------------------
def test_vectors_are_deterministic_unit_length_and_of_the_declared_dimension() -> None:
    for model, dim in [
        ("Pro/BAAI/bge-m3", 1024),
        ("nomic-embed-text", 768),
        ("text-embedding-3-large", 3072),
    ]:
        assert standin_vectors.dimension_for(model) == dim
        vector = standin_vectors.embed("Ada Lovelace wrote programs", dim)
        assert len(vector) == dim
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
        assert vector == standin_vectors.embed("Ada Lovelace wrote programs", dim)
    assert standin_vectors.dimension_for("unknown-model") == standin_vectors.DEFAULT_DIMENSION
    assert standin_vectors.dimension_for("Pro/BAAI/bge-m3", 256) == 256  # the request's `dimensions` wins
    assert len(standin_vectors.embed("", 8)) == 8  # no words: still a unit vector (Milvus rejects zeros)


def test_the_table_has_every_embedding_model_of_the_app_catalogue() -> None:
    # Yuxi-Know v0.6.1 (yuxi/config/static/models.py): the names it sends, the dimensions it declares.
    catalogue = {"BAAI/bge-m3": 1024, "Pro/BAAI/bge-m3": 1024, "Qwen/Qwen3-Embedding-0.6B": 1024,
                 "Qwen3-Embedding-0.6B": 1024, "nomic-embed-text": 768, "bge-m3": 1024,
                 "text-embedding-v4": 1024}  # fmt: skip
    assert {name: standin_vectors.DIMENSIONS[name] for name in catalogue} == catalogue


@pytest.mark.parametrize("bad", [0, -1, standin_vectors.MAX_DIMENSION + 1, "1024", True])
def test_a_dimension_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(standin_vectors.DimensionError):
        standin_vectors.dimension_for("m", bad)


def test_texts_sharing_words_are_closer_than_texts_that_share_none() -> None:
    dim = 1024
    query = standin_vectors.embed("Who designed the Analytical Engine?", dim)
    related = standin_vectors.embed("Charles Babbage designed the Analytical Engine in London.", dim)
    unrelated = standin_vectors.embed("Milvus stores vectors for retrieval", dim)
    assert standin_vectors.cosine(query, related) > 0.5
    assert standin_vectors.cosine(query, unrelated) < 0.1
    chinese_a, chinese_b = standin_vectors.embed("知识库检索", dim), standin_vectors.embed("检索知识", dim)
    assert standin_vectors.cosine(chinese_a, chinese_b) > 0.5  # one token per CJK character


def test_base64_is_little_endian_float32_as_openai_sends_it() -> None:
    vector = standin_vectors.embed("some words", 16)
    raw = base64.b64decode(standin_vectors.as_base64(vector))
    decoded = struct.unpack("<16f", raw)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, vector, strict=True))


def test_dimension_overrides_from_the_command_line() -> None:
    assert standin_vectors.parse_dimension_overrides(["my/model=512", "other=8"]) == {
        "my/model": 512,
        "other": 8,
    }
    for bad in ["nodim", "m=", "m=abc", "=5", "m=0"]:
        with pytest.raises(standin_vectors.DimensionError):
            standin_vectors.parse_dimension_overrides([bad])


# --- LightRAG answers ------------------------------------------------------------------------
TEXT = (
    "Ada Lovelace wrote notes on the Analytical Engine. The Engine was never built.\n"
    "In London, Ada's notes described a program. Charles Babbage met Ada Lovelace in London."
)


def _extraction_prompt(text: str) -> tuple[str, str]:
    system = f"---Role--- A Knowledge Graph Specialist {standin_graph.EXTRACTION_MARKER} from the input text."
    user = f"---Task---\n<Entity_types>\n[Person]\n\n<Input Text>\n```\n{text}\n```\n\n<Output>\n"
    return system, user


def test_extraction_records_have_the_fields_lightrags_parser_reads() -> None:
    system, user = _extraction_prompt(TEXT)
    answer = standin_graph.answer(system, user)
    assert answer is not None
    lines = answer.splitlines()
    assert lines[-1] == standin_graph.COMPLETION_DELIMITER
    entities = [line.split(DELIM) for line in lines if line.startswith("entity")]
    relations = [line.split(DELIM) for line in lines if line.startswith("relation")]
    assert len(entities) + len(relations) == len(lines) - 1  # nothing else, one record a line
    assert all(len(fields) == 4 and all(f.strip() for f in fields) for fields in entities)
    assert all(len(fields) == 5 and fields[1] != fields[2] for fields in relations)
    names = [fields[1] for fields in entities]
    assert names == ["Ada Lovelace", "Analytical Engine", "Engine", "London", "Ada", "Charles Babbage"]
    pairs = {frozenset(fields[1:3]) for fields in relations}
    assert frozenset({"Ada Lovelace", "Analytical Engine"}) in pairs
    assert frozenset({"Charles Babbage", "Ada Lovelace"}) in pairs
    assert frozenset({"Analytical Engine", "Engine"}) not in pairs  # a longer name hides the shorter one
    assert answer == standin_graph.answer(system, user)  # deterministic


def test_extraction_without_shared_sentences_still_links_entities_and_cleans_delimiters() -> None:
    system, user = _extraction_prompt("Alpha Centauri is far. The <|#|> Beta star is young.")
    answer = standin_graph.answer(system, user)
    assert answer is not None
    relations = [line.split(DELIM) for line in answer.splitlines() if line.startswith("relation")]
    assert [fields[1:3] for fields in relations] == [["Alpha Centauri", "Beta"]]
    assert all(len(line.split(DELIM)) in (4, 5) for line in answer.splitlines()[:-1])


def test_a_chunk_without_names_yields_only_the_completion_delimiter() -> None:
    system, user = _extraction_prompt("nothing here is capitalised.")
    assert standin_graph.answer(system, user) == standin_graph.COMPLETION_DELIMITER


def test_gleaning_adds_nothing() -> None:
    system, _ = _extraction_prompt(TEXT)
    user = f"---Task---\n{standin_graph.GLEANING_MARKER}, identify missed entities.\n<Output>\n"
    assert standin_graph.answer(system, user) == standin_graph.COMPLETION_DELIMITER


def test_query_keywords_are_lightrags_json_with_names_as_low_level() -> None:
    query = "Who met Ada Lovelace in London?"
    prompt = f"examples...\n{standin_graph.KEYWORDS_MARKER}\nUser Query: {query}\n\n---Output---\nOutput:"
    answer = standin_graph.answer("", prompt)
    assert answer is not None
    parsed = json.loads(answer)
    assert parsed == {"high_level_keywords": ["met"], "low_level_keywords": ["Ada Lovelace", "London"]}
    lower = json.loads(
        standin_graph.keywords_answer(f"{standin_graph.KEYWORDS_MARKER}\nUser Query: how are vectors stored")
    )
    assert lower["low_level_keywords"] == ["vectors", "stored"]  # no names: the content words


def test_a_summary_joins_the_distinct_descriptions() -> None:
    lines = "\n".join(json.dumps({"Description": d}) for d in ["A is first.", "A is second.", "A is first."])
    task = f"Your task is to {standin_graph.SUMMARY_MARKER}."
    prompt = f"{task}\nDescription List:\n\n```\n{lines}\n```\n\n---Output---"
    assert standin_graph.answer("", prompt) == "A is first.\n\nA is second."


def test_other_prompts_are_not_lightrags() -> None:
    assert standin_graph.answer("You are helpful.", "hello") is None


# --- over HTTP -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    model_standin.Handler.chunk_delay = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), model_standin.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read().decode()
        if response.headers.get("Content-Type") == "text/event-stream":
            return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
        return json.loads(raw)


def test_embeddings_as_floats_and_as_base64(standin: str) -> None:
    floats = _post(f"{standin}/v1/embeddings", {"model": "nomic-embed-text", "input": ["a b", "c"]})
    assert [len(d["embedding"]) for d in floats["data"]] == [768, 768]
    assert [d["index"] for d in floats["data"]] == [0, 1]
    encoded = _post(f"{standin}/v1/embeddings", {"model": "x", "input": "a b", "encoding_format": "base64",
                                                  "dimensions": 64})  # fmt: skip
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert len(raw) == 64 * 4
    assert list(struct.unpack("<64f", raw)) == pytest.approx(standin_vectors.embed("a b", 64))
    # DashScope's compatible-mode path and Ollama's own shape
    dashscope = _post(
        f"{standin}/compatible-mode/v1/embeddings", {"model": "text-embedding-v4", "input": "q"}
    )
    assert len(dashscope["data"][0]["embedding"]) == 1024
    ollama = _post(f"{standin}/api/embed", {"model": "nomic-embed-text", "input": ["q", "r"]})
    assert [len(v) for v in ollama["embeddings"]] == [768, 768]


def test_a_bad_embedding_request_is_a_400_with_a_message(standin: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as failed:
        _post(f"{standin}/v1/embeddings", {"model": "m", "input": "q", "dimensions": 0})
    assert failed.value.code == 400
    assert "dimensions" in json.loads(failed.value.read())["error"]["message"]


def test_rerank_scores_the_document_sharing_words_first(standin: str) -> None:
    body = {"model": "BAAI/bge-reranker-v2-m3", "query": "Analytical Engine",
            "documents": ["Milvus stores vectors", "Babbage designed the Analytical Engine"]}  # fmt: skip
    results = _post(f"{standin}/v1/rerank", body)["results"]
    assert [r["index"] for r in results] == [1, 0]
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    given = {"query": body["query"], "documents": body["documents"]}
    dashscope = _post(f"{standin}/api/v1/services/rerank/text-rerank/text-rerank", {"input": given})
    assert [r["index"] for r in dashscope["output"]["results"]] == [1, 0]


KB_TOOL = {"type": "function", "function": {"name": "query_kb", "parameters": {"type": "object"}}}
ASK_KB = 'What does the knowledge base "Docs" say about Ada?'


def test_chat_echoes_when_no_knowledge_base_is_named_even_if_the_tool_is_offered(standin: str) -> None:
    body = {"model": "standin-chat", "messages": [{"role": "user", "content": "hello"}], "tools": [KB_TOOL]}
    answer = _post(f"{standin}/v1/chat/completions", body)
    assert answer["choices"][0]["message"]["content"] == "stand-in answer: hello"
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_chat_calls_the_knowledge_base_tool_then_answers_from_its_result(standin: str) -> None:
    asked = [{"role": "user", "content": ASK_KB}]
    answer = _post(f"{standin}/v1/chat/completions", {"messages": asked, "tools": [KB_TOOL]})
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "query_kb"
    assert json.loads(call["function"]["arguments"]) == {"kb_name": "Docs", "query_text": ASK_KB}
    # without the tool on offer, the same question is only echoed
    plain = _post(f"{standin}/v1/chat/completions", {"messages": asked})
    assert plain["choices"][0]["message"]["content"] == f"stand-in answer: {ASK_KB}"
    # streamed: one chunk carries the whole call
    events = _post(f"{standin}/v1/chat/completions", {"messages": asked, "tools": [KB_TOOL], "stream": True})
    streamed = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls") or []]
    assert [c["function"]["name"] for c in streamed] == ["query_kb"]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # the tool's result comes back: the answer quotes it
    result = {"role": "tool", "tool_call_id": call["id"], "content": "Ada wrote the first program."}
    history = [*asked, {"role": "assistant", "content": None, "tool_calls": [call]}, result]
    final = _post(f"{standin}/v1/chat/completions", {"messages": history, "tools": [KB_TOOL]})
    assert (
        final["choices"][0]["message"]["content"]
        == "stand-in answer from query_kb: Ada wrote the first program."
    )


def test_streamed_extraction_arrives_line_by_line_and_joins_to_the_records(standin: str) -> None:
    system, user = _extraction_prompt(TEXT)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    events = _post(f"{standin}/v1/chat/completions", {"messages": messages, "stream": True})
    pieces = [ch["delta"].get("content") or "" for e in events for ch in e["choices"]]
    assert "".join(pieces) == standin_graph.answer(system, user)
    assert all(p.count("\n") <= 1 for p in pieces)
