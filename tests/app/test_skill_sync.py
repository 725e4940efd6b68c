"""Two processes syncing one thread's skills at once (row 12 of the per-process state).

Before each sandbox tool call the application copies the skills a thread may see into
``saves/threads/<thread>/skills``, under a lock of its own process only. The api replicas
and the worker share ``saves/``: two of them syncing one thread delete each other's
temporary copies. Two processes of the real application (``tests/app/actors/skill_sync.py``,
the app's own sync as a tool call runs it) sync one thread at the same time, many rounds,
each round changing which skills the thread sees: with the kit not one fails; the application
alone fails (the baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.replicas import Replica
from yuxi_k8s.app.localrun import AppRunner, app_env

ACTOR = "tests/app/actors/skill_sync.py"
SKILLS = ("alpha", "beta", "gamma", "delta")
# Each round shows the thread another set: the sync deletes what left it and copies what came.
SETS = [["alpha", "beta"], ["gamma", "delta"], ["alpha", "gamma"], ["beta", "delta"], list(SKILLS)]
ROUNDS = 300
THREAD = "thread-skills-race"


def _skills(saves: Path) -> None:
    for slug in SKILLS:
        folder = saves / "skills" / slug
        (folder / "scripts").mkdir(parents=True)
        (folder / "SKILL.md").write_text(f"---\nname: {slug}\ndescription: {slug}\n---\n")
        for n in range(20):
            (folder / "scripts" / f"step{n}.py").write_text(f"print({n})\n" * 50)


@pytest.fixture
def pair(app_runner: AppRunner, kit_db: str, tmp_path: Path) -> Iterator[object]:
    started: list[Replica] = []

    def start(**env: str) -> tuple[Replica, Replica, Path]:
        saves = tmp_path / "saves"
        saves.mkdir()
        _skills(saves)
        for name in ("a", "b"):
            log = tmp_path / f"{name}.log"
            started.append(Replica(app_runner, app_env(kit_db, saves, **env), log, actor=ACTOR))
        return started[0], started[1], saves

    yield start
    for actor in started:
        actor.stop()


def _race(a: Replica, b: Replica) -> list[dict[str, object]]:
    for actor in (a, b):  # both start before either answers
        actor.send("sync", thread=THREAD, sets=SETS, rounds=ROUNDS)
    return [actor.answer("sync", timeout=600) for actor in (a, b)]


def test_two_processes_syncing_one_thread_both_succeed_every_round(pair: object) -> None:
    a, b, saves = pair()  # type: ignore[operator]
    replies = _race(a, b)
    assert [r["errors"] for r in replies] == [0, 0], replies
    # Both ended on the last set (every skill), each copied whole, no temporary copy left over.
    folder = saves / "threads" / THREAD / "skills"
    assert sorted(p.name for p in folder.iterdir()) == sorted(SETS[(ROUNDS - 1) % len(SETS)])
    assert all(len(list((folder / s / "scripts").iterdir())) == 20 for s in SKILLS)


def test_the_application_alone_fails_when_two_processes_sync_one_thread(pair: object) -> None:
    a, b, _ = pair(CONFIG_MODE="file", YUXI_K8S_STORE_WAIT_SECONDS="0")  # type: ignore[operator]
    replies = _race(a, b)
    assert sum(int(r["errors"]) for r in replies) > 0, replies  # type: ignore[call-overload]
