"""A stand-in for Yuxi-Know's agent sandbox, for the kit's end-to-end tier only.

Users run upstream's sandbox image (``all-in-one-sandbox``, which the sandbox provisioner's
``SANDBOX_IMAGE`` names); this server is not it. Upstream's image comes from a registry the
test cluster cannot reach, so the e2e tier runs this file instead, copied alone into a small
image (``python3 /opt/yuxi-sandbox/sandbox_standin.py --port 8080``): it answers exactly the
calls Yuxi-Know 0.6.1 makes of a sandbox, so that the provisioner's ``kubernetes`` backend
creates real sandbox pods and the app's sandbox tools run in them. Standard library only
(Python 3.11 and 3.13): it imports nothing of the kit.

What 0.6.1 calls (``yuxi/agents/backends/sandbox/backend.py`` through the ``agent_sandbox``
0.0.30 client; the provisioner's ``wait_for_sandbox_ready``), each answered in the client's
envelope ``{"success", "message", "data"}``:

- ``GET /v1/sandbox``: readiness (the provisioner polls it for a 200); the client's
  ``SandboxResponse`` (``home_dir``, ``version``, ``detail``: system, runtime, no utils), also in
  ``data``, which says it is the stand-in;
- ``POST /v1/file/read`` ``{file, start_line?, end_line?}``: ``data {file, content, encoding}``,
  lines ``start_line`` (0-based) to ``end_line`` (exclusive); UTF-8 text as is, anything else
  base64 (the app's backend decodes base64 first);
- ``POST /v1/file/write`` ``{file, content, encoding?: utf-8|raw|base64, append?,
  leading_newline?, trailing_newline?}``: parents made; ``data {file, bytes_written}``;
- ``POST /v1/file/list`` ``{path, recursive?, show_hidden?, file_types?, max_depth?,
  include_size?, include_permissions?, sort_by?, sort_desc?}``: ``data {path, files: [{name,
  path, is_directory, size?, modified_time (ISO), permissions?, extension?}], total_count,
  directory_count, file_count}``;
- ``POST /v1/file/find`` ``{path, glob}``: ``data {path, files: [absolute paths]}``, regular
  files only; a pattern without ``/`` matches names at any depth (``find -name``);
- ``POST /v1/file/str_replace_editor`` ``{command: view|create|str_replace|insert, path,
  file_text?, old_str?, new_str?, insert_line?, replace_mode?: ALL|FIRST|LAST}``: ``data
  {output, error, path, prev_exist, old_content, new_content, success, message}`` (the app
  reads ``data.success`` and ``data.message``, beyond the client's model); an edit that
  cannot be made is ``success: false`` with HTTP 200; ``undo_edit`` is not served;
- ``POST /v1/shell/exec`` ``{command, exec_dir?, timeout?, hard_timeout?, id?}``: ``/bin/sh -c
  command`` in ``exec_dir`` (default the root), stdout and stderr together; ``data {session_id,
  command, status: completed|hard_timeout, output, exit_code}`` (``exit_code`` null after a
  timeout, which kills the command's process group); ``async_mode`` is not served.

Every path must be absolute and inside ``--root`` (default ``/home/gem``, where the provisioner
mounts ``user-data/{workspace,uploads,outputs}`` and ``skills``), symlinks resolved; any other
is refused with HTTP 403 and a message naming the root. A missing file is 404, a malformed
request 400; each error is the envelope with ``success: false``. Commands are not confined:
like upstream's sandbox, the pod is the boundary.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import pwd
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_ROOT = "/home/gem"
DEFAULT_EXEC_TIMEOUT = 180.0  # the app's sandbox_exec_timeout_seconds
MAX_BODY = 64 * 1024 * 1024
VERSION = "0.0.0-yuxi-k8s-standin"
STANDIN = "yuxi-k8s sandbox stand-in (e2e tier only; users run upstream's all-in-one-sandbox)"
Body = dict[str, Any]


class Refused(Exception):
    """A request the stand-in answers with an error: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envelope(data: Any, message: str = "ok", success: bool = True) -> Body:
    return {"success": success, "message": message, "data": data}


