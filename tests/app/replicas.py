"""Drive actors in the real application's processes (tests/app/actors/*.py) line by line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yuxi_k8s.app.localrun import AppRunner

ACTOR = "tests/app/actors/replica.py"


class Replica:
    """One settings replica (tests/app/actors/replica.py, or another *actor* speaking the same
    JSON lines) spoken to line by line."""

    def __init__(self, runner: AppRunner, env: Mapping[str, str], log: Path, actor: str = ACTOR) -> None:
        self.log = log
        self._log = log.open("w")
        self.proc = runner.popen(
            ["python", runner.in_checkout(actor)],
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

    def send(self, op: str, **args: Any) -> None:
        """Ask without waiting for the answer (:meth:`answer` reads it): to run several at once."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self, op: str, timeout: float = 60) -> dict[str, Any]:
        reply = self._read(timeout)
        if "error" in reply:
            raise AssertionError(f"{op} failed: {reply['error']}\n{reply.get('trace', '')}")
        return reply

    def ask(self, op: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.answer(op, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError, OSError):
                self.ask("quit", timeout=10)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
