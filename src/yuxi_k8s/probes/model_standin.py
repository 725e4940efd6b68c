"""An OpenAI-compatible stand-in for a model provider, for tests on a cluster without internet.

``python -m yuxi_k8s.probes.model_standin --port 8000`` serves:

- ``GET /v1/models``: one chat model, ``standin-chat``;
- ``POST /v1/chat/completions``: deterministic answers, as one JSON body or, with
  ``"stream": true``, as server-sent events, one word every ``--chunk-delay`` seconds, so
  a client can tell a streaming proxy from a buffering one by when the first word arrives:

  - LightRAG's prompts (entity extraction, gleaning, description summaries, query
    keywords) get answers in the format its parser reads (:mod:`.standin_graph`);
  - when the knowledge-base tool ``query_kb`` is offered and the user's message names a
    knowledge base in quotes (``knowledge base "Docs"`` or ``知识库“Docs”``), a call of
    that tool with the message as its query; after a tool's result,
    ``"stand-in answer from <tool>: <the result>"``;
  - anything else: ``"stand-in answer: <the last user message>"``;
- ``POST /v1/embeddings`` (any path ending so): hashed bag-of-words unit vectors (:mod:`.standin_vectors`), of
  the dimension the model name declares in Yuxi-Know's catalogue (or ``dimensions``),
  as float lists or base64 (``encoding_format``, the openai client's default);
- ``POST /api/embed`` (and the older ``/api/embeddings``): the same vectors as Ollama answers;
- ``POST /v1/rerank`` (and DashScope's ``.../text-rerank``): a relevance score per document
  (the cosine of their vectors), best first;
- ``GET /stats``: how many of each were served (a test proves the app called it); embeddings
  also per model name (``embeddings:<model>``);
- with ``--hold-word WORD`` (tests only): an embedding request with WORD in one of its texts
  waits until ``POST /hold/release`` (``held`` in the stats counts them; ``POST /hold/arm``
  holds the next ones again), so a test can keep a file "indexing" on one replica.

It ignores every other parameter.

Pointing Yuxi-Know v0.6.1 at it (facts of that version):

- chat, and LightRAG's LLM: a custom provider whose ``base_url`` is this server's ``/v1``;
  a LightRAG knowledge base uses its ``llm_info`` (``{"provider": ..., "model_name": ...}``
  at creation), else the ``default_model`` setting;
- embeddings and rerank: the app's catalogue is fixed in its code (no setting or variable
  changes a model's URL). Its ``vllm/...`` entries call ``http://localhost:8000/v1/...``
  (``vllm/Qwen/Qwen3-Embedding-0.6B``, 1024; ``vllm/BAAI/bge-reranker-v2-m3``), so this
  server as a sidecar of the api and worker pods (``--host 127.0.0.1 --port 8000``) serves
  them. With ``RUNNING_IN_DOCKER=true`` the Milvus path and the reranker turn ``localhost``
  into ``host.docker.internal`` but LightRAG's embedding path does not: map that name to
  127.0.0.1 (``hostAliases``). The ``ollama/...`` entries cannot serve LightRAG (its
  ``ollama_embed`` needs the ``ollama`` package, which the app's lock lacks);
- LightRAG counts tokens with tiktoken, which downloads its encodings on first use: set
  ``TIKTOKEN_CACHE_DIR`` to llama-index-core's copy in the app's venv
  (``.../site-packages/llama_index/core/_static/tiktoken_cache``: cl100k_base, o200k_base).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from yuxi_k8s.probes import standin_graph, standin_vectors

MODEL = "standin-chat"
KB_TOOL = "query_kb"  # Yuxi-Know v0.6.1's knowledge-base tool (yuxi/agents/toolkits/kbs/tools.py)
MAX_TOOL_ECHO = 2000
STATS = {
    "completions": 0,
    "streamed": 0,
    "lightrag": 0,
    "tool_calls": 0,
    "embeddings": 0,
    "reranks": 0,
    "held": 0,
}
HOLD_RELEASED = threading.Event()
_STATS_LOCK = threading.Lock()
# A knowledge base named in quotes: ASCII, CJK double (U+201C/D) or corner (U+300C/D) quotes.
_NAMED_KB = re.compile(
    "(?:knowledge base|\u77e5\u8bc6\u5e93)\\s*[\"'\u201c\u300c]([^\"'\u201d\u300d]+)[\"'\u201d\u300d]",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reply:
    """A chat answer: text, or one tool call (name and JSON arguments)."""

    text: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    kind: str = "echo"


def _count(**increments: int) -> None:
    with _STATS_LOCK:
        for key, value in increments.items():
            STATS[key] = STATS.get(key, 0) + value


def text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The plain answer: the last user message, echoed."""
    last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return f"stand-in answer: {text_of(last.get('content'))}".strip()


