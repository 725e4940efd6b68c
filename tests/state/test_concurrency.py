"""Several processes writing the same key and the same record lose nothing, in both modes."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from tests.state import helpers, workers
from yuxi_k8s.state import ConflictError, Settings, Versioned, file_backend, open_config

PROCESSES = 4
ROUNDS = 15


@pytest.fixture(params=["file", "database"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "file":
        (tmp_path / "saves").mkdir()
        return "file", str(tmp_path / "saves")
    return "database", request.getfixturevalue("db_url")


def test_read_modify_write_from_several_processes_loses_nothing(target: tuple[str, str]) -> None:
    mode, where = target
    with workers.open_store(mode, where) as cfg:
        cfg.set("counter", 0)
        cfg.put_provider("shared", {"name": "shared", "models": []}, scope="custom")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        results = pool.starmap(workers.increment, [(mode, where, ROUNDS)] * PROCESSES)
    assert sum(r["applied"] for r in results) == 2 * PROCESSES * ROUNDS
    with workers.open_store(mode, where) as cfg:
        counter = cfg.get_versioned("counter")
        shared = cfg.get_provider_versioned("shared", scope="custom")
    assert counter == Versioned(PROCESSES * ROUNDS, PROCESSES * ROUNDS + 1)
    assert shared is not None
    marks = shared.value["models"]
    assert len(marks) == len(set(marks)) == PROCESSES * ROUNDS  # every append kept, none twice
    assert shared.version == PROCESSES * ROUNDS + 1


def test_blind_writes_from_several_processes_bump_every_version(target: tuple[str, str]) -> None:
    mode, where = target
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        pool.starmap(workers.blind_writes, [(mode, where, ROUNDS)] * PROCESSES)
    with workers.open_store(mode, where) as cfg:
        shared = cfg.get_versioned("shared_blind")
        own = {k: v for k, v in cfg.items().items() if k.startswith("key_")}
    assert shared is not None and shared.version == PROCESSES * ROUNDS
    assert len(own) == PROCESSES and set(own.values()) == {ROUNDS - 1}


def test_file_mode_reads_value_and_version_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 9: a reader paired an old value with a newer version (read unlocked, one
    after the other), so two increments from 10 ended at 11. Here a slow reader holds the
    files' value while a writer commits in between: the writer must wait for the reader's
    lock, and the reader's stale write must conflict."""
    saves = tmp_path / "saves"
    saves.mkdir()
    settings = Settings(mode="file", save_dir=saves)
    with open_config(settings) as cfg:
        cfg.set("counter", 10)
    reading = threading.Event()
    real_read = file_backend.read_saves

    def slow_read(root: Path) -> object:
        snap = real_read(root)
        if threading.current_thread().name == "slow-reader":
            reading.set()
            threading.Event().wait(0.5)  # the value is read; the version is not yet
        return snap

    monkeypatch.setattr(file_backend, "read_saves", slow_read)
    seen: list[Versioned | None] = []
    reader = threading.Thread(
        target=lambda: seen.append(open_config(settings).get_versioned("counter")), name="slow-reader"
    )
    reader.start()
    helpers.wait_until(reading.is_set, 5, "the reader to be inside its read")
    with open_config(settings) as writer:
        writer.set("counter", 11, expected_version=1)  # waits for the reader's lock
    reader.join(10)
    assert seen == [Versioned(10, 1)]  # value and version of one moment
    with open_config(settings) as cfg:
        stale = seen[0]
        assert stale is not None
        with pytest.raises(ConflictError):
            cfg.set("counter", stale.value + 1, expected_version=stale.version)
        current = cfg.get_versioned("counter")
        assert current is not None
        cfg.set("counter", current.value + 1, expected_version=current.version)
        assert cfg.get("counter") == 12
