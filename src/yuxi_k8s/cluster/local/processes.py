"""Start and stop the cluster's host processes, each tracked by a pid file.

Every process runs in its own session (it outlives ``cluster up``), with
stdout and stderr in ``<logs>/<name>.log``, inside the cluster's ``system``
cgroup, and with open files capped at the host's hard limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from yuxi_k8s import procfs
from yuxi_k8s.cluster.local import host, layout


def _pidfile(name: str) -> Path:
    return layout.PIDS / f"{name}.pid"


def _prepare_child() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (layout.NOFILE, layout.NOFILE))
    host.join_system_cgroup()


def start(name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
    layout.LOGS.mkdir(parents=True, exist_ok=True)
    layout.PIDS.mkdir(parents=True, exist_ok=True)
    log = (layout.LOGS / f"{name}.log").open("ab")
    log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=_prepare_child,
        close_fds=True,
    )
    log.close()
    _pidfile(name).write_text(f"{proc.pid} {argv[0]}\n")
    return proc.pid


def _pid_of(name: str) -> int | None:
    """The recorded pid, only while it still runs the recorded program (pids get reused)."""
    try:
        pid_text, exe = _pidfile(name).read_text().split(maxsplit=1)
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    if not procfs.alive(pid) or procfs.argv0(pid) != exe.strip():
        return None
    return pid


def running(name: str) -> bool:
    return _pid_of(name) is not None


def recorded() -> list[str]:
    return sorted(p.stem for p in layout.PIDS.glob("*.pid")) if layout.PIDS.exists() else []


def stop(name: str, timeout: float = 10.0) -> None:
    pid = _pid_of(name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procfs.alive(pid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    _pidfile(name).unlink(missing_ok=True)


def stop_all(names: list[str], timeout: float = 5.0) -> list[str]:
    """Stop several at once: SIGTERM to all, one shared grace period, then SIGKILL.
    Returns the names that needed SIGKILL."""
    pids = {name: pid for name in names if (pid := _pid_of(name)) is not None}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(procfs.alive(p) for p in pids.values()):
        time.sleep(0.1)
    slow = [name for name, pid in pids.items() if procfs.alive(pid)]
    kill_pids([pids[name] for name in slow], timeout=2)
    for name in names:
        _pidfile(name).unlink(missing_ok=True)
    return slow


def kill_pids(pids: list[int], timeout: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(procfs.alive(p) for p in pids):
            time.sleep(0.1)
