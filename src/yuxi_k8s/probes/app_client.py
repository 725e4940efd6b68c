"""A client of Yuxi-Know's own HTTP API for the end-to-end tier: one subcommand per step, one JSON line out.

Runs in a pod of the namespace (standard library only), against the web Service
(nginx) or one api pod (``http://<pod IP>:5050``, pinning the request to it)::

    python -m yuxi_k8s.probes.app_client --base http://web initialize --user admin --password PW
    python -m yuxi_k8s.probes.app_client --base http://web login --user admin --password PW
    python -m yuxi_k8s.probes.app_client --base URL --token T get /api/auth/me
    python -m yuxi_k8s.probes.app_client --base URL --token T post /api/system/config '{"key": "k", ...}'
    python -m yuxi_k8s.probes.app_client --base URL --token T upload-png /api/auth/upload-avatar
    python -m yuxi_k8s.probes.app_client --base URL --token T upload-text PATH --name notes.md --text "..."
    python -m yuxi_k8s.probes.app_client --base URL --token T chat --config-id 1 --query hello
    python -m yuxi_k8s.probes.app_client --base URL --token T run --config-id 1 --query hello
    python -m yuxi_k8s.probes.app_client fetch URL                     # bytes' sha256 and status
    python -m yuxi_k8s.probes.app_client tcp HOST:PORT [HOST:PORT ...]  # "open" or the error, each

Every answer carries the status and, where the api sent it, the replica that answered
(``X-Yuxi-K8s-Replica``, with the e2e test hooks on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

REPLICA = "X-Yuxi-K8s-Replica"
# A 1x1 PNG: what `upload-png` sends (the avatar route takes images only).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000101ff89993d1d0000000049454e44ae426082"
)


class Client:
    def __init__(self, base: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(
        self, method: str, path: str, data: bytes | None, content_type: str | None
    ) -> urllib.request.Request:
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = path if path.startswith("http") else self.base + path
        return urllib.request.Request(url, data=data, method=method, headers=headers)

    def send(
        self, method: str, path: str, data: bytes | None = None, content_type: str | None = None
    ) -> dict[str, Any]:
        request = self._request(method, path, data, content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status, headers, payload = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, headers, payload = err.code, err.headers, err.read()
        try:
            body: Any = json.loads(payload or b"null")
        except ValueError:
            body = payload.decode(errors="replace")[:1000]
        return {"status": status, "body": body, "replica": headers.get(REPLICA)}

    def json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        return self.send(method, path, data, "application/json" if data is not None else None)

    def form(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        data = urllib.parse.urlencode(fields).encode()
        return self.send("POST", path, data, "application/x-www-form-urlencoded")

    def upload(self, path: str, filename: str, content: bytes, mime: str) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        data = head + content + f"\r\n--{boundary}--\r\n".encode()
        return self.send("POST", path, data, f"multipart/form-data; boundary={boundary}")

    def stream(self, path: str, body: Any) -> dict[str, Any]:
        """POST and read a streamed answer (JSON lines), timing each line from the request."""
        request = self._request("POST", path, json.dumps(body).encode(), "application/json")
        t0 = time.monotonic()
        lines = []
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            status = resp.status
            for raw in resp:
                if raw.strip():
                    lines.append([round(time.monotonic() - t0, 3), json.loads(raw)])
        return {"status": status, "lines": lines}


def chat(client: Client, config_id: int, query: str) -> dict[str, Any]:
    answer = client.stream("/api/chat/agent", {"query": query, "agent_config_id": config_id})
    words = [(t, line["response"]) for t, line in answer["lines"] if line.get("response")]
    return {
        "status": answer["status"],
        "text": "".join(w for _, w in words),
        "chunks": len(words),
        "first_s": words[0][0] if words else None,
        "spread_s": round(words[-1][0] - words[0][0], 3) if words else None,
        "last": answer["lines"][-1][1] if answer["lines"] else None,
    }


def run(client: Client, config_id: int, query: str, timeout: float) -> dict[str, Any]:
    """An agent run queued through Redis for the worker; poll it to the end."""
    thread = client.json("POST", "/api/chat/thread", {"agent_id": "ChatbotAgent", "title": "yuxi-k8s e2e"})
    body = {"query": query, "agent_config_id": config_id, "thread_id": thread["body"]["id"]}
    created = client.json("POST", "/api/chat/runs", body)
    run_id = created["body"]["run_id"]
    statuses: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.json("GET", f"/api/chat/runs/{run_id}")["body"]["run"]["status"]
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.5)
    return {"run_id": run_id, "statuses": statuses}


def tcp(target: str, timeout: float = 3.0) -> str:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return "open"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default="http://web", help="http://web (the web Service) or http://<pod IP>:5050"
    )
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--timeout", type=float, default=120.0)
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("initialize", "login"):
        p = sub.add_parser(name)
        p.add_argument("--user", required=True)
        p.add_argument("--password", required=True)
    for name in ("get", "delete"):
        sub.add_parser(name).add_argument("path")
    for name in ("post", "put"):
        p = sub.add_parser(name)
        p.add_argument("path")
        p.add_argument("body", help="JSON")
    sub.add_parser("upload-png").add_argument("path")
    p = sub.add_parser("upload-text", help="a text document as the multipart field `file`")
    p.add_argument("path")
    p.add_argument("--name", required=True, help="file name, e.g. notes.md")
    p.add_argument("--text", required=True)
    for name in ("chat", "run"):
        p = sub.add_parser(name)
        p.add_argument("--config-id", type=int, required=True)
        p.add_argument("--query", required=True)
    sub.add_parser("fetch").add_argument("url")
    sub.add_parser("tcp").add_argument("targets", nargs="+", help="HOST:PORT")
    args = parser.parse_args(argv)
    client = Client(args.base, args.token, args.timeout)
    out: Any
    if args.step == "initialize":
        out = client.json("POST", "/api/auth/initialize", {"user_id": args.user, "password": args.password})
    elif args.step == "login":
        out = client.form("/api/auth/token", {"username": args.user, "password": args.password})
    elif args.step in ("get", "delete"):
        out = client.json(args.step.upper(), args.path)
    elif args.step in ("post", "put"):
        out = client.json(args.step.upper(), args.path, json.loads(args.body))
    elif args.step == "upload-png":
        out = client.upload(args.path, "yuxi-k8s-e2e.png", PNG, "image/png")
        out["sha256"] = hashlib.sha256(PNG).hexdigest()
    elif args.step == "upload-text":
        content = args.text.encode()
        out = client.upload(args.path, args.name, content, "text/markdown")
        out["sha256"] = hashlib.sha256(content).hexdigest()
    elif args.step == "chat":
        out = chat(client, args.config_id, args.query)
    elif args.step == "run":
        out = run(client, args.config_id, args.query, args.timeout)
    elif args.step == "fetch":
        try:
            with urllib.request.urlopen(args.url, timeout=args.timeout) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, data = err.code, err.read()
        out = {"status": status, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    else:
        out = {target: tcp(target) for target in args.targets}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
