"""Tasks across replicas of the real application (its own task service, its HTTP API under uvicorn).

The application alone marks every running task failed when any replica starts;
with ``yuxi-k8s-app`` a starting replica leaves the tasks of live replicas alone,
and a replica told to stop finishes its tasks first.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.app.http import StartServer, admin_headers
from yuxi_k8s.app.localrun import Server
from yuxi_k8s.cluster.kube import poll


def _task(server: Server, auth: dict[str, str], task_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/api/tasks/{task_id}", headers=auth, timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return dict(body.get("task", body))


TASK_ENV = {"YUXI_K8S_TEST_HOOKS": "1", "YUXI_K8S_TASK_DRAIN_SECONDS": "60"}


def test_restarting_one_replica_keeps_the_other_replicas_task_running_and_stopping_drains_it(
    servers: StartServer,
) -> None:
    a = servers("a", **TASK_ENV)
    b = servers("b", **TASK_ENV)
    auth = admin_headers(a)
    started = httpx.post(a.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 45}, headers=auth, timeout=30)
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    poll("the task to run", lambda: _task(a, auth, task_id)["status"] == "running", 30)

    b.terminate()  # a rolling restart replaces b while a's task runs
    b2 = servers("b2", **TASK_ENV)
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


def test_the_application_alone_fails_a_running_task_when_another_replica_starts(servers: StartServer) -> None:
    """The loss the kit prevents, shown on the same code: a replica of the unmodified app starts."""
    a = servers("a", **TASK_ENV)
    auth = admin_headers(a)
    task_id = httpx.post(a.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 60}, headers=auth, timeout=30)
    task_id = task_id.json()["task_id"]
    poll("the task to run", lambda: _task(a, auth, task_id)["status"] == "running", 30)
    plain = servers("plain", kit=False, **TASK_ENV)
    failed = _task(plain, auth, task_id)
    assert failed["status"] == "failed", failed


def _listed(server: Server, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    reply = httpx.get(f"{server.url}/api/tasks", headers=auth, timeout=10)
    assert reply.status_code == 200, reply.text
    return {t["id"]: t for t in reply.json()["tasks"]}


def test_list_cancel_and_delete_give_the_same_answer_through_either_replica(servers: StartServer) -> None:
    """Row 6: B lists A's running task, B's cancel reaches A (which runs it), B's delete of a
    task A runs removes it everywhere; B never writes its own copy over A's row."""
    a = servers("a", **TASK_ENV)
    b = servers("b", **TASK_ENV)
    auth = admin_headers(a)

    def enqueue() -> str:
        reply = httpx.post(a.url + "/api/yuxi-k8s/test/tasks", json={"seconds": 60}, headers=auth, timeout=30)
        assert reply.status_code == 200, reply.text
        task_id = str(reply.json()["task_id"])
        poll("the task to run on A", lambda: _task(a, auth, task_id)["progress"] > 0, 30)
        return task_id

    first = enqueue()
    running_on_b = lambda: _listed(b, auth).get(first, {}).get("status") == "running"  # noqa: E731
    poll("B to list A's task as running", running_on_b, 10)
    cancelled = httpx.post(f"{b.url}/api/tasks/{first}/cancel", headers=auth, timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    for server in (a, b):
        poll("the cancel to reach A", lambda s=server: _task(s, auth, first)["status"] == "cancelled", 20)

    second = enqueue()
    deleted = httpx.delete(f"{b.url}/api/tasks/{second}", headers=auth, timeout=10)
    assert deleted.status_code == 200, deleted.text
    for server in (a, b):
        poll("the delete to reach A", lambda s=server: second not in _listed(s, auth), 20)
    assert httpx.get(f"{a.url}/api/tasks/{second}", headers=auth, timeout=10).status_code == 404
