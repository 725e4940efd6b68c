"""One API, two backends: every test here runs against the files and against PostgreSQL.

The backends must take the same calls, return the same answers and refuse the same
input, so nothing written in one mode is lost or changed by a switch to the other.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.state import helpers
from yuxi_k8s.state import (
    ConflictError,
    DistributedConfig,
    FencingError,
    InvalidValueError,
    Settings,
    StateView,
    Versioned,
    open_config,
)


@dataclass
class Store:
    mode: str
    settings: Settings
    opened: list[DistributedConfig]

    def open(self) -> DistributedConfig:
        cfg = open_config(self.settings)
        self.opened.append(cfg)
        return cfg

    def state(self) -> StateView:
        """What a fresh replica reads (not this process's cache)."""
        with open_config(self.settings) as cfg:
            return cfg.snapshot()


@pytest.fixture(params=["file", "database"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        (tmp_path / "saves").mkdir()
        settings = Settings(mode="file", save_dir=tmp_path / "saves")
    else:
        settings = Settings(mode="database", database_url=request.getfixturevalue("db_url"))
    s = Store(request.param, settings, [])
    yield s
    for cfg in s.opened:
        cfg.close()


@pytest.fixture
def cfg(store: Store) -> DistributedConfig:
    return store.open()


def test_set_get_versions_and_items(cfg: DistributedConfig, store: Store) -> None:
    assert cfg.get("default_model") is None
    assert cfg.get("default_model", "fallback") == "fallback"
    assert cfg.get_versioned("default_model") is None
    assert cfg.set("default_model", "openai/gpt-4.1", updated_by="test") == 1
    assert cfg.set("default_model", "deepseek/deepseek-chat") == 2
    assert cfg.get_versioned("default_model") == Versioned("deepseek/deepseek-chat", 2)
    cfg.set("enable_reranker", True)
    cfg.set("limits", {"timeout": 30, "ratio": 0.5, "tags": ["a", "b"], "nested": {"deep": [1, [2]]}})
    assert cfg.items() == {
        "default_model": "deepseek/deepseek-chat",
        "enable_reranker": True,
        "limits": {"timeout": 30, "ratio": 0.5, "tags": ["a", "b"], "nested": {"deep": [1, [2]]}},
    }
    # Another replica (a fresh open) reads the same, versions included.
    assert store.state().config["default_model"] == Versioned("deepseek/deepseek-chat", 2)


def test_types_survive_exactly(cfg: DistributedConfig, store: Store) -> None:
    values = {
        "int": 1,
        "float": 1.0,
        "true": True,
        "text": "年度报告 🚀",
        "big": 2**62,
        "neg": -0.5,
        "empty": {},
    }
    for key, value in values.items():
        cfg.set(key, value)
    state = store.state().config
    for key, value in values.items():
        got = state[key].value
        assert got == value and type(got) is type(value), key


def test_toml_dates_round_trip(cfg: DistributedConfig, store: Store) -> None:
    stamp = {"$toml": "datetime", "value": "2026-11-27T04:30:00+00:00"}
    day = {"$toml": "date", "value": "2026-11-27"}
    cfg.set("since", {"at": stamp, "days": [day]})
    assert store.state().config["since"].value == {"at": stamp, "days": [day]}


def test_returned_values_are_copies(cfg: DistributedConfig) -> None:
    cfg.set("limits", {"tags": ["a"]})
    got = cfg.get("limits")
    got["tags"].append("mutated")
    assert cfg.get("limits") == {"tags": ["a"]}
    view = cfg.snapshot()
    view.config["limits"].value["tags"].append("mutated")
    assert cfg.get("limits") == {"tags": ["a"]}


def test_expected_version_conflicts_change_nothing(cfg: DistributedConfig, store: Store) -> None:
    assert cfg.set("k", "first", expected_version=0) == 1  # 0: only if absent
    with pytest.raises(ConflictError) as exc:
        cfg.set("k", "again", expected_version=0)
    assert (exc.value.key, exc.value.expected, exc.value.actual) == ("k", 0, 1)
    assert str(exc.value) == "conflict on k: expected version 0, found at version 1"
    assert cfg.set("k", "second", expected_version=1) == 2
    with pytest.raises(ConflictError, match="expected version 1, found at version 2"):
        cfg.set("k", "stale", expected_version=1)
    with pytest.raises(ConflictError, match="found absent"):
        cfg.set("absent", 1, expected_version=3)
    assert store.state().config == {"k": Versioned("second", 2)}


def test_delete(cfg: DistributedConfig, store: Store) -> None:
    cfg.set("k", 1)
    cfg.set("k", 2)
    with pytest.raises(ConflictError):
        cfg.delete("k", expected_version=1)
    assert cfg.get("k") == 2
    cfg.delete("k", expected_version=2)
    assert cfg.get_versioned("k") is None
    cfg.delete("k")  # deleting what is absent is not an error
    with pytest.raises(ConflictError):
        cfg.delete("k", expected_version=2)
    # A key set again after a delete starts over at version 1.
    assert cfg.set("k", 3) == 1
    assert store.state().config == {"k": Versioned(3, 1)}


def test_providers(cfg: DistributedConfig, store: Store) -> None:
    openai = {"name": "OpenAI", "models": ["gpt-4.1"], "custom": False}
    mine = {"name": "Mine", "models": ["m-1"], "custom": True}
    assert cfg.put_provider("openai", openai) == 1  # scope model_names by default
    assert cfg.put_provider("my-llm", mine, scope="custom") == 1
    assert cfg.put_provider("openai", {**openai, "models": ["gpt-4.1", "o3"]}, expected_version=1) == 2
    with pytest.raises(ConflictError, match="provider:model_names/openai"):
        cfg.put_provider("openai", openai, expected_version=1)
    assert cfg.get_provider("openai") == {**openai, "models": ["gpt-4.1", "o3"]}
    assert cfg.get_provider("openai", scope="custom") is None  # scopes are separate
    assert cfg.get_provider_versioned("my-llm", scope="custom") == Versioned(mine, 1)
    assert cfg.list_providers("custom") == {"my-llm": mine}
    assert list(cfg.list_providers()) == ["openai"]
    # Providers are not config keys, and config keys are not providers.
    assert cfg.items() == {}
    with pytest.raises(InvalidValueError, match="put_provider"):
        cfg.set("model_names", {})
    with pytest.raises(InvalidValueError, match="scope"):
        cfg.put_provider("x", {}, scope="embed")
    with pytest.raises(ConflictError):
        cfg.delete_provider("my-llm", scope="custom", expected_version=2)
    cfg.delete_provider("my-llm", scope="custom", expected_version=1)
    cfg.delete_provider("my-llm", scope="custom")  # absent: nothing to do
    view = store.state()
    assert view.providers == {
        ("model_names", "openai"): Versioned({**openai, "models": ["gpt-4.1", "o3"]}, 2)
    }
    assert view.provider_records("model_names") == {"openai": {**openai, "models": ["gpt-4.1", "o3"]}}


def test_snapshot_holds_everything_with_versions(cfg: DistributedConfig) -> None:
    cfg.set("a", 1)
    cfg.set("a", 2)
    cfg.put_provider("p", {"name": "P"}, scope="custom")
    view = cfg.snapshot()
    assert view == StateView(
        config={"a": Versioned(2, 2)}, providers={("custom", "p"): Versioned({"name": "P"}, 1)}
    )


def test_set_many_is_all_or_nothing(cfg: DistributedConfig, store: Store) -> None:
    cfg.set("a", 1)
    assert cfg.set_many({"a": 2, "b": "x"}, updated_by="bulk") == {"a": 2, "b": 1}
    before = store.state()
    for bad in ({"c": 1, "d": math.nan}, {"c": 1, "model_names": {}}, {"c": 1, "e\x00": 1}):
        with pytest.raises(InvalidValueError):
            cfg.set_many(bad)
    assert store.state() == before
    assert cfg.set_many({}) == {}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Input neither backend may store; each refused with InvalidValueError and one line naming where.
POISON: list[tuple[str, Any, str]] = [
    ("nan", math.nan, "key nan: nan is not a JSON number"),
    ("inf", math.inf, "Infinity"),
    ("nested_nan", {"a": [1, math.nan]}, "key nested_nan: a[1]: nan"),
    ("nul_value", "a\x00b", "NUL character"),
    ("nul_in_object_key", {"a\x00": 1}, "object key contains a NUL character"),
    ("deep", _nested(40), "nested deeper than 32"),
    ("null", None, "null has no TOML form"),
    ("nested_null", {"a": None}, "key nested_null: a: null"),
    ("null_in_list", [1, None], "null"),
    ("huge_int", 2**70, "integer outside 64 bits"),
    ("big", "x" * (300 * 1024), "more than the 262144 allowed"),
    ("not_json", {1, 2}, "set is not a JSON value"),
    ("int_key", {1: "a"}, "object key 1 is not text"),
    ("bad_tag", {"$toml": "datetime", "value": "not a date"}, "does not hold an ISO datetime"),
    ("unknown_tag", {"$toml": "duration", "value": "P1D"}, "TOML date/time tag"),
]


@pytest.mark.parametrize(("key", "value", "message"), POISON, ids=[p[0] for p in POISON])
def test_poisoned_values_are_refused_and_nothing_is_stored(
    cfg: DistributedConfig, store: Store, key: str, value: Any, message: str
) -> None:
    """Issue 12 item 3: NaN, NUL and deep values were written (file mode) or crashed (database)."""
    cfg.set("kept", "before")
    before = store.state()
    with pytest.raises(InvalidValueError) as exc:
        cfg.set(key, value)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(InvalidValueError):
        cfg.put_provider(key, {"name": "x", "payload": value}, scope="custom")
    with pytest.raises(InvalidValueError):
        cfg.set_many({"fine": 1, key: value})
    assert store.state() == before
    assert cfg.items() == {"kept": "before"}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "non-empty text"),
        ("a\x00b", "NUL"),
        ("k" * 201, "at most 200 characters"),
        ("model_names", "put_provider"),
        ("*", "cannot be '*'"),
        ("provider:custom/x", "start with 'provider:'"),
    ],
)
def test_refused_config_keys(cfg: DistributedConfig, store: Store, key: str, message: str) -> None:
    before = store.state()
    for call in (lambda: cfg.set(key, 1), lambda: cfg.get(key), lambda: cfg.delete(key)):
        with pytest.raises(InvalidValueError, match=message):
            call()
    assert store.state() == before


