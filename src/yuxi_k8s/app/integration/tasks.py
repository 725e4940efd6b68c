"""Tasks across replicas: an owner per task and a lease per replica, kept in the kit's schema.

The application's task service (``yuxi/services/task_service.py``) keeps its queue
in process memory and, when a replica starts, marks every running or pending
task in the shared ``tasks`` table as failed: a scale-out or a rolling restart
fails the tasks the *other* replicas are running. Here:

- each api replica holds a lease (``yuxi_k8s.replicas``, renewed every third of
  ``YUXI_K8S_REPLICA_LEASE_SECONDS``, default 30 s) and claims the tasks it
  creates (``yuxi_k8s.task_owners``) before the app first stores them;
- a starting replica lets the app fail only the unfinished tasks whose owner's
  lease has run out (or that have no owner: created before the kit, or by a
  replica that crashed), and shows the others as they are;
- a replica told to stop waits up to ``YUXI_K8S_TASK_DRAIN_SECONDS`` (default 60,
  keep it below the pod's termination grace period) for its running and queued
  tasks to finish before the app cancels them, then gives up its lease;
- a task is looked up in the table when this replica does not hold it in
  memory, so every replica answers for every task; the task list is the table's,
  with this replica's own tasks as it holds them;
- a cancel or delete of a task another live replica runs is queued for that owner
  (``yuxi_k8s.task_requests``), which carries it out through the app's own Tasker
  within ``YUXI_K8S_TASK_REQUEST_POLL_SECONDS`` (default 1): no replica writes its
  stale copy over the owner's row. A task nobody alive owns is cancelled or deleted
  in the table directly.

The application's table is only read and written through the application's own
code; the kit writes only its two tables.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, text

from yuxi_k8s.app.integration import env_seconds
from yuxi_k8s.state.errors import error_line
from yuxi_k8s.state.models import SCHEMA

log = logging.getLogger("yuxi_k8s.app.tasks")

LEASE_ENV = "YUXI_K8S_REPLICA_LEASE_SECONDS"
DRAIN_ENV = "YUXI_K8S_TASK_DRAIN_SECONDS"
TERMINAL = frozenset({"success", "failed", "cancelled"})
REQUEST_POLL_ENV = "YUXI_K8S_TASK_REQUEST_POLL_SECONDS"
REQUIRED_TASKER_ATTRIBUTES = (
    "start",
    "list_tasks",
    "cancel_task",
    "delete_task",
    "_lock",
    "_load_state",
    "_persist_task",
    "shutdown",
    "get_task",
    "_repo",
    "_tasks",
    "_queue",
    "_workers",
)


class ReplicaLease:
    """This process's row in ``yuxi_k8s.replicas``, renewed by a thread while it lives."""

    def __init__(self, engine: Engine, *, lease_s: float | None = None) -> None:
        self.engine = engine
        self.lease_s = lease_s if lease_s is not None else env_seconds(LEASE_ENV, 30.0)
        self.hostname = socket.gethostname()
        self.replica_id = f"{self.hostname}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_renewed: float | None = None

    def _exec(self, sql: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(text(sql), params)

    def _renew(self) -> None:
        self._exec(
            f"INSERT INTO {SCHEMA}.replicas (replica_id, hostname, lease_until) "
            "VALUES (:r, :h, now() + make_interval(secs => :s)) ON CONFLICT (replica_id) DO UPDATE "
            "SET heartbeat_at = now(), lease_until = EXCLUDED.lease_until",
            r=self.replica_id,
            h=self.hostname,
            s=self.lease_s,
        )
        self.last_renewed = time.monotonic()

    def start(self) -> None:
        self._renew()
        self._thread = threading.Thread(target=self._run, name="yuxi-k8s-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self._renew()
            except Exception as exc:  # the lease runs out by itself; others then take over
                log.warning("could not renew the replica lease: %s", error_line(exc))

    @property
    def alive(self) -> bool:
        """This replica's lease was renewed within the lease time (a readiness signal)."""
        return self.last_renewed is not None and time.monotonic() - self.last_renewed < self.lease_s

    def stop(self) -> None:
        """Give up the lease and the claims (the tasks are finished or were drained)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self._exec(f"DELETE FROM {SCHEMA}.task_owners WHERE replica_id = :r", r=self.replica_id)
            self._exec(f"DELETE FROM {SCHEMA}.replicas WHERE replica_id = :r", r=self.replica_id)
        except Exception as exc:
            log.warning("could not give up the replica lease (it runs out by itself): %s", error_line(exc))

    def claim(self, task_id: str) -> None:
        self._exec(
            f"INSERT INTO {SCHEMA}.task_owners (task_id, replica_id) VALUES (:t, :r) ON CONFLICT DO NOTHING",
            t=task_id,
            r=self.replica_id,
        )

    def request(self, task_id: str, action: str) -> None:
        self._exec(
            f"INSERT INTO {SCHEMA}.task_requests (task_id, action) VALUES (:t, :a) ON CONFLICT DO NOTHING",
            t=task_id,
            a=action,
        )

    def take_requests(self) -> list[tuple[str, str]]:
        """The cancels and deletes other replicas queued for this replica's tasks (removed as taken)."""
        rows = self._exec(
            f"DELETE FROM {SCHEMA}.task_requests q USING {SCHEMA}.task_owners o "
            "WHERE q.task_id = o.task_id AND o.replica_id = :me RETURNING q.task_id, q.action",
            me=self.replica_id,
        )
        return [(row[0], row[1]) for row in rows]

    def live_owners(self, task_ids: Iterable[str]) -> dict[str, str]:
        """task id -> owning replica, for the tasks whose owner (not this replica) still holds its lease."""
        ids = list(task_ids)
        if not ids:
            return {}
        rows = self._exec(
            f"SELECT o.task_id, o.replica_id FROM {SCHEMA}.task_owners o JOIN {SCHEMA}.replicas r "
            "USING (replica_id) WHERE o.task_id = ANY(:ids) AND r.lease_until > now() "
            "AND o.replica_id <> :me",
            ids=ids,
            me=self.replica_id,
        )
        return {row[0]: row[1] for row in rows}


class _TaskView:
    """What the app's ``list_tasks`` reads of its Tasker (``_lock``, ``_tasks``), over given tasks."""

    def __init__(self, tasks: dict[str, Any]) -> None:
        self._lock = asyncio.Lock()
        self._tasks = tasks


class _RepoWithout:
    """The app's task repository with some records hidden from ``list_all`` (everything else passes)."""

    def __init__(self, repo: Any, hidden: set[str]) -> None:
        self._repo = repo
        self._hidden = hidden

    async def list_all(self) -> list[Any]:
        return [r for r in await self._repo.list_all() if r.id not in self._hidden]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)


def install(tasker_cls: Any, task_cls: Any, lease: ReplicaLease, *, drain_s: float | None = None) -> None:
    """Patch the app's Tasker class (its one instance serves the api)."""
    drain = drain_s if drain_s is not None else env_seconds(DRAIN_ENV, 60.0)
    original_load: Callable[..., Any] = tasker_cls._load_state
    original_persist: Callable[..., Any] = tasker_cls._persist_task
    original_shutdown: Callable[..., Any] = tasker_cls.shutdown
    original_get: Callable[..., Any] = tasker_cls.get_task
    original_list: Callable[..., Any] = tasker_cls.list_tasks
    original_cancel: Callable[..., Any] = tasker_cls.cancel_task
    original_delete: Callable[..., Any] = tasker_cls.delete_task
    poll_s = env_seconds(REQUEST_POLL_ENV, 1.0)
    claimed: set[str] = set()

    async def _persist_task(self: Any, task: Any) -> None:
        if task.id not in claimed and task.status not in TERMINAL:
            await asyncio.to_thread(lease.claim, task.id)  # before the row exists: never ownerless
            claimed.add(task.id)
        await original_persist(self, task)

    async def _load_state(self: Any) -> None:
        records = await self._repo.list_all()
        unfinished = [r.id for r in records if r.status not in TERMINAL]
        owners = await asyncio.to_thread(lease.live_owners, unfinished)
        real_repo = self._repo
        self._repo = _RepoWithout(real_repo, set(owners))
        try:
            await original_load(self)  # the app fails what is left: tasks nobody alive owns
        finally:
            self._repo = real_repo
        for record in records:
            if record.id in owners:
                self._tasks[record.id] = task_cls.from_dict(record.to_dict())
        if owners:
            log.info(
                "kept %d task(s) running on other live replicas: %s", len(owners), ", ".join(sorted(owners))
            )

    def _busy(self: Any) -> list[str]:
        return [tid for tid, task in self._tasks.items() if tid in claimed and task.status not in TERMINAL]

    async def shutdown(self: Any) -> None:
        deadline = time.monotonic() + drain
        busy = _busy(self)
        if busy:
            log.info("draining %d task(s) before stopping (up to %.0f s)", len(busy), drain)
        while (busy or not self._queue.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            busy = _busy(self)
        if busy:
            log.warning(
                "stopping with %d task(s) unfinished after %.0f s: %s", len(busy), drain, ", ".join(busy)
            )
        requests = getattr(self, "_yuxi_k8s_requests", None)
        if requests is not None:
            requests.cancel()
        # The app's shutdown cancels each worker once and waits for all, holding its lock. A worker
        # running a task takes that cancel as the task's (it marks the task cancelled, under the
        # same lock, and loops on): the shutdown would hang until the kubelet's SIGKILL. Cancel
        # until every worker has ended, outside the lock, then let the app finish its shutdown.
        workers = list(self._workers)
        for _ in range(40):
            pending = [w for w in workers if not w.done()]
            if not pending:
                break
            for worker in pending:
                worker.cancel()
            await asyncio.wait(pending, timeout=0.25)
        await original_shutdown(self)

    async def get_task(self: Any, task_id: str) -> dict[str, Any] | None:
        found = await original_get(self, task_id)
        if found is not None and (task_id in claimed or found.get("status") in TERMINAL):
            return found  # type: ignore[no-any-return]
        record = await self._repo.get_by_id(task_id)  # created, or run right now, by another replica
        if record is None:
            return found  # type: ignore[no-any-return]
        return task_cls.from_dict(record.to_dict()).to_dict()  # type: ignore[no-any-return]

    async def list_tasks(self: Any, status: str | None = None, limit: int = 100) -> dict[str, Any]:
        records = await self._repo.list_all()
        merged = {r.id: task_cls.from_dict(r.to_dict()) for r in records}
        async with self._lock:
            merged.update({tid: task for tid, task in self._tasks.items() if tid in claimed})
        view = _TaskView(merged)  # the app's own listing, over the table's tasks and ours
        return await original_list(view, status=status, limit=limit)  # type: ignore[no-any-return]

    async def _elsewhere(self: Any, task_id: str) -> tuple[Any, str | None]:
        """(the task's record, its live owner other than this replica), or (None, None)."""
        record = await self._repo.get_by_id(task_id)
        if record is None:
            return None, None
        owners = await asyncio.to_thread(lease.live_owners, [task_id])
        return record, owners.get(task_id)

    async def cancel_task(self: Any, task_id: str) -> bool:
        if task_id in claimed:
            return await original_cancel(self, task_id)  # type: ignore[no-any-return]
        record, owner = await _elsewhere(self, task_id)
        if record is None or record.status in TERMINAL:
            return False
        if owner is not None:
            await asyncio.to_thread(lease.request, task_id, "cancel")
            return True
        task = task_cls.from_dict(record.to_dict())  # nobody runs it: cancelled in the table
        task.status, task.cancel_requested = "cancelled", True
        self._tasks[task_id] = task
        await original_persist(self, task)
        return True

    async def delete_task(self: Any, task_id: str) -> bool:
        if task_id in claimed:
            return await original_delete(self, task_id)  # type: ignore[no-any-return]
        record, owner = await _elsewhere(self, task_id)
        if record is None:
            return False
        if owner is not None and record.status not in TERMINAL:
            await asyncio.to_thread(lease.request, task_id, "delete")
            return True
        async with self._lock:
            self._tasks.pop(task_id, None)
        await self._repo.delete(task_id)
        return True

    async def carry_out_requests(tasker: Any) -> None:
        while True:
            await asyncio.sleep(poll_s)
            try:
                requests = await asyncio.to_thread(lease.take_requests)
            except Exception as exc:  # the next round tries again
                log.warning("could not read the task requests of other replicas: %s", error_line(exc))
                continue
            for task_id, action in requests:
                log.info("%s of task %s asked through another replica", action, task_id)
                await original_cancel(tasker, task_id)  # a deleted task must stop running too
                if action == "delete":
                    await original_delete(tasker, task_id)

    original_start: Callable[..., Any] = tasker_cls.start

    async def start(self: Any) -> None:
        await original_start(self)
        if getattr(self, "_yuxi_k8s_requests", None) is None:
            self._yuxi_k8s_requests = asyncio.get_running_loop().create_task(carry_out_requests(self))

    tasker_cls.start = start
    tasker_cls.list_tasks = list_tasks
    tasker_cls.cancel_task = cancel_task
    tasker_cls.delete_task = delete_task
    tasker_cls._persist_task = _persist_task
    tasker_cls._load_state = _load_state
    tasker_cls.shutdown = shutdown
    tasker_cls.get_task = get_task
