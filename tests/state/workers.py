"""Functions run in child processes by the concurrency tests (importable under spawn)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from yuxi_k8s.state import ConflictError, DistributedConfig, Settings, open_config


def open_store(mode: str, target: str) -> DistributedConfig:
    """The store of *mode*: *target* is a saves/ folder (file) or a database URL (database)."""
    if mode == "file":
        return open_config(Settings(mode="file", save_dir=Path(target)))
    return open_config(Settings(mode="database", database_url=target))


def increment(mode: str, target: str, rounds: int) -> dict[str, int]:
    """Read-modify-write one counter key and one provider record, *rounds* times each.

    Every attempt ends applied or as a ConflictError (then re-read and retry);
    returns how many of each this process saw.
    """
    cfg = open_store(mode, target)
    applied = conflicts = 0
    me = f"p{os.getpid()}-{uuid.uuid4().hex[:6]}"  # a pool worker may run two tasks: pid alone repeats
    try:
        for i in range(rounds):
            while True:
                current = cfg.get_versioned("counter")
                assert current is not None
                try:
                    cfg.set("counter", current.value + 1, expected_version=current.version, updated_by=me)
                    applied += 1
                    break
                except ConflictError:
                    conflicts += 1
            while True:
                record = cfg.get_provider_versioned("shared", scope="custom")
                assert record is not None
                value = dict(record.value)
                value["models"] = [*value.get("models", []), f"{me}-{i}"]
                try:
                    cfg.put_provider("shared", value, scope="custom", expected_version=record.version)
                    applied += 1
                    break
                except ConflictError:
                    conflicts += 1
    finally:
        cfg.close()
    return {"applied": applied, "conflicts": conflicts}


def blind_writes(mode: str, target: str, rounds: int) -> int:
    """Writes without expected_version: plain upserts that must still bump the version atomically."""
    cfg = open_store(mode, target)
    try:
        for i in range(rounds):
            cfg.set(f"key_{os.getpid()}", i)
            cfg.set("shared_blind", i)
    finally:
        cfg.close()
    return rounds