def _tool_name(messages: list[dict[str, Any]], result: dict[str, Any]) -> str:
    if result.get("name"):
        return str(result["name"])
    wanted = result.get("tool_call_id")
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call.get("id") == wanted:
                return str((call.get("function") or {}).get("name") or "tool")
    return "tool"


def _offered(request: dict[str, Any]) -> set[str]:
    return {
        str((tool.get("function") or {}).get("name"))
        for tool in request.get("tools") or []
        if isinstance(tool, dict)
    }


def reply_for(request: dict[str, Any]) -> Reply:
    messages: list[dict[str, Any]] = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    if not messages:
        return Reply(answer_for(messages))
    last = messages[-1]
    if last.get("role") == "tool":
        result = re.sub(r"\s+", " ", text_of(last.get("content"))).strip()[:MAX_TOOL_ECHO]
        return Reply(f"stand-in answer from {_tool_name(messages, last)}: {result}", kind="tool_result")
    system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "system")
    user = text_of(last.get("content")) if last.get("role") == "user" else ""
    graph = standin_graph.answer(system, user)
    if graph is not None:
        return Reply(graph, kind="lightrag")
    named = _NAMED_KB.search(user)
    if named and KB_TOOL in _offered(request):
        return Reply(
            tool=KB_TOOL, arguments={"kb_name": named.group(1).strip(), "query_text": user}, kind="tool"
        )
    return Reply(answer_for(messages))


