"""Drive replicas of the real application: settings actors and uvicorn servers on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yuxi_k8s.app.localrun import AppRunner
from yuxi_k8s.cluster.kube import poll

ACTOR = "tests/app/actors/replica.py"


def app_env(db_url: str, save_dir: Path, **extra: str) -> dict[str, str]:
    """The environment the manifests give the api container, for loopback."""
    return {
        "POSTGRES_URL": db_url,
        "SAVE_DIR": str(save_dir),
        "CONFIG_MODE": "database",
        "LITE_MODE": "true",
        "RUNNING_IN_DOCKER": "true",
        "MODEL_DIR_IN_DOCKER": "/tmp/models",
        "OPENAI_API_KEY": "stand-in",
        "JWT_SECRET_KEY": "e2e-shared-secret",
        "LANGGRAPH_CHECKPOINTER_BACKEND": "postgres",
        "SANDBOX_PROVISIONER_URL": "http://127.0.0.1:9",
        **extra,
    }


class Replica:
    """One settings replica (tests/app/actors/replica.py) spoken to line by line."""

    def __init__(self, runner: AppRunner, env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._log = log.open("w")
        self.proc = runner.popen(
            ["python", runner.in_checkout(ACTOR)],
            env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.hello = self._read(timeout=180)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"replica exited ({self.proc.poll()}); log {self.log}:\n{self.tail()}")
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # the app printed something of its own
            if isinstance(msg, dict) and ("op" in msg or "ready" in msg):
                return msg
        raise AssertionError(f"replica did not answer within {timeout}s; log {self.log}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def ask(self, op: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout)
        if "error" in reply:
            raise AssertionError(f"{op} failed: {reply['error']}\n{reply.get('trace', '')}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError, OSError):
                self.ask("quit", timeout=10)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The real API under uvicorn on loopback: through yuxi-k8s-app, or plain (the baseline)."""

    def __init__(self, runner: AppRunner, env: Mapping[str, str], log: Path, *, kit: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = log.open("w")
        uvicorn = ["uvicorn", "server.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = runner.popen(
            ["yuxi-k8s-app", *uvicorn] if kit else uvicorn, env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 240) -> None:
        import httpx

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            try:
                return httpx.get(self.url + "/api/system/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        poll(f"the app on {self.url} to answer", ready, timeout, interval=0.5)

    def terminate(self, timeout: float = 120) -> None:
        """SIGTERM, as the kubelet sends it, and wait for the process to end."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        self._log.close()
