"""The sandbox stand-in's HTTP answers, in process on loopback (static tier: no services).

Round trips of every call Yuxi-Know 0.6.1 makes of a sandbox (the shapes its ``agent_sandbox``
client reads; that client itself runs against the stand-in in tests/app/test_sandbox_standin.py),
paths outside the root refused, a failing command's exit code, and the file alone, run as the
sandbox image runs it (standard library only, no kit import).
"""

from __future__ import annotations

import ast
import base64
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from yuxi_k8s.probes import sandbox_standin


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "gem"
    for sub in ("user-data/workspace", "user-data/uploads", "user-data/outputs", "skills"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def client(home: Path) -> Iterator[httpx.Client]:
    with sandbox_standin.serving(home, exec_timeout=10) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def _ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["success"] is True, body
    return dict(body["data"])


def _refused(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["data"] is None, body
    return str(body["message"])


def test_readiness_answers_what_the_provisioner_polls(client: httpx.Client, home: Path) -> None:
    answer = client.get("/v1/sandbox")
    data = _ok(answer)
    assert data["home_dir"] == answer.json()["home_dir"] == str(home.resolve())
    assert "stand-in" in data["standin"]
    system = answer.json()["detail"]["system"]  # the client's SandboxResponse.detail
    assert system["home_dir"] == str(home.resolve()) and system["user"]


def test_write_then_read_round_trips_text_lines_and_bytes(client: httpx.Client, home: Path) -> None:
    path = f"{home}/user-data/workspace/notes/a.txt"  # parents made on write
    text = "first line\nsecond line\nthird line\n"
    written = _ok(client.post("/v1/file/write", json={"file": path, "content": text}))
    assert written == {"file": path, "bytes_written": len(text.encode())}
    assert Path(path).read_text() == text
    assert _ok(client.post("/v1/file/read", json={"file": path}))["content"] == text
    # start_line 0-based, end_line exclusive: what the app's backend sends for offset/limit
    part = _ok(client.post("/v1/file/read", json={"file": path, "start_line": 1, "end_line": 2}))
    assert part["content"] == "second line\n"
    _ok(client.post("/v1/file/write", json={"file": path, "content": "fourth", "append": True}))
    assert Path(path).read_text() == text + "fourth"

    binary = bytes(range(256))
    upload = {
        "file": f"{home}/user-data/uploads/b.bin",
        "content": base64.b64encode(binary).decode(),
        "encoding": "base64",
    }
    assert _ok(client.post("/v1/file/write", json=upload))["bytes_written"] == 256
    read = _ok(client.post("/v1/file/read", json={"file": upload["file"]}))
    assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == binary


def test_a_missing_file_is_404_not_an_empty_success(client: httpx.Client, home: Path) -> None:
    # The app's write() reads first and takes any answer as "already exists".
    assert "no such file" in _refused(client.post("/v1/file/read", json={"file": f"{home}/none.txt"}), 404)


def test_list_names_children_with_their_metadata(client: httpx.Client, home: Path) -> None:
    (home / "user-data/outputs/report.md").write_text("12345")
    (home / "user-data/outputs/.hidden").write_text("x")
    (home / "user-data/outputs/sub").mkdir()
    request = {"path": f"{home}/user-data/outputs", "recursive": False, "include_size": True}
    data = _ok(client.post("/v1/file/list", json=request))
    assert data["path"] == request["path"]
    by_name = {entry["name"]: entry for entry in data["files"]}
    assert set(by_name) == {"report.md", "sub"}  # hidden files only with show_hidden
    assert by_name["report.md"]["path"] == f"{home}/user-data/outputs/report.md"
    assert by_name["report.md"]["size"] == 5 and by_name["report.md"]["is_directory"] is False
    assert by_name["sub"]["is_directory"] is True
    assert (data["total_count"], data["directory_count"], data["file_count"]) == (2, 1, 1)
    hidden = _ok(client.post("/v1/file/list", json={**request, "show_hidden": True}))
    assert ".hidden" in {entry["name"] for entry in hidden["files"]}


def test_find_matches_names_at_any_depth_and_paths_with_a_slash(client: httpx.Client, home: Path) -> None:
    for rel in ("user-data/workspace/a.py", "user-data/workspace/pkg/b.py", "user-data/workspace/c.txt"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("x")
    base = f"{home}/user-data/workspace"
    found = _ok(client.post("/v1/file/find", json={"path": base, "glob": "*.py"}))
    assert found == {"path": base, "files": [f"{base}/a.py", f"{base}/pkg/b.py"]}
    top = _ok(client.post("/v1/file/find", json={"path": base, "glob": "pkg/*.py"}))
    assert top["files"] == [f"{base}/pkg/b.py"]


def test_str_replace_edits_the_file_and_says_so_in_data(client: httpx.Client, home: Path) -> None:
    path = home / "user-data/workspace/e.txt"
    path.write_text("alpha beta alpha\n")
    edit = {"command": "str_replace", "path": str(path), "old_str": "alpha", "new_str": "omega"}
    ambiguous = client.post("/v1/file/str_replace_editor", json=edit).json()
    assert ambiguous["success"] is False and ambiguous["data"]["success"] is False  # two matches, no mode
    assert "2 times" in ambiguous["data"]["message"]
    assert path.read_text() == "alpha beta alpha\n"
    data = _ok(client.post("/v1/file/str_replace_editor", json={**edit, "replace_mode": "ALL"}))
    assert data["success"] is True and data["prev_exist"] is True  # the app reads data.success
    assert data["old_content"] == "alpha beta alpha\n" and data["new_content"] == "omega beta omega\n"
    assert path.read_text() == "omega beta omega\n"
    last = _ok(
        client.post(
            "/v1/file/str_replace_editor",
            json={**edit, "old_str": "omega", "new_str": "z", "replace_mode": "LAST"},
        )
    )
    assert last["new_content"] == path.read_text() == "omega beta z\n"
    missing = client.post("/v1/file/str_replace_editor", json={**edit, "old_str": "gamma"}).json()
    assert missing["data"]["success"] is False and "did not appear" in missing["data"]["message"]


def test_exec_returns_output_and_the_exit_code(client: httpx.Client, home: Path) -> None:
    done = _ok(client.post("/v1/shell/exec", json={"command": "pwd; echo out; echo err >&2"}))
    assert done["status"] == "completed" and done["exit_code"] == 0
    assert done["output"] == f"{home.resolve()}\nout\nerr\n"  # in the root, stderr with stdout
    failed = _ok(client.post("/v1/shell/exec", json={"command": "echo nope; exit 3"}))
    assert (failed["exit_code"], failed["output"]) == (3, "nope\n")
    (home / "user-data/outputs/x").write_text("made by the file API")
    there = {"command": "cat x", "exec_dir": f"{home}/user-data/outputs"}
    assert _ok(client.post("/v1/shell/exec", json=there))["output"] == "made by the file API"


def test_a_command_past_its_timeout_is_killed(client: httpx.Client) -> None:
    done = _ok(client.post("/v1/shell/exec", json={"command": "echo started; sleep 30", "timeout": 0.5}))
    assert done["status"] == "hard_timeout" and done["exit_code"] is None
    assert done["output"] == "started\n"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/file/read", {"file": "/etc/passwd"}),
        ("/v1/file/read", {"file": "{home}/../../etc/passwd"}),
        ("/v1/file/write", {"file": "/tmp/outside.txt", "content": "x"}),
        ("/v1/file/list", {"path": "/"}),
        ("/v1/file/find", {"path": "/etc", "glob": "*"}),
        ("/v1/file/str_replace_editor", {"command": "create", "path": "/tmp/x", "file_text": "x"}),
        ("/v1/shell/exec", {"command": "true", "exec_dir": "/"}),
        ("/v1/file/read", {"file": "{home}/link/passwd"}),  # a symlink out of the root
    ],
)
def test_a_path_outside_the_root_is_refused(
    client: httpx.Client, home: Path, route: str, body: dict[str, str]
) -> None:
    (home / "link").symlink_to("/etc")
    request = {key: value.replace("{home}", str(home)) for key, value in body.items()}
    message = _refused(client.post(route, json=request), 403)
    assert f"outside the sandbox root {home.resolve()}" in message
    assert not Path("/tmp/outside.txt").exists() and not Path("/tmp/x").exists()


def test_an_unknown_call_is_404_naming_what_is_served(client: httpx.Client) -> None:
    message = _refused(client.post("/v1/browser/screenshot", json={}), 404)
    assert "/v1/shell/exec" in message


def test_it_imports_only_the_standard_library() -> None:
    # It is copied alone into the sandbox image: no kit module, nothing installed.
    tree = ast.parse(Path(sandbox_standin.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):  # a relative import names no stdlib module: refused
            imported.add("." * node.level + (node.module or "").split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported


def test_the_file_alone_serves_as_the_image_runs_it(tmp_path: Path, home: Path) -> None:
    alone = tmp_path / "opt" / "sandbox_standin.py"
    alone.parent.mkdir()
    shutil.copy(sandbox_standin.__file__, alone)
    command = [sys.executable, "-I", str(alone), "--host", "127.0.0.1", "--port", "0", "--root", str(home)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        listening = json.loads(proc.stdout.readline())
        assert listening["event"] == "listening", listening
        answer = httpx.get(f"http://127.0.0.1:{listening['port']}/v1/sandbox", timeout=10)
        assert answer.json()["data"]["home_dir"] == str(home.resolve())
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err  # SIGTERM ends it at once (PID 1 in its pod)
