"""The application's logs in the cluster: no credential in any line, no file shared by replicas.

Two things, both in the process of ``yuxi-k8s-app``:

- **Credentials masked** (:func:`mask_credentials`). Yuxi-Know 0.6.1 logs its
  database URL with the password at start (``storage/postgres/manager.py``:
  it cuts the URL at ``@`` and keeps ``scheme://user:password``). Every log
  record is masked before any handler sees it: the standard library's through
  the record factory (so also the handlers the app and uvicorn create later),
  loguru's through a filter on each of its sinks (which this module owns, see
  below). Masked are the password of any ``scheme://user:password@`` URL and,
  wherever they appear, the passwords of the URLs in the environment
  (``POSTGRES_URL``, ``REDIS_URL``, ...) and the values of variables named
  ``*PASSWORD``. loguru's variable dumps in tracebacks (``diagnose``) are off.
- **One log file per process, off the shared volume** (:func:`own_sinks`).
  The app writes ``saves/logs/yuxi-<date>.log`` with size rotation; on the
  ``saves`` volume every replica would append to and rotate the same file.
  Here the loguru sinks the app adds at its first import become one on stdout (what
  ``kubectl logs`` and a cluster's log collector read) and a file of this
  process alone, ``$YUXI_K8S_LOG_DIR/yuxi-<host>-<pid>.log`` (default under
  ``/tmp``, the pod's emptyDir; 10 MB, rotated, two old files kept).
  ``GET /api/system/logs`` reads the app's ``LOG_FILE`` at each call, which now
  names that file: it shows the log of the replica that answered (its last
  1,000 lines, the app's level filter works: same ``time - LEVEL - ...`` layout).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

LOG_DIR_ENV = "YUXI_K8S_LOG_DIR"
DEFAULT_LOG_DIR = "/tmp/yuxi-k8s-logs"
MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
ROTATION = "10 MB"
KEPT_FILES = 2
# The app's own layout, which /api/system/logs splits on " - " to filter by level.
FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss} - {level} - {name}:{line} - {message}"
STDOUT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level} {name}:{line}: {message}"
REQUIRED_LOGGING_ATTRIBUTES = ("LOG_FILE", "logger")

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<password>[^@/\s]+)(?=@)")


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """The literal credentials to mask: URL passwords (raw and decoded) and ``*PASSWORD`` values."""
    found: set[str] = set()
    for name, value in env.items():
        if name.upper().endswith("PASSWORD"):
            found.add(value)
        if "://" in value:
            try:
                password = urlsplit(value.strip()).password
            except ValueError:
                continue
            if password:
                found.update((password, unquote(password)))
    # Longest first: a secret that contains another is masked whole.
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class CredentialMask:
    """Replaces credentials in text; idempotent."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _masking_record_factory(previous: Callable[..., logging.LogRecord], mask: CredentialMask) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it itself, later
            return record
        masked = mask(message)
        if masked != message:  # only then: uvicorn's access formatter reads record.args
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            masked_text = mask(text)
            if masked_text != text:
                record.exc_text = masked_text
        return record

    factory.yuxi_k8s_masking = True  # type: ignore[attr-defined]
    return factory


def mask_credentials(env: Mapping[str, str] | None = None) -> CredentialMask:
    """Mask credentials in every standard-library log record from now on. Idempotent."""
    mask = CredentialMask(secrets_from_env(os.environ if env is None else env))
    current = logging.getLogRecordFactory()
    if not getattr(current, "yuxi_k8s_masking", False):
        logging.setLogRecordFactory(_masking_record_factory(current, mask))
    return mask


def process_log_file(log_dir: Path | None = None) -> Path:
    folder = log_dir or Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)
    return folder / f"yuxi-{socket.gethostname()}-{os.getpid()}.log"


def _masking_filter(mask: CredentialMask) -> Callable[[Any], bool]:
    def keep(record: Any) -> bool:
        record["message"] = mask(record["message"])
        return True

    return keep


def missing_attributes(logging_config: Any) -> list[str]:
    return [f"logging_config.{n}" for n in REQUIRED_LOGGING_ATTRIBUTES if not hasattr(logging_config, n)]


@contextmanager
def own_sinks(mask: CredentialMask, log_file: Path | None = None) -> Iterator[Path]:
    """Around the application's first import: the loguru sinks it adds become the kit's.

    The app adds its sinks while ``yuxi`` is imported (every ``yuxi.*`` import runs it, and
    it builds and logs the Config), so they cannot be replaced before it first logs;
    they are made right instead. A file sink (the app's ``saves/logs/...``) becomes this
    process's file, the console sink plain stdout; both mask credentials. loguru's
    ``add`` is overridden on its one logger object for the import only.
    """
    from loguru import logger as loguru_logger

    target = log_file or process_log_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    keep = _masking_filter(mask)
    real_add = loguru_logger.add

    def add(sink: Any, *args: Any, **kwargs: Any) -> int:
        level = kwargs.get("level", "DEBUG")
        if isinstance(sink, (str, os.PathLike)):  # the app's file on the shared volume
            return real_add(
                str(target),
                level=level,
                format=FILE_FORMAT,
                encoding="utf-8",
                rotation=ROTATION,
                retention=KEPT_FILES,
                diagnose=False,
                filter=keep,
            )
        if sink is sys.stderr or sink is sys.stdout:  # the app's coloured console
            return real_add(
                sys.stdout, level=level, format=STDOUT_FORMAT, colorize=False, diagnose=False, filter=keep
            )
        return real_add(sink, *args, **kwargs)

    loguru_logger.add = add  # type: ignore[method-assign]
    try:
        yield target
    finally:
        del loguru_logger.add  # the class's method again


def show_process_log(logging_config: Any, log_file: Path) -> None:
    """``GET /api/system/logs`` reads the module's LOG_FILE at each call: this process's file."""
    logging_config.LOG_FILE = str(log_file)
