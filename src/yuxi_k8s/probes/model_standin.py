"""An OpenAI-compatible stand-in for a model provider, for tests on a cluster without internet.

``python -m yuxi_k8s.probes.model_standin --port 8000`` serves:

- ``GET /v1/models``: one model, ``standin-chat``;
- ``POST /v1/chat/completions``: a deterministic answer (``"stand-in answer: <the
  last user message>"``), as one JSON body or, with ``"stream": true``, as
  server-sent events, one word every ``--chunk-delay`` seconds, so a client can tell
  a streaming proxy from a buffering one by when the first word arrives;
- ``GET /stats``: how many completions were served (a test proves the app called it).

It never calls tools and ignores every parameter but ``messages``, ``model`` and ``stream``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "standin-chat"
STATS = {"completions": 0, "streamed": 0}
_STATS_LOCK = threading.Lock()


def answer_for(messages: list[dict[str, Any]]) -> str:
    last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content", "")
    if isinstance(content, list):  # content parts
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return f"stand-in answer: {content}".strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chunk_delay = 0.2

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr, short
        print(f"model-standin: {self.command} {self.path} -> {fmt % args}", flush=True)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON"}})
            return
        text = answer_for(request.get("messages") or [])
        model = request.get("model") or MODEL
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        with _STATS_LOCK:
            STATS["completions"] += 1
            STATS["streamed"] += 1 if request.get("stream") else 0
        usage = {
            "prompt_tokens": 1,
            "completion_tokens": len(text.split()),
            "total_tokens": 1 + len(text.split()),
        }
        if not request.get("stream"):
            self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
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

        words = text.split(" ")
        for index, word in enumerate(words):
            delta = {"content": word if index == 0 else " " + word}
            if index == 0:
                delta["role"] = "assistant"
            event([{"index": 0, "delta": delta, "finish_reason": None}])
            time.sleep(self.chunk_delay)
        event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (request.get("stream_options") or {}).get("include_usage"):
            event([], {"usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--chunk-delay", type=float, default=0.2, help="seconds between streamed words [0.2]")
    args = parser.parse_args(argv)
    Handler.chunk_delay = args.chunk_delay
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(json.dumps({"event": "listening", "port": args.port}), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
