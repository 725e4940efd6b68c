"""Files on the shared saves/ volume: confined reads, crash-safe writes, all-or-nothing sets, a lock.

Confinement: every path is resolved under a root folder; a symbolic link that
leads out of it (at any level) is refused, as is anything but a regular file
(a FIFO would hang a reader, ``/dev/zero`` would never end), and files larger
than a cap, each with one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StateUnavailableError

MAX_FILE_BYTES = 1024 * 1024  # settings files are a few kilobytes


class UnsafePathError(StateUnavailableError):
    """A path that leaves its root through a link, or is not a regular file/folder."""


def confined(root: Path, rel: str) -> Path:
    """*root*/*rel*, refusing any link (at any level) whose target is outside *root*."""
    root = Path(root)
    real_root = root.resolve()
    path = root / rel
    real = path.resolve()  # follows every link on the way
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"{path}: leads outside {root} through a symbolic link; refused")
    return path


def read_regular(root: Path, rel: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """The bytes of *root*/*rel*, or None when absent. Refuses links out of the root, special files
    and files over *limit* bytes (a clear one-line error each)."""
    path = confined(root, rel)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateUnavailableError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path}: not a regular file; refused")
    if st.st_size > limit:
        raise UnsafePathError(f"{path}: {st.st_size} bytes, larger than the {limit} allowed")
    try:
        # O_NONBLOCK: a FIFO swapped in after the check must not block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise StateUnavailableError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnsafePathError(f"{path}: not a regular file; refused")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePathError(f"{path}: larger than the {limit} bytes allowed")
    return data


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, payload: bytes) -> str:
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace *path* with *data* so a reader (or a crash) sees the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = _write_temp(path, payload)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@dataclass
class WriteReport:
    """What :func:`replace_all` did: every file written, or none of them."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class PartialWriteError(StateUnavailableError):
    """Some files could not be written; the ones already replaced were put back."""


def replace_all(root: Path, files: Mapping[str, str]) -> WriteReport:
    """Write every file under *root* or none: stage each beside its target, then rename them all;
    if a rename fails, put back what was replaced. Links out of *root* are refused first."""
    report = WriteReport()
    targets: dict[str, Path] = {}
    for rel, text in sorted(files.items()):
        path = confined(root, rel)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise UnsafePathError(f"{path}: not a regular file; refused")
        try:
            if path.read_bytes() == text.encode("utf-8"):
                report.unchanged.append(rel)
                continue
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateUnavailableError(f"cannot read {path}: {exc.strerror}; nothing written") from None
        targets[rel] = path
    staged: dict[str, str] = {}
    backups: dict[str, str] = {}
    done: list[str] = []
    current = "?"  # the file being worked on, for the message
    try:
        for current, path in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            staged[current] = _write_temp(path, files[current].encode("utf-8"))
        for current, path in targets.items():
            if path.exists():
                backups[current] = _write_temp(path, path.read_bytes())
        for current, path in targets.items():
            os.replace(staged[current], path)
            del staged[current]  # only once renamed: a failed rename's staged copy is removed below
            done.append(current)
    except OSError as exc:
        restored = True
        for rel in done:  # put back what this call replaced
            try:
                if rel in backups:
                    os.replace(backups.pop(rel), targets[rel])
                else:
                    targets[rel].unlink()
            except OSError:
                restored = False
        outcome = (
            "nothing written" if restored else f"could not put back {', '.join(done)}: check those files"
        )
        raise PartialWriteError(
            f"cannot write {Path(root) / current}: {exc.strerror or exc}; {outcome} "
            f"({len(targets)} file(s) were to change)"
        ) from None
    finally:
        for tmp in [*staged.values(), *backups.values()]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for directory in {p.parent for p in targets.values()}:
        fsync_dir(directory)
    report.written = list(targets)
    return report


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout_s: float = 30.0) -> Iterator[None]:
    """Exclusive ``flock`` on *lock_path* across processes (and hosts, on NFS v4 / CephFS with locking).

    Raises StateUnavailableError after *timeout_s* instead of waiting forever.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StateUnavailableError(f"cannot lock {lock_path}: {exc.strerror}") from exc
                if time.monotonic() >= deadline:
                    raise StateUnavailableError(
                        f"timed out after {timeout_s:g}s waiting for {lock_path}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
