"""Start-up of several replicas at once (row 20): the application's DDL and seeds one at a time.

Pods of a scale-out or a first deploy start together; each process of the application runs
its table creation, schema changes, seeds and the checkpointer's set-up in its lifespan, and
concurrent runs deadlock or collide (one process exits, the pod restarts). yuxi-k8s-app runs
the start-ups in turn under an advisory lock.
"""

from __future__ import annotations

from pathlib import Path

from yuxi_k8s.app.localrun import AppRunner, Server, app_env


def test_four_replicas_started_at_once_all_come_up_without_a_restart(
    app_runner: AppRunner, kit_db: str, tmp_path: Path
) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    env = app_env(kit_db, saves)
    replicas = [Server(app_runner, env, tmp_path / f"r{n}.log") for n in range(4)]  # no wait between
    try:
        for server in replicas:
            server.wait_ready()  # raises with the log if the process exited
        assert all(server.proc.poll() is None for server in replicas)
        logs = [server.log.read_text(errors="replace") for server in replicas]
        assert not any("Application startup failed" in text for text in logs)
        waited = sum("waiting for another replica's start-up" in text for text in logs)
        print(f"{waited} of 4 replicas waited for another's start-up")
    finally:
        for server in replicas:
            server.terminate()
