"""One skill sync per thread at a time across processes (row 12 of the per-process state).

Yuxi-Know 0.6.1 copies the skills a thread may see into ``saves/threads/<thread>/skills``
before each sandbox tool call (``yuxi/services/skill_service.py``:
``sync_thread_visible_skills``), under a ``threading.Lock`` per thread: one process at a
time, but every api replica and the worker share ``saves/``. Two processes syncing one
thread delete each other's temporary copy (each removes whatever it does not expect in the
folder) or rename onto the copy the other just made: the tool call fails.

Here the lock the sync takes (``_get_thread_skills_lock``, looked up by the sync at each
call) also holds a POSIX record lock on ``saves/threads/<thread>/.skills.lock`` (beside the
folder the sync empties, outside what the sandbox mounts): on the shared volume (NFS locks
over ReadWriteMany) one sync of a thread runs at a time in the whole site. A volume that
refuses locks (``ENOLCK``) leaves the app's own per-process lock, logged once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from yuxi_k8s.state.errors import error_line

log = logging.getLogger("yuxi_k8s.app.skills")

REQUIRED_ATTRIBUTES = ("_get_thread_skills_lock", "get_thread_skills_root_dir", "sync_thread_visible_skills")
LOCK_NAME = ".skills.lock"


def missing_attributes(module: Any) -> list[str]:
    return [f"skill_service.{n}" for n in REQUIRED_ATTRIBUTES if not hasattr(module, n)]


class ThreadSkillsLock:
    """The app's lock of one thread, then the site-wide record lock on the thread's lock file."""

    _unlockable_logged = False

    def __init__(self, local: threading.Lock, lock_file: Path) -> None:
        self._local = local
        self._lock_file = lock_file
        self._fd: int | None = None

    def __enter__(self) -> ThreadSkillsLock:
        self._local.acquire()
        try:
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            except OSError as exc:
                os.close(fd)
                self._warn_unlockable(exc)
            else:
                self._fd = fd
        except OSError as exc:
            self._warn_unlockable(exc)
        except BaseException:
            self._local.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)  # closing drops this process's record lock
        finally:
            self._local.release()

    def _warn_unlockable(self, exc: OSError) -> None:
        if not ThreadSkillsLock._unlockable_logged:
            ThreadSkillsLock._unlockable_logged = True
            log.warning(
                "skill sync: no lock across processes on %s (%s); syncs of one thread in two "
                "processes may fail",
                self._lock_file,
                error_line(exc),
            )


def install(module: Any) -> None:
    """Patch the application's skill service module (the sync looks its lock up at each call)."""
    original_lock = module._get_thread_skills_lock
    skills_root_dir = module.get_thread_skills_root_dir

    def _get_thread_skills_lock(thread_id: str) -> ThreadSkillsLock:
        # The sync validated thread_id and made the folder (get_thread_skills_root_dir) before.
        lock_file = Path(skills_root_dir(thread_id)).parent / LOCK_NAME
        return ThreadSkillsLock(original_lock(thread_id), lock_file)

    module._get_thread_skills_lock = _get_thread_skills_lock
