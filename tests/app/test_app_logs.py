"""The application's logs under yuxi-k8s-app (per-process state, row 13, and its database password).

The application alone writes every process's log into one file on the shared
``saves`` volume (each rotating it) and logs its database URL with the
password at start. With ``yuxi-k8s-app``: stdout and a file of the process's
own (which ``/api/system/logs`` shows), and no credential in any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.app.servers import Servers
from tests.services_fixtures import LoopbackServices
from yuxi_k8s.app.localrun import AppRunner, Server
from yuxi_k8s.cluster.kube import poll

ADMIN = {"user_id": "admin", "password": "Admin-pass-123"}
# What the app logs about its database at start (storage/postgres/manager.py), then the URL.
DATABASE_LINE = "PostgreSQL manager initialized"


@pytest.fixture
def servers(
    app_runner: AppRunner, kit_db: str, loopback_services: LoopbackServices, tmp_path: Path
) -> Iterator[Servers]:
    started = Servers(app_runner, kit_db, loopback_services.redis_url, tmp_path)
    yield started
    started.stop()


def _admin(server: Server) -> dict[str, str]:
    if httpx.get(server.url + "/api/auth/check-first-run", timeout=10).json().get("first_run"):
        assert httpx.post(server.url + "/api/auth/initialize", json=ADMIN, timeout=30).status_code == 200
    form = {"username": ADMIN["user_id"], "password": ADMIN["password"]}
    token = httpx.post(server.url + "/api/auth/token", data=form, timeout=30).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _logs(server: Server, auth: dict[str, str], **params: str) -> dict[str, str]:
    reply = httpx.get(server.url + "/api/system/logs", headers=auth, params=params, timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_each_process_logs_to_stdout_and_its_own_file_and_no_line_carries_a_password(
    servers: Servers, kit_db: str, loopback_services: LoopbackServices
) -> None:
    passwords = {
        "database": urlsplit(kit_db).password or "",
        "redis": urlsplit(loopback_services.redis_url).password or "",
    }
    assert all(len(p) >= 8 for p in passwords.values()), "the loopback services have passwords"
    a = servers.start("a")
    b = servers.start("b")
    auth = _admin(a)
    from_a, from_b = _logs(a, auth), _logs(b, auth)

    # /api/system/logs: the answering replica's own file, outside the shared volume, not empty.
    assert from_a["log_file"] != from_b["log_file"], (from_a["log_file"], from_b["log_file"])
    for shown in (from_a, from_b):
        assert Path(shown["log_file"]).parent == servers.logs, shown["log_file"]
        assert DATABASE_LINE in shown["log"], shown["log"][-2000:]
    only_info = _logs(a, auth, levels="INFO")["log"].splitlines()
    assert only_info and all(" - INFO - " in line for line in only_info), only_info[:5]

    # Nothing written into saves/logs by either process (the app makes the file at import).
    shared = list((servers.saves / "logs").glob("*")) if (servers.saves / "logs").exists() else []
    assert all(f.stat().st_size == 0 for f in shared), [(f.name, f.stat().st_size) for f in shared]

    # stdout: the app's own lines (what kubectl logs shows), the database line among them, masked.
    for server in (a, b):
        output = server.log.read_text(errors="replace")
        lines = [line for line in output.splitlines() if DATABASE_LINE in line]
        assert lines and all("***" in line for line in lines), lines

    # No credential anywhere: the processes' output, their files, saves/.
    written = [s.log for s in (a, b)] + sorted(servers.logs.glob("*")) + sorted(servers.saves.rglob("*.log"))
    for path in written:
        text = path.read_text(errors="replace")
        for what, password in passwords.items():
            assert password not in text, f"the {what} password is in {path}"


def test_the_application_alone_logs_its_database_password_into_the_shared_file(
    servers: Servers, kit_db: str
) -> None:
    """The baseline on the same code: what the grep above would find without the kit."""
    plain = servers.start("plain", kit=False)
    password = urlsplit(kit_db).password or ""
    assert password and password in plain.log.read_text(errors="replace")

    def in_shared_file() -> bool:  # the app's file sink writes from a queue: poll, not sleep
        shared = (servers.saves / "logs").glob("yuxi-*.log")
        return any(password in f.read_text(errors="replace") for f in shared)

    poll("the database password in saves/logs", in_shared_file, 15, interval=0.2)