def test_a_5000_deep_array_is_refused_without_recursion(cfg: DistributedConfig, store: Store) -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidValueError, match="nested deeper than 32 levels"):
        cfg.set("deep", deep)
    assert store.state().config == {}


def test_fenced_writes(cfg: DistributedConfig, store: Store) -> None:
    assert cfg.set("leader", "a", fence=("reindex", 5)) == 1
    assert cfg.set("leader", "b", fence=("reindex", 5)) == 2  # the same holder again
    assert cfg.set("leader", "c", fence=("reindex", 9)) == 3  # a newer holder
    with pytest.raises(FencingError, match="fencing token 5 for reindex"):
        cfg.set("leader", "stale", fence=("reindex", 5))
    assert cfg.set("other", 1, fence=("another-lock", 1)) == 1  # tokens are per resource
    assert store.state().config["leader"] == Versioned("c", 3)


def test_subscribe(store: Store) -> None:
    """Database mode: callbacks name what another replica changed. File mode has no change feed:
    other processes' changes are simply there on the next read."""
    a, b = store.open(), store.open()
    heard: list[str] = []
    unsubscribe = b.subscribe(heard.append)
    a.set("k", 1)
    a.put_provider("p", {"name": "P"}, scope="custom")
    helpers.wait_until(
        lambda: b.get("k") == 1 and b.get_provider("p", scope="custom"), 5, "b to see a's writes"
    )
    if store.mode == "database":
        helpers.wait_until(lambda: heard == ["k", "provider:custom/p"], 5, f"two callbacks on b {heard}")
    b.set("own", 1)  # a replica's own writes are not announced to itself
    a.delete("k")
    helpers.wait_until(lambda: b.get("k") is None, 5, "b to see the delete")
    if store.mode == "database":
        helpers.wait_until(lambda: heard[-1] == "k", 5, "the delete's callback")
    unsubscribe()
    count = len(heard)
    a.set("after", 1)
    helpers.wait_until(lambda: b.get("after") == 1, 5, "b to see the last write")
    assert len(heard) == count and "own" not in heard
    assert b.subscriber_lag_s == 0.0


