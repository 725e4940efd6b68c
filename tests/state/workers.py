"""Functions run in child processes by the concurrency tests (importable for spawn)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from yuxi_k8s.state import ConflictError, DistributedConfig, Settings


def _open(mode: str, target: str) -> DistributedConfig:
    if mode == "file":
        return DistributedConfig.open(Settings(mode="file", save_dir=Path(target)))
    return DistributedConfig.open(Settings(mode="database", database_url=target))


def increment(mode: str, target: str, rounds: int) -> dict[str, int]:
    """Read-modify-write one counter and append to one file record, *rounds* times each.

    Every attempt ends applied or as a ConflictError (then re-read and retry);
    returns how many of each this process saw.
    """
    cfg = _open(mode, target)
    applied = conflicts = 0
    me = f"p{os.getpid()}-{uuid.uuid4().hex[:6]}"  # a pool worker may run two tasks: pid alone repeats
    try:
        for i in range(rounds):
            while True:
                current = cfg.get_versioned("counter")
                try:
                    cfg.set("counter", current.value + 1, expected_version=current.version, updated_by=me)
                    applied += 1
                    break
                except ConflictError:
                    conflicts += 1
            while True:
                record = cfg.get_file_versioned("file_shared")
                assert record is not None
                value: dict[str, Any] = record.value
                value["marks"] = [*value.get("marks", []), f"{me}-{i}"]
                try:
                    cfg.put_file("file_shared", value, expected_version=record.version)
                    applied += 1
                    break
                except ConflictError:
                    conflicts += 1
    finally:
        cfg.close()
    return {"applied": applied, "conflicts": conflicts}


def blind_writes(mode: str, target: str, rounds: int) -> int:
    """Writes without expected_version: plain upserts that must still bump the version atomically."""
    cfg = _open(mode, target)
    try:
        for i in range(rounds):
            cfg.set(f"key_{os.getpid()}", i)
            cfg.set("shared_blind", i)
    finally:
        cfg.close()
    return rounds
