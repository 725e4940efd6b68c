"""File mode: the application's own settings files, safe for several processes on one volume.

Every read and every read-modify-write holds an exclusive ``flock`` on
``saves/.yuxi-k8s/state.lock`` (a value and its version are always read
together) and replaces files atomically, so two processes (or pods on one RWX
volume with working locks) lose nothing. Files hold no versions, so a sidecar
``saves/.yuxi-k8s/versions.json`` counts them (a key without an entry is at
version 1); edits made outside this library do not bump it. There is no change
feed in file mode: other processes' changes are seen on the next read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import DistributedConfig, StateView, Versioned, provider_key
from .errors import ConflictError, FencingError, StateError, StateUnavailableError
from .fileio import atomic_write, confined, file_lock, read_regular
from .saves import PROVIDER_FILES, Snapshot, dump_toml, read_saves
from .settings import Settings
from .values import loads

STATE_DIR = ".yuxi-k8s"
VERSIONS = f"{STATE_DIR}/versions.json"
FENCING = f"{STATE_DIR}/fencing.json"


def _check(key: str, expected: int | None, actual: int | None) -> None:
    if expected is None or (expected == 0 and actual is None):
        return
    if actual != expected:
        raise ConflictError(key, expected, actual)


class FileConfig(DistributedConfig):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = Path(settings.save_dir)

    # --- plumbing ------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.root.is_dir():
            raise StateUnavailableError(f"saves directory {self.root} does not exist")
        with file_lock(confined(self.root, f"{STATE_DIR}/state.lock")):
            yield

    def _snapshot_files(self) -> Snapshot:
        try:
            return read_saves(self.root)
        except StateError as exc:
            raise StateUnavailableError(str(exc)) from None

    def _json(self, rel: str) -> dict[str, Any]:
        data = read_regular(self.root, rel)
        if data is None:
            return {}
        value = loads(data, str(self.root / rel))
        if not isinstance(value, dict):
            raise StateUnavailableError(f"{self.root / rel}: expected a JSON object")
        return value

    def _write_json(self, rel: str, value: dict[str, Any]) -> None:
        self._write(rel, json.dumps(value, indent=2, sort_keys=True) + "\n")

    def _write(self, rel: str, text: str) -> None:
        try:
            atomic_write(confined(self.root, rel), text)
        except OSError as exc:
            raise StateUnavailableError(f"cannot write {self.root / rel}: {exc.strerror}") from None

    def _bump(self, key: str, old: int | None, *, deleted: bool = False) -> int:
        versions = self._json(VERSIONS)
        new = (old or 0) + 1
        if deleted:
            versions.pop(key, None)
        else:
            versions[key] = new
        self._write_json(VERSIONS, versions)
        return new

    def _write_provider_file(self, scope: str, snap: Snapshot) -> None:
        rel = PROVIDER_FILES[scope]
        records = {n: r for (s, n), r in sorted(snap.providers.items()) if s == scope}
        doc: dict[str, Any] = dict(snap.config) if scope == "model_names" else {}
        if records:
            doc["model_names"] = records
        self._write(rel, dump_toml(doc))

    def _check_fence(self, fence: tuple[str, int] | None) -> None:
        if fence is None:
            return
        resource, token = fence
        tokens = self._json(FENCING)
        if int(tokens.get(resource, 0)) > token:
            raise FencingError(f"fencing token {token} for {resource} is older than {tokens[resource]}")
        tokens[resource] = token
        self._write_json(FENCING, tokens)

    # --- reads ---------------------------------------------------------------------
    def snapshot(self) -> StateView:
        with self._locked():
            snap = self._snapshot_files()
            versions = self._json(VERSIONS)
        return StateView(
            config={k: Versioned(v, int(versions.get(k, 1))) for k, v in snap.config.items()},
            providers={
                key: Versioned(record, int(versions.get(provider_key(*key), 1)))
                for key, record in snap.providers.items()
            },
        )

    def _get_versioned(self, key: str) -> Versioned | None:
        return self.snapshot().config.get(key)

    # --- writes ------------------------------------------------------------------------
    def _set(
        self,
        key: str,
        value: Any,
        expected: int | None,
        updated_by: str | None,
        fence: tuple[str, int] | None,
    ) -> int:
        with self._locked():
            snap = self._snapshot_files()
            old = int(self._json(VERSIONS).get(key, 1)) if key in snap.config else None
            _check(key, expected, old)
            self._check_fence(fence)
            snap.config[key] = value
            self._write_provider_file("model_names", snap)
            return self._bump(key, old)

    def _set_many(self, items: dict[str, Any], updated_by: str | None) -> dict[str, int]:
        with self._locked():
            snap = self._snapshot_files()
            versions = self._json(VERSIONS)
            new = {k: (int(versions.get(k, 1)) + 1 if k in snap.config else 1) for k in items}
            snap.config.update(items)
            self._write_provider_file("model_names", snap)
            versions.update(new)
            self._write_json(VERSIONS, versions)
            return new

    def _delete(self, key: str, expected: int | None) -> None:
        with self._locked():
            snap = self._snapshot_files()
            old = int(self._json(VERSIONS).get(key, 1)) if key in snap.config else None
            _check(key, expected, old)
            if old is not None:
                del snap.config[key]
                self._write_provider_file("model_names", snap)
                self._bump(key, old, deleted=True)

    def _edit_provider(
        self, scope: str, name: str, expected: int | None, record: dict[str, Any] | None
    ) -> int:
        key = provider_key(scope, name)
        with self._locked():
            snap = self._snapshot_files()
            old = int(self._json(VERSIONS).get(key, 1)) if (scope, name) in snap.providers else None
            _check(key, expected, old)
            if record is None:
                if old is None:
                    return 0
                del snap.providers[(scope, name)]
            else:
                snap.providers[(scope, name)] = record
            self._write_provider_file(scope, snap)
            return self._bump(key, old, deleted=record is None)

    def _put_provider(
        self, scope: str, name: str, record: dict[str, Any], expected: int | None, updated_by: str | None
    ) -> int:
        return self._edit_provider(scope, name, expected, record)

    def _delete_provider(self, scope: str, name: str, expected: int | None) -> None:
        self._edit_provider(scope, name, expected, None)
