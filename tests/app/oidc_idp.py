"""A small OpenID Connect provider on loopback: what Yuxi-Know 0.6.1's OIDC login calls.

The app (``yuxi/services/oidc_service.py``) reads the discovery document, sends
the browser to ``authorization_endpoint``, exchanges the code at
``token_endpoint`` (form post with the client secret) and reads the user from
``userinfo_endpoint``; it checks no ID token signature (``jwks_uri`` is served
empty for completeness). Codes and access tokens are single-use here, as a real
provider's are, so a replayed exchange shows up as a failure.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class StandInIdp:
    client_id: str
    client_secret: str
    user: dict[str, str]
    url: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> authorize params
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)  # access token -> user
    calls: list[str] = field(default_factory=list)  # "GET /authorize", ... in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect back to the client, as after a successful sign-in."""
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            raise ValueError(f"bad authorize request: {query}")
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = query
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str]) -> dict[str, Any] | None:
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return None
        with self.lock:
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or issued["redirect_uri"] != form.get("redirect_uri"):
                return None
            access = secrets.token_urlsafe(16)
            self.tokens[access] = self.user
        return {"access_token": access, "token_type": "Bearer", "expires_in": 300}

    def userinfo(self, authorization: str) -> dict[str, str] | None:
        with self.lock:
            return self.tokens.get(authorization.removeprefix("Bearer ").strip())


def _handler(idp: StandInIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: the test prints what matters
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            idp.calls.append(f"GET {parts.path}")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self._json(200, idp.discovery())
            elif parts.path == "/jwks":
                self._json(200, {"keys": []})
            elif parts.path == "/authorize":
                try:
                    location = idp.authorize(query)
                except (ValueError, KeyError) as exc:
                    self._json(400, {"error": "invalid_request", "error_description": str(exc)})
                    return
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/userinfo":
                user = idp.userinfo(self.headers.get("Authorization", ""))
                self._json(200, user) if user else self._json(401, {"error": "invalid_token"})
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            idp.calls.append(f"POST {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != "/token":
                self._json(404, {"error": "not_found"})
                return
            answer = idp.token(form)
            self._json(200, answer) if answer else self._json(400, {"error": "invalid_grant"})

    return Handler


@contextmanager
def serve(client_id: str, client_secret: str, user: dict[str, str]) -> Iterator[StandInIdp]:
    idp = StandInIdp(client_id, client_secret, user)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="stand-in-idp", daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