def embedding_inputs(value: Any) -> list[str]:
    """The request's ``input``: a string, a list of strings, or token arrays (as text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [
            v if isinstance(v, str) else " ".join(map(str, v)) for v in value if isinstance(v, str | list)
        ]
    raise ValueError("input must be a string or a list")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chunk_delay = 0.2
    hold_word: str | None = None
    dimensions: dict[str, int] = standin_vectors.DIMENSIONS

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr, short
        print(f"model-standin: {self.command} {self.path} -> {fmt % args}", flush=True)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(
                200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "yuxi-k8s"}]}
            )
        elif self.path == "/stats":
            with _STATS_LOCK:
                self._json(200, dict(STATS))
        elif self.path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def _route(self) -> Any:
        """The handler for this path: Ollama's exact paths, else by the path's end, as the app's
        catalogue calls them (``/v1/embeddings``, DashScope's ``/compatible-mode/v1/embeddings``...)."""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/api/embed", "/api/embeddings"):
            return self._ollama_embed
        endings = {
            "/chat/completions": self._chat,
            "/embeddings": self._embeddings,
            "/rerank": self._rerank,
            "/text-rerank": self._dashscope_rerank,
        }
        return next((handler for end, handler in endings.items() if path.endswith(end)), None)

    def do_POST(self) -> None:
        if self.path in ("/hold/release", "/hold/arm"):  # let held requests go / hold the next ones
            (HOLD_RELEASED.set if self.path == "/hold/release" else HOLD_RELEASED.clear)()
            self._json(200, {"held": not HOLD_RELEASED.is_set()})
            return
        handler = self._route()
        if handler is None:
            self._error(404, f"no route {self.path}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._error(400, "body is not a JSON object")
            return
        try:
            handler(request)
        except (ValueError, TypeError) as exc:  # a request this stand-in cannot answer, in one line
            self._error(400, str(exc))

    # --- embeddings and rerank ------------------------------------------------------------
    def _vectors(self, model: str, texts: list[str], dimensions: Any = None) -> list[list[float]]:
        dim = standin_vectors.dimension_for(model, dimensions, self.dimensions)
        if self.hold_word and any(self.hold_word in t for t in texts):
            _count(held=1)
            HOLD_RELEASED.wait()
        _count(**{"embeddings": len(texts), f"embeddings:{model}": len(texts)})
        return [standin_vectors.embed(text, dim) for text in texts]

    def _embeddings(self, request: dict[str, Any]) -> None:
        model = str(request.get("model") or "")
        texts = embedding_inputs(request.get("input"))
        vectors = self._vectors(model, texts, request.get("dimensions"))
        as_base64 = request.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": standin_vectors.as_base64(vector) if as_base64 else vector,
            }
            for index, vector in enumerate(vectors)
        ]
        used = sum(len(standin_vectors.tokens(t)) for t in texts)
        usage = {"prompt_tokens": used, "total_tokens": used}
        self._json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _ollama_embed(self, request: dict[str, Any]) -> None:
        model = str(request.get("model") or "")
        if "prompt" in request and "input" not in request:  # the older /api/embeddings
            self._json(200, {"embedding": self._vectors(model, [str(request["prompt"])])[0]})
            return
        texts = embedding_inputs(request.get("input"))
        self._json(
            200, {"model": model, "embeddings": self._vectors(model, texts, request.get("dimensions"))}
        )

    @staticmethod
    def _ranked(query: Any, documents: Any, top_n: Any) -> list[dict[str, Any]]:
        texts = [text_of(d.get("text") if isinstance(d, dict) else d) for d in documents or []]
        scores = standin_vectors.relevance(text_of(query), texts)
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        if isinstance(top_n, int) and top_n > 0:
            ranked = ranked[:top_n]
        _count(reranks=1)
        return [{"index": i, "relevance_score": scores[i]} for i in ranked]

    def _rerank(self, request: dict[str, Any]) -> None:
        """SiliconFlow's and vLLM's (OpenAI-style) rerank: ``results`` best first."""
        results = self._ranked(request.get("query"), request.get("documents"), request.get("top_n"))
        reply = {"id": f"rerank-{uuid.uuid4().hex[:12]}", "model": request.get("model"), "results": results}
        self._json(200, reply)

    def _dashscope_rerank(self, request: dict[str, Any]) -> None:
        """DashScope's rerank: query and documents under ``input``, results under ``output``."""
        given = request.get("input") or {}
        top_n = (request.get("parameters") or {}).get("top_n")
        results = self._ranked(given.get("query"), given.get("documents"), top_n)
        self._json(200, {"request_id": uuid.uuid4().hex, "output": {"results": results}})

    # --- chat -----------------------------------------------------------------------------
    def _chat(self, request: dict[str, Any]) -> None:
        reply = reply_for(request)
        model = request.get("model") or MODEL
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        _count(
            completions=1,
            streamed=1 if request.get("stream") else 0,
            lightrag=1 if reply.kind == "lightrag" else 0,
            tool_calls=1 if reply.tool else 0,
        )
        call = None
        if reply.tool:
            arguments = json.dumps(reply.arguments, ensure_ascii=False)
            call = {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": reply.tool, "arguments": arguments},
            }
        finish = "tool_calls" if call else "stop"
        words = len(reply.text.split())
        usage = {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": 1 + words}
        if not request.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else reply.text}
            if call:
                message["tool_calls"] = [call]
            self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            head = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
            body = {**head, "choices": choices, **(extra or {})}
            self._chunk(f"data: {json.dumps(body)}\n\n".encode())

        if call:
            call_delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}
            event([{"index": 0, "delta": call_delta, "finish_reason": None}])
        else:
            # LightRAG's records are one a line: stream by line there, by word elsewhere.
            pieces = (
                reply.text.splitlines(keepends=True) if reply.kind == "lightrag" else reply.text.split(" ")
            )
            for index, piece in enumerate(pieces):
                delta: dict[str, Any] = {
                    "content": piece if index == 0 or reply.kind == "lightrag" else " " + piece
                }
                if index == 0:
                    delta["role"] = "assistant"
                event([{"index": 0, "delta": delta, "finish_reason": None}])
                time.sleep(self.chunk_delay)
        event([{"index": 0, "delta": {}, "finish_reason": finish}])
        if (request.get("stream_options") or {}).get("include_usage"):
            event([], {"usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@contextlib.contextmanager
def serving(chunk_delay: float, host: str = "127.0.0.1") -> Iterator[str]:
    """The stand-in in a thread of this process on a free port (for tests): its base URL. The word
    pace is the class's, so it holds for every stand-in of this process until the block ends."""
    before = Handler.chunk_delay
    Handler.chunk_delay = chunk_delay
    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        Handler.chunk_delay = before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument(
        "--port",
        type=int,
        action="append",
        help="port to serve on; repeat for more (e.g. 8000 and Ollama's 11434) [8000]",
    )
    parser.add_argument("--chunk-delay", type=float, default=0.2, help="seconds between streamed words [0.2]")
    parser.add_argument(
        "--dimension",
        action="append",
        default=[],
        metavar="MODEL=DIM",
        help="the vector length for an embedding model name (adds to or replaces the built-in table)",
    )
    parser.add_argument(
        "--hold-word",
        default=None,
        help="tests only: hold embedding requests with this word until POST /hold/release",
    )
    args = parser.parse_args(argv)
    Handler.chunk_delay = args.chunk_delay
    Handler.hold_word = args.hold_word
    try:
        Handler.dimensions = {
            **standin_vectors.DIMENSIONS,
            **standin_vectors.parse_dimension_overrides(args.dimension),
        }
    except standin_vectors.DimensionError as exc:
        parser.error(str(exc))
    servers = [ThreadingHTTPServer((args.host, port), Handler) for port in args.port or [8000]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    # As a container's PID 1 (the sidecar beside the api and worker) a signal without a handler
    # is ignored: the pod would wait out its whole grace period after SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"event": "listening", "ports": [s.server_address[1] for s in servers]}), flush=True)
    servers[0].serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