def _text(body: Body, key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise Refused(400, f"{key} must be a non-empty string")
    return value


def _int(body: Body, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refused(400, f"{key} must be an integer >= 0")
    return value


def _flag(body: Body, key: str, default: bool = False) -> bool:
    value = body.get(key)
    return default if value is None else bool(value)


class Sandbox:
    """The calls, on the files under *root* and a shell; each returns the envelope's ``data``."""

    def __init__(self, root: str | Path, exec_timeout: float = DEFAULT_EXEC_TIMEOUT) -> None:
        self.root = Path(os.path.realpath(root))
        self.exec_timeout = exec_timeout

    # --- paths -------------------------------------------------------------------------------
    def resolve(self, raw: str) -> tuple[Path, str]:
        """The file behind *raw* and *raw* normalized as the caller named it; 403 outside the root."""
        if not raw.startswith("/"):
            raise Refused(400, f"path must be absolute: {raw!r}")
        shown = os.path.normpath(raw)
        real = Path(os.path.realpath(shown))
        if real != self.root and self.root not in real.parents:
            raise Refused(403, f"path {raw!r} is outside the sandbox root {self.root}")
        return real, shown

    def _existing(self, raw: str) -> tuple[Path, str]:
        real, shown = self.resolve(raw)
        if not real.exists():
            raise Refused(404, f"no such file or directory: {shown}")
        return real, shown

    # --- the calls ---------------------------------------------------------------------------
    def sandbox_info(self, _body: Body) -> Body:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry, as in many pods
            user = str(os.getuid())
        home = str(self.root)
        system = {
            "os": platform.system(),
            "os_version": platform.release(),
            "arch": platform.machine(),
            "user": user,
            "home_dir": home,
            "workspace": home,
            "timezone": time.tzname[0],
            "occupied_ports": [],
        }
        python = {"ver": platform.python_version(), "bin": sys.executable, "alias": ["python3"]}
        detail = {"system": system, "runtime": {"python": [python], "nodejs": []}, "utils": []}
        context = {"home_dir": home, "workspace": home, "version": VERSION, "detail": detail}
        return {**envelope({"standin": STANDIN, **context}, STANDIN), **context}

    def read_file(self, body: Body) -> Body:
        real, shown = self._existing(str(_text(body, "file")))
        if real.is_dir():
            raise Refused(400, f"is a directory: {shown}")
        data = real.read_bytes()
        start, end = _int(body, "start_line"), _int(body, "end_line")
        if start is not None or end is not None:
            data = b"".join(data.splitlines(keepends=True)[start:end])
        try:
            content, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return envelope({"file": shown, "content": content, "encoding": encoding}, "file read")

    def write_file(self, body: Body) -> Body:
        real, shown = self.resolve(str(_text(body, "file")))
        content = _text(body, "content", required=False)
        if content is None:
            raise Refused(400, "content must be a string")
        encoding = body.get("encoding") or "utf-8"
        if encoding == "base64":
            try:
                payload = base64.b64decode(content, validate=True)
            except ValueError as exc:
                raise Refused(400, f"content is not valid base64: {exc}") from exc
        elif encoding in ("utf-8", "raw"):
            payload = content.encode("utf-8")
            payload = (b"\n" if _flag(body, "leading_newline") else b"") + payload
            payload += b"\n" if _flag(body, "trailing_newline") else b""
        else:
            raise Refused(400, f"unknown encoding {encoding!r} (utf-8, raw or base64)")
        if real.is_dir():
            raise Refused(400, f"is a directory: {shown}")
        real.parent.mkdir(parents=True, exist_ok=True)
        with real.open("ab" if _flag(body, "append") else "wb") as out:
            out.write(payload)
        return envelope({"file": shown, "bytes_written": len(payload)}, "file written")

    def _entry(self, path: Path, shown: str, size: bool, permissions: bool) -> Body:
        st = path.lstat()
        is_dir = stat.S_ISDIR(st.st_mode)
        entry: Body = {
            "name": path.name,
            "path": shown,
            "is_directory": is_dir,
            "modified_time": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(),
        }
        if size and not is_dir:
            entry["size"] = st.st_size
        if permissions:
            entry["permissions"] = stat.filemode(st.st_mode)
        if not is_dir and path.suffix:
            entry["extension"] = path.suffix
        return entry

    def list_path(self, body: Body) -> Body:
        real, shown = self._existing(str(_text(body, "path")))
        if not real.is_dir():
            raise Refused(400, f"not a directory: {shown}")
        recursive, hidden = _flag(body, "recursive"), _flag(body, "show_hidden")
        max_depth = _int(body, "max_depth")
        types = body.get("file_types") or []
        size, perms = _flag(body, "include_size"), _flag(body, "include_permissions")
        entries: list[Body] = []

        def walk(folder: Path, folder_shown: str, depth: int) -> None:
            for child in sorted(folder.iterdir(), key=lambda p: p.name):
                if child.name.startswith(".") and not hidden:
                    continue
                child_shown = f"{folder_shown.rstrip('/')}/{child.name}"
                entry = self._entry(child, child_shown, size, perms)
                if not types or entry["is_directory"] or child.suffix in types:
                    entries.append(entry)
                deeper = max_depth is None or depth < max_depth
                if recursive and deeper and entry["is_directory"] and not child.is_symlink():
                    walk(child, child_shown, depth + 1)

        walk(real, shown, 1)
        sort_by = body.get("sort_by") or "name"
        keys: dict[str, Callable[[Body], Any]] = {
            "name": lambda e: e["name"],
            "size": lambda e: e.get("size", 0),
            "modified": lambda e: e["modified_time"],
            "type": lambda e: (not e["is_directory"], e.get("extension", ""), e["name"]),
        }
        if sort_by not in keys:
            raise Refused(400, f"sort_by must be one of {', '.join(keys)}")
        if recursive or sort_by != "name" or body.get("sort_desc"):
            entries.sort(key=keys[sort_by], reverse=_flag(body, "sort_desc"))
        dirs = sum(1 for e in entries if e["is_directory"])
        data = {
            "path": shown,
            "files": entries,
            "total_count": len(entries),
            "directory_count": dirs,
            "file_count": len(entries) - dirs,
        }
        return envelope(data, "listed")

    def find_files(self, body: Body) -> Body:
        real, shown = self._existing(str(_text(body, "path")))
        pattern = str(_text(body, "glob"))
        if not real.is_dir():
            raise Refused(400, f"not a directory: {shown}")
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise Refused(400, f"glob must be relative to path, without '..': {pattern!r}")
        found = real.glob(pattern) if "/" in pattern else real.rglob(pattern)
        files = sorted(
            f"{shown.rstrip('/')}/{match.relative_to(real).as_posix()}"
            for match in found
            if match.is_file() and self.root in Path(os.path.realpath(match)).parents
        )
        return envelope({"path": shown, "files": files}, f"{len(files)} file(s) found")

    def str_replace_editor(self, body: Body) -> Body:
        command = body.get("command")
        real, shown = self.resolve(str(_text(body, "path")))
        prev_exist = real.exists()
        old = real.read_text("utf-8") if prev_exist and real.is_file() else None

        def result(output: str, new: str | None = None, error: str | None = None) -> Body:
            data = {
                "output": output,
                "error": error,
                "path": shown,
                "prev_exist": prev_exist,
                "old_content": old,
                "new_content": new,
                "success": error is None,
                "message": error or output,
            }
            return envelope(data, error or output, success=error is None)

        if command == "create":
            text = _text(body, "file_text", required=False)
            if text is None:
                return result("", error="create needs file_text")
            if prev_exist:
                return result("", error=f"file already exists at {shown}; create does not overwrite")
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_text(text, "utf-8")
            return result(f"file created: {shown}", new=text)
        if command not in ("view", "str_replace", "insert"):
            return result("", error=f"command {command!r} is not served by the stand-in")
        if not prev_exist:
            raise Refused(404, f"no such file or directory: {shown}")
        if old is None:
            if command == "view":
                names = sorted(p.name + ("/" if p.is_dir() else "") for p in real.iterdir())
                return result("\n".join(names))
            return result("", error=f"not a file: {shown}")
        if command == "view":
            return result("\n".join(f"{n:6d}\t{line}" for n, line in enumerate(old.splitlines(), 1)))
        if command == "insert":
            line, new_str = _int(body, "insert_line"), body.get("new_str")
            lines = old.splitlines(keepends=True)
            if line is None or not 0 <= line <= len(lines) or not isinstance(new_str, str):
                return result("", error=f"insert needs new_str and insert_line in 0..{len(lines)}")
            if line and not lines[line - 1].endswith("\n"):
                lines[line - 1] += "\n"
            new = "".join(
                [*lines[:line], new_str if new_str.endswith("\n") else new_str + "\n", *lines[line:]]
            )
            real.write_text(new, "utf-8")
            return result(f"inserted after line {line} of {shown}", new=new)
        old_str, new_str = body.get("old_str"), body.get("new_str") or ""
        if not isinstance(old_str, str) or not old_str or not isinstance(new_str, str):
            return result("", error="str_replace needs old_str (non-empty) and new_str")
        count, mode = old.count(old_str), body.get("replace_mode")
        if count == 0:
            return result("", error=f"old_str {old_str!r} did not appear verbatim in {shown}")
        if mode is None and count > 1:
            return result(
                "", error=f"old_str {old_str!r} appears {count} times in {shown}; name replace_mode"
            )
        if mode in (None, "FIRST"):
            new = old.replace(old_str, new_str, 1)
        elif mode == "ALL":
            new = old.replace(old_str, new_str)
        elif mode == "LAST":
            head, _, tail = old.rpartition(old_str)
            new = head + new_str + tail
        else:
            return result("", error=f"replace_mode must be ALL, FIRST or LAST, not {mode!r}")
        real.write_text(new, "utf-8")
        replaced = count if mode == "ALL" else 1
        return result(f"replaced {replaced} occurrence(s) in {shown}", new=new)

    def exec_command(self, body: Body) -> Body:
        command = str(_text(body, "command"))
        if body.get("async_mode"):
            raise Refused(400, "async_mode is not served by the stand-in")
        cwd = self.root
        if body.get("exec_dir") is not None:
            cwd, shown = self._existing(str(_text(body, "exec_dir")))
            if not cwd.is_dir():
                raise Refused(400, f"exec_dir is not a directory: {shown}")
        limits = [self.exec_timeout]
        for key in ("timeout", "hard_timeout"):
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                limits.append(float(value))
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole on a timeout
        )
        exit_code: int | None
        try:
            out, _ = proc.communicate(timeout=min(limits))
            status, code = "completed", proc.returncode
            exit_code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipe
                out = b""
            status, exit_code = "hard_timeout", None
        data = {
            "session_id": str(body.get("id") or uuid.uuid4()),
            "command": command,
            "status": status,
            "output": out.decode("utf-8", errors="replace"),
            "exit_code": exit_code,
        }
        return envelope(data, f"command {status}")


ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/v1/sandbox"): "sandbox_info",
    ("POST", "/v1/file/read"): "read_file",
    ("POST", "/v1/file/write"): "write_file",
    ("POST", "/v1/file/list"): "list_path",
    ("POST", "/v1/file/find"): "find_files",
    ("POST", "/v1/file/str_replace_editor"): "str_replace_editor",
    ("POST", "/v1/shell/exec"): "exec_command",
}


