"""Start and stop the cluster's host processes, each tracked by a pid file.

Every process runs in its own session (it outlives ``cluster up``), with
stdout and stderr in ``<logs>/<name>.log``, inside the cluster's ``system``
cgroup, and with open files capped at the host's hard limit.
"""

from __future__ import annotations

import os
import resource
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
    stop_all([name], timeout)


def stop_all(names: list[str], timeout: float = 5.0) -> list[str]:
    """Stop several at once: SIGTERM to all, one shared grace period, then SIGKILL
    (:func:`yuxi_k8s.procfs.terminate`). Returns the names that needed SIGKILL."""
    pids = {name: pid for name in names if (pid := _pid_of(name)) is not None}
    slow = set(procfs.terminate(pids.values(), timeout=timeout))
    for name in names:
        _pidfile(name).unlink(missing_ok=True)
    return [name for name, pid in pids.items() if pid in slow]
