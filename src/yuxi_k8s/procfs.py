"""What ``/proc`` says about processes (Linux): one answer to "is it still running?", one way to
stop processes by pid (:func:`terminate`: a signal, one shared grace period, then SIGKILL) and one
to stop a child process (:func:`stop_child`).

A pid file outlives its process, and pids get reused, so "the process exists" is not enough:
:func:`alive` also refuses zombies (PID 1 in a container may never reap them) and, given a
name pattern, a process whose command name is another program's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_STAT = re.compile(r"^\d+ \((?P<comm>.*)\) (?P<state>\S)", re.DOTALL)


def _stat(pid: int) -> tuple[str, str] | None:
    """(command name, state letter) of *pid*, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    match = _STAT.match(text)
    return (match.group("comm"), match.group("state")) if match else None


def alive(pid: int | str | None, name: str | None = None) -> bool:
    """True while *pid* runs and is not a zombie; with *name* (a regex searched from the start of
    the command name, e.g. ``"postgres|postmaster"``), only if it is that program."""
    try:
        number = int(str(pid).strip())
    except ValueError:
        return False
    if number <= 0:
        return False
    found = _stat(number)
    if found is None or found[1] == "Z":
        return False
    return name is None or re.match(f"(?:{name})", found[0]) is not None


def argv0(pid: int) -> str | None:
    """The first word of *pid*'s command line (the program as it was started), or None."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, UnicodeDecodeError):
        return None


def cwd(pid: int) -> str | None:
    """*pid*'s working directory (without the " (deleted)" of a removed one), or None."""
    try:
        return os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except OSError:
        return None


def cwd_removed(pid: int) -> bool:
    """*pid*'s working directory has been deleted since it entered it (its checkout is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd").endswith(" (deleted)")
    except OSError:
        return False


def terminate(pids: Iterable[int], timeout: float = 5.0, first: signal.Signals = signal.SIGTERM) -> list[int]:
    """Send *first* to every pid, wait up to *timeout* seconds for all of them together, then SIGKILL
    those still running (and wait for them). Returns the pids that needed SIGKILL. Nothing is reaped:
    a zombie counts as gone (:func:`alive`), and the owner of a child's ``Popen`` still waits on it."""
    targets = [pid for pid in pids if alive(pid)]
    _signal(targets, first)
    _wait_gone(targets, timeout)
    slow = [pid for pid in targets if alive(pid)]
    _signal(slow, signal.SIGKILL)
    _wait_gone(slow, 5.0)
    return slow


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def listening_pids(port: int) -> set[int]:
    """The processes listening on TCP *port* (IPv4 or IPv6), as far as this user may see."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])  # 0A = LISTEN
    if not inodes:
        return set()
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    found.add(int(entry.name))
                    break
            except OSError:
                continue
    return found


def stop_child(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM a child still running, wait up to *timeout* seconds, then SIGKILL; reaped either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