class Handler(BaseHTTPRequestHandler):
    sandbox: Sandbox = Sandbox(DEFAULT_ROOT)
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr
        sys.stderr.write(f"sandbox-standin {self.address_string()} {fmt % args}\n")

    def _json(self, status: int, body: Body) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Body:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise Refused(400, f"request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused(400, "request body must be a JSON object")
        return body

    def _serve(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        name = ROUTES.get((method, path))
        try:
            if name is None:
                known = sorted(p for m, p in ROUTES if m == method)
                raise Refused(404, f"{method} {path} is not served by the stand-in ({', '.join(known)})")
            body = self._body() if method == "POST" else {}
            self._json(200, getattr(self.sandbox, name)(body))
        except Refused as exc:
            self._json(exc.status, envelope(None, exc.message, success=False))
        except FileNotFoundError as exc:
            self._json(404, envelope(None, f"no such file or directory: {exc.filename}", success=False))
        except (PermissionError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError) as exc:
            self._json(400, envelope(None, f"{type(exc).__name__}: {exc}", success=False))
        except OSError as exc:
            self._json(500, envelope(None, f"{type(exc).__name__}: {exc}", success=False))

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


def make_server(host: str, port: int, root: str | Path, exec_timeout: float) -> ThreadingHTTPServer:
    handler = type("SandboxHandler", (Handler,), {"sandbox": Sandbox(root, exec_timeout)})
    return ThreadingHTTPServer((host, port), handler)


@contextlib.contextmanager
def serving(root: str | Path, host: str = "127.0.0.1", exec_timeout: float = 30.0) -> Iterator[str]:
    """The stand-in in a thread of this process on a free port, files under *root* (for tests):
    its base URL."""
    server = make_server(host, 0, root, exec_timeout)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080, help="port to serve on [8080]")
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"the only tree paths may name [{DEFAULT_ROOT}]")
    parser.add_argument(
        "--exec-timeout",
        type=float,
        default=DEFAULT_EXEC_TIMEOUT,
        help=f"longest a command may run, seconds; a request may ask for less [{DEFAULT_EXEC_TIMEOUT:g}]",
    )
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        parser.error(f"--root {args.root} is not a directory")
    server = make_server(args.host, args.port, args.root, args.exec_timeout)
    # As a container's PID 1 a signal without a handler is ignored: the pod would wait out its
    # whole grace period after SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listening = {
        "event": "listening",
        "port": server.server_address[1],
        "root": str(Path(args.root).resolve()),
    }
    print(json.dumps(listening), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
