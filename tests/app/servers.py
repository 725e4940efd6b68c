"""Start app processes (the API and the worker, under yuxi-k8s-app) on loopback, on one database and Redis."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from yuxi_k8s.app.localrun import AppRunner, Server, Worker, app_env


class Servers:
    """Processes of one test: the same database, Redis and saves/ (as replicas share them)."""

    def __init__(self, runner: AppRunner, db_url: str, redis_url: str, tmp_path: Path, **env: str) -> None:
        self.runner = runner
        self.saves = tmp_path / "saves"
        self.saves.mkdir(exist_ok=True)
        self.logs = tmp_path / "process-logs"  # app_env's YUXI_K8S_LOG_DIR: each process's own file
        self.tmp_path = tmp_path
        self.env = app_env(db_url, self.saves, REDIS_URL=redis_url, **env)
        self.started: list[Server] = []
        self.workers: list[Worker] = []

    def start(self, name: str, *, kit: bool = True) -> Server:
        server = Server(self.runner, self.env, self.tmp_path / f"{name}.log", kit=kit)
        self.started.append(server)
        server.wait_ready()
        return server

    def start_worker(self, name: str, **env: str) -> Worker:
        """The app's ARQ worker with the same settings and *env* (not waited for: a queued job waits)."""
        worker = Worker(self.runner, {**self.env, **env}, self.tmp_path / f"{name}.log")
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for process in [*self.started, *self.workers]:
            process.terminate()


def actor_result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``RESULT {json}`` line a script of tests/app/actors printed, which must not be an error."""
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"the actor printed no result (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    assert "error" not in result, f"{result['error']}\n{done.stderr[-3000:]}"
    return result