def test_file_mode_writes_the_applications_own_files(tmp_path: Path) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    with open_config(Settings(mode="file", save_dir=saves)) as cfg:
        cfg.set("default_model", "openai/gpt-4.1")
        cfg.put_provider("openai", {"name": "OpenAI", "models": ["gpt-4.1"]})
        cfg.put_provider("mine", {"name": "Mine", "custom": True}, scope="custom")
    base = tomllib.loads((saves / "config/base.toml").read_text())
    custom = tomllib.loads((saves / "config/custom_providers.toml").read_text())
    assert base == {
        "default_model": "openai/gpt-4.1",
        "model_names": {"openai": {"name": "OpenAI", "models": ["gpt-4.1"]}},
    }
    assert custom == {"model_names": {"mine": {"name": "Mine", "custom": True}}}


def test_file_mode_reads_files_the_application_wrote(saves: Path) -> None:
    from tests.state.saves_factory import SETTINGS, custom_providers, model_names

    with open_config(Settings(mode="file", save_dir=saves)) as cfg:
        assert cfg.items() == SETTINGS
        assert cfg.list_providers() == model_names(3)
        assert cfg.list_providers("custom") == custom_providers(2)
        assert cfg.get_versioned("default_model") == Versioned(SETTINGS["default_model"], 1)
