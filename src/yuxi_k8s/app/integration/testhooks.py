"""Routes for the kit's end-to-end tier only (``YUXI_K8S_TEST_HOOKS=1``; refused in staging and prod).

In LITE_MODE no route of the application enqueues a task, yet the tier must
show that a rolling restart leaves running tasks alone. ``POST
/api/yuxi-k8s/test/tasks {"seconds": N}`` (admin only, through the app's own
dependency) enqueues a task through the app's own Tasker that reports progress
for N seconds. ``GET /api/yuxi-k8s/test/subagent-specs`` shows the subagent specs
this process's agents would use (the app's own cached read). ``POST
/api/yuxi-k8s/test/sandbox {"thread_id": t}`` gets the thread's sandbox the way a sandbox
tool call does (the app's provider, creating it if missing); with ``"write": {"path": p,
"content": c}``, ``"read": p`` or ``"execute": cmd`` it also does what the agents' file and
shell tools do there, through the app's own sandbox backend. Every response carries
``X-Yuxi-K8s-Replica`` (the pod's host name), so a test knows which replica answered.

Imported only when enabled, inside the app's process (FastAPI resolves the
route's annotations from this module's globals, hence no postponed annotations).
"""

import asyncio
import importlib
import socket
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request

REPLICA_HEADER = "X-Yuxi-K8s-Replica"
MAX_SECONDS = 600
HOSTNAME = socket.gethostname()

_auth = importlib.import_module("server.utils.auth_middleware")
_task_service = importlib.import_module("yuxi.services.task_service")
_subagent_service = importlib.import_module("yuxi.services.subagent_service")
_sandbox_provider = importlib.import_module("yuxi.agents.backends.sandbox.provider")
_sandbox_backend = importlib.import_module("yuxi.agents.backends.sandbox.backend")
Seconds = Annotated[float, Body(embed=True)]
ThreadId = Annotated[str, Body(embed=True)]
Write = Annotated[dict[str, str] | None, Body(embed=True)]
ReadPath = Annotated[str | None, Body(embed=True)]
Command = Annotated[str | None, Body(embed=True)]
Admin = Annotated[Any, Depends(_auth.get_admin_user)]


async def enqueue_test_task(seconds: Seconds, user: Admin) -> dict[str, Any]:
    if not 0 < seconds <= MAX_SECONDS:
        raise HTTPException(status_code=400, detail=f"seconds must be in (0, {MAX_SECONDS}]")

    async def run(context: Any) -> dict[str, Any]:
        steps = max(1, int(seconds * 2))
        for step in range(steps):
            await context.raise_if_cancelled()  # as the app's own long tasks do
            await asyncio.sleep(seconds / steps)
            await context.set_progress(100.0 * (step + 1) / steps, f"step {step + 1}/{steps}")
        return {"slept_s": seconds, "replica": HOSTNAME}

    task = await _task_service.tasker.enqueue(
        name=f"yuxi-k8s test task ({seconds:g} s)",
        task_type="yuxi_k8s_test",
        payload={"seconds": seconds},
        coroutine=run,
    )
    return {"task_id": task.id, "replica": HOSTNAME}


async def subagent_specs(user: Admin) -> dict[str, Any]:
    """What this process's agents would use: the specs through the app's own cache."""
    specs = await _subagent_service.get_subagent_specs()  # looked up now: the kit may have patched it
    return {"specs": {s["name"]: s.get("description") for s in specs}, "replica": HOSTNAME}


async def thread_sandbox(
    thread_id: ThreadId, user: Admin, write: Write = None, read: ReadPath = None, execute: Command = None
) -> dict[str, Any]:
    """The thread's sandbox as a tool call gets it (ProvisionerSandboxBackend._get_client), and
    what the agents' tools do in it, through the app's backend (the one its tools use)."""
    provider = _sandbox_provider.get_sandbox_provider()
    connection = await asyncio.to_thread(
        provider.get, thread_id, user_id=str(user.id), create_if_missing=True
    )
    if connection is None:
        raise HTTPException(status_code=503, detail=f"no sandbox for thread {thread_id}")
    answer: dict[str, Any] = {"sandbox_id": connection.sandbox_id, "replica": HOSTNAME}
    backend = _sandbox_backend.ProvisionerSandboxBackend(thread_id, user_id=str(user.id))
    if write is not None:
        written = await asyncio.to_thread(backend.write, write["path"], write["content"])
        answer["written"] = {"path": written.path, "error": written.error}
    if read is not None:
        answer["read"] = await asyncio.to_thread(backend.read, read)
    if execute is not None:
        done = await asyncio.to_thread(backend.execute, execute)
        answer["executed"] = {"output": done.output, "exit_code": done.exit_code}
    return answer


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def name_the_replica(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers[REPLICA_HEADER] = HOSTNAME
        return response

    app.add_api_route("/api/yuxi-k8s/test/tasks", enqueue_test_task, methods=["POST"])
    app.add_api_route("/api/yuxi-k8s/test/subagent-specs", subagent_specs, methods=["GET"])
    app.add_api_route("/api/yuxi-k8s/test/sandbox", thread_sandbox, methods=["POST"])
