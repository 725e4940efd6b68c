"""Tasks across replicas of the real application (its own task service, its HTTP API under uvicorn).

The application alone marks every running task failed when any replica starts;
with ``yuxi-k8s-app`` a starting replica leaves the tasks of live replicas alone,
and a replica told to stop finishes its tasks first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from yuxi_k8s.app.localrun import AppRunner, Server, app_env
from yuxi_k8s.cluster.kube import poll

ADMIN = {"user_id": "admin", "password": "Admin-pass-123"}


def _token(server: Server) -> dict[str, str]:
    first = httpx.get(server.url + "/api/auth/check-first-run", timeout=10).json()
    if first.get("first_run"):
        assert httpx.post(server.url + "/api/auth/initialize", json=ADMIN, timeout=30).status_code == 200
    form = {"username": ADMIN["user_id"], "password": ADMIN["password"]}
    token = httpx.post(server.url + "/api/auth/token", data=form, timeout=30).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _task(server: Server, auth: dict[str, str], task_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/api/tasks/{task_id}", headers=auth, timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return dict(body.get("task", body))


@pytest.fixture
def servers(app_runner: AppRunner, kit_db: str, tmp_path: Path) -> Any:
    started: list[Server] = []

    def start(name: str, *, kit: bool = True) -> Server:
        saves = tmp_path / "saves"
        saves.mkdir(exist_ok=True)
        env = app_env(kit_db, saves, YUXI_K8S_TEST_HOOKS="1", YUXI_K8S_TASK_DRAIN_SECONDS="60")
        server = Server(app_runner, env, tmp_path / f"{name}.log", kit=kit)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.terminate()


def test_restarting_one_replica_keeps_the_other_replicas_task_running_and_stopping_drains_it(
    servers: Any,
) -> None:
    a = servers("a")
    b = servers("b")
    auth = _token(a)
    started = httpx.post(a.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 45}, headers=auth, timeout=30)
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    poll("the task to run", lambda: _task(a, auth, task_id)["status"] == "running", 30)

    b.terminate()  # a rolling restart replaces b while a's task runs
    b2 = servers("b2")
    seen_by_b2 = _task(b2, auth, task_id)
    assert seen_by_b2["status"] == "running", seen_by_b2  # the new replica did not fail it
    poll(
        "b2 to follow the task's progress",
        lambda: _task(b2, auth, task_id)["progress"] > seen_by_b2["progress"],
        30,
    )

    a.terminate()  # then a itself: it drains the task before it stops
    done = _task(b2, auth, task_id)
    assert done["status"] == "success", done
    assert "draining 1 task(s)" in a.log.read_text()


def test_the_application_alone_fails_a_running_task_when_another_replica_starts(servers: Any) -> None:
    """The loss the kit prevents, shown on the same code: a replica of the unmodified app starts."""
    a = servers("a")
    auth = _token(a)
    task_id = httpx.post(a.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 60}, headers=auth, timeout=30)
    task_id = task_id.json()["task_id"]
    poll("the task to run", lambda: _task(a, auth, task_id)["status"] == "running", 30)
    plain = servers("plain", kit=False)
    failed = _task(plain, auth, task_id)
    assert failed["status"] == "failed", failed
