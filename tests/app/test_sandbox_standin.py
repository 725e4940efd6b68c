"""The application's own sandbox code accepts the sandbox stand-in's answers (db tier: image trees).

The stand-in (yuxi_k8s.probes.sandbox_standin), copied alone, runs with the api image's Python
(3.13, ``-I -S``: no kit, no site-packages) on loopback, as the e2e tier's sandbox image runs it.
Yuxi-Know v0.6.1's ``agent_sandbox`` client, and its ``ProvisionerSandboxBackend`` through the
application's provisioner (the sandbox-provisioner image's server, its memory backend naming the
stand-in), make every call the app makes of a sandbox (tests/app/actors/sandbox_client.py); the
provisioner's own ``wait_for_sandbox_ready`` sees the stand-in ready.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.servers import actor_result
from yuxi_k8s import procfs
from yuxi_k8s.app.localdeps import provisioner_command, provisioner_server, wait_http_ready
from yuxi_k8s.app.localrun import AppRunner, free_port
from yuxi_k8s.probes import sandbox_standin

ACTOR = "tests/app/actors/sandbox_client.py"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "gem"  # /tmp is the same inside the image trees
    for sub in ("user-data/workspace", "user-data/uploads", "user-data/outputs", "skills"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def standin(app_runner: AppRunner, home: Path, tmp_path: Path) -> Iterator[str]:
    """The stand-in's file alone, run by the api image's Python 3.13 with no kit and no site-packages."""
    alone = tmp_path / "opt" / "sandbox_standin.py"
    alone.parent.mkdir()
    shutil.copy(sandbox_standin.__file__, alone)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["python", "-I", "-S", str(alone), "--host", "127.0.0.1", "--port", str(port), "--root", str(home)]
    log = tmp_path / "standin.log"
    with log.open("w") as out:
        proc = app_runner.popen(args, {}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http_ready(proc, log, f"{url}/v1/sandbox", "the sandbox stand-in", 60, interval=0.2)
        yield url
    finally:
        procfs.stop_child(proc)


@pytest.fixture
def provisioner(provisioner_tree: Path, standin: str, tmp_path: Path) -> Iterator[str]:
    """The application's provisioner, its memory backend handing out the stand-in's URL."""
    env = {"MEMORY_SANDBOX_URL_TEMPLATE": standin}
    with provisioner_server(provisioner_tree, tmp_path / "provisioner.log", env) as url:
        yield url


def _run_actor(
    runner: AppRunner, standin: str, provisioner: str, home: Path, tmp_path: Path
) -> dict[str, Any]:
    saves = tmp_path / "saves"
    saves.mkdir()
    env = {
        "SAVE_DIR": str(saves),
        "YUXI_SKIP_APP_INIT": "1",
        "OPENAI_API_KEY": "stand-in",  # the app refuses to start without a provider key
        "SANDBOX_PROVISIONER_URL": provisioner,
    }
    done = runner.run(["python", runner.in_checkout(ACTOR), standin, str(home)], env, timeout=300)
    return actor_result(done)


def test_the_apps_sandbox_client_and_backend_accept_the_standins_answers(
    app_runner: AppRunner, standin: str, provisioner: str, home: Path, tmp_path: Path
) -> None:
    result = _run_actor(app_runner, standin, provisioner, home, tmp_path)

    client = result["client"]
    folder = f"{home}/user-data/workspace/client"
    assert client["context"] == {"success": True, "home_dir": str(home), "version": sandbox_standin.VERSION}
    assert client["write"] == {"success": True, "file": f"{folder}/notes.txt", "bytes": 14}
    assert client["write_base64"] == {"success": True, "bytes": 256}
    assert client["read"] == "one\ntwo\nthree\n"
    assert client["read_lines"] == "two\n"
    assert client["read_binary_ok"] is True
    assert [entry[:4] for entry in client["list"]] == [
        ["blob.bin", f"{folder}/blob.bin", False, 256],
        ["notes.txt", f"{folder}/notes.txt", False, 14],
    ]
    assert all(entry[4] for entry in client["list"]), "no modified_time"
    assert client["find"] == [f"{folder}/notes.txt"]
    assert client["edit"] == {"success": True, "new_content": "one\nTWO\nthree\n"}
    assert client["exec_ok"] == {"output": "one\nTWO\nthree\n", "exit_code": 0, "status": "completed"}
    assert client["exec_failed"] == {"output": "failing\n", "exit_code": 7}
    outside = client["outside"]
    assert outside["type"] == "ApiError" and outside["status"] == 403, outside
    assert "outside the sandbox root" in outside["body"]

    backend = result["backend"]
    folder = f"{home}/user-data/outputs/backend"
    path = f"{folder}/report.md"
    assert backend["write"]["error"] is None and backend["write"]["path"] == path, backend["write"]
    assert "already exists" in backend["write_again"]["error"]
    assert backend["edit"]["error"] is None and backend["edit"]["occurrences"] == 1, backend["edit"]
    assert backend["read"] == "     1\t# Report\n     2\tstatus: final"
    assert (home / "user-data/outputs/backend/report.md").read_text() == "# Report\nstatus: final\n"
    assert backend["ls_info"] == [[folder, True, None]]
    assert backend["glob_info"] == [path]
    assert backend["grep_raw"] == [{"path": path, "line": 2, "text": "status: final"}]
    assert backend["execute_ok"] == {"output": "2\n", "exit_code": 0, "truncated": False}
    assert backend["execute_failed"] == {"output": "gone\n", "exit_code": 5, "truncated": False}
    assert backend["upload"] == [{"path": f"{folder}/blob.bin", "error": None}]
    assert (home / "user-data/outputs/backend/blob.bin").read_bytes() == bytes(range(256))
    assert backend["download_ok"] == [True]
    assert backend["read_outside"].startswith("Error: Failed to read '/etc/hostname'"), backend[
        "read_outside"
    ]
    assert "outside the sandbox root" in backend["read_outside"]

    # The backend reached the stand-in through the provisioner: one sandbox, at the stand-in's URL.
    sandboxes = httpx.get(f"{provisioner}/api/sandboxes", timeout=10).json()["sandboxes"]
    assert [(s["sandbox_id"], s["sandbox_url"]) for s in sandboxes] == [(backend["sandbox_id"], standin)]


def test_the_provisioner_sees_the_standin_ready(provisioner_tree: Path, standin: str) -> None:
    # wait_for_sandbox_ready: what the provisioner's kubernetes backend runs before it hands a sandbox out.
    code = "import sys, app; print('READY', app.wait_for_sandbox_ready(sys.argv[1], timeout_seconds=5))"
    for url, expected in [(standin, "READY True"), (f"http://127.0.0.1:{free_port()}", "READY False")]:
        command, env = provisioner_command(provisioner_tree, ["python", "-c", code, url])
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert expected in done.stdout.splitlines(), (url, done.stdout, done.stderr[-2000:])
