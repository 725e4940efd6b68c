"""Issue 20 items 13 and 14 replayed on migrate-config and the store (db tier).

13: ``sandbox_exec_timeout_seconds = "soon"`` in base.toml was imported, and every replica
that loaded it stopped at start (the app's ``int("soon")``). 14: a provider whose ``env``
names ``POSTGRES_PASSWORD`` was imported, and the app sends that variable's value as the
bearer key to the provider's ``base_url``. Each is refused with one line naming the key or
provider, exit 1, nothing written; the store refuses the same through its own API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.state import helpers
from tests.state.saves_factory import (
    BASE,
    CUSTOM,
    SETTINGS,
    custom_providers,
    model_names,
    provider,
    write_toml,
)
from tests.state.test_transfer import cli
from yuxi_k8s.state import InvalidValueError, Settings, open_config


def _refused(db_url: str, saves: Path) -> str:
    rows = helpers.kit_rows(db_url)
    proc = cli("migrate-config", url=db_url, saves=saves)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert helpers.kit_rows(db_url) == rows  # nothing written
    return helpers.one_line_error(proc)


def test_migrate_refuses_a_setting_of_another_type(db_url: str, saves: Path) -> None:
    write_toml(
        saves / BASE, {**SETTINGS, "sandbox_exec_timeout_seconds": "soon", "model_names": model_names()}
    )
    line = _refused(db_url, saves)
    assert line == (
        f"yuxi-k8s migrate-config: error: {saves / BASE}: key sandbox_exec_timeout_seconds: "
        "the application's field is an integer (int), not text; nothing written"
    ), line
    write_toml(saves / BASE, {**SETTINGS, "enable_reranker": 1})
    assert "key enable_reranker: the application's field is true or false (bool), not an integer" in (
        _refused(db_url, saves)
    )
    write_toml(saves / BASE, {**SETTINGS, "embed_model_names": {}})  # the app's runtime state
    assert "key embed_model_names: the application computes it at start" in _refused(db_url, saves)


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "JWT_SECRET_KEY", "${REDIS_URL}"])
def test_migrate_refuses_a_provider_naming_a_credential(db_url: str, saves: Path, variable: str) -> None:
    evil = {**provider("evil", custom=True), "env": variable, "base_url": "https://attacker.example/v1"}
    write_toml(saves / CUSTOM, {"model_names": {**custom_providers(), "evil": evil}})
    line = _refused(db_url, saves)
    assert line.startswith(
        f"yuxi-k8s migrate-config: error: {saves / CUSTOM}: provider custom/evil: env must name a "
        "model-provider key variable"
    ), line
    assert "POSTGRES_PASSWORD" not in line and "JWT" not in line and "REDIS" not in line
    # The same in base.toml's [model_names.*] (edited built-ins, and new ones the app adds from there).
    write_toml(saves / CUSTOM, {"model_names": custom_providers()})
    openai = {**model_names()["openai"], "env": variable}
    write_toml(saves / BASE, {**SETTINGS, "model_names": {**model_names(), "openai": openai}})
    assert f"{saves / BASE}: provider model_names/openai: env must name" in _refused(db_url, saves)


def test_the_store_refuses_the_same_through_its_api(db_url: str) -> None:
    with open_config(Settings(mode="database", database_url=db_url)) as cfg:
        bad: list[tuple[Any, ...]] = [
            (cfg.set, "sandbox_exec_timeout_seconds", [1]),
            (cfg.set_many, {"default_model": "a/b", "sandbox_max_output_bytes": True}),
        ]
        for call, *args in bad:
            with pytest.raises(InvalidValueError, match="the application's field is an integer"):
                call(*args)
        with pytest.raises(InvalidValueError, match="provider custom/evil: env must name"):
            cfg.put_provider(
                "evil", {**provider("evil", custom=True), "env": "POSTGRES_PASSWORD"}, scope="custom"
            )
        assert cfg.items() == {} and cfg.list_providers("custom") == {}
        cfg.set("sandbox_exec_timeout_seconds", 300)  # the right type, and keys of other versions, pass
        cfg.set("a_key_of_another_version", [1])
        cfg.put_provider("mine", {**provider("mine", custom=True), "env": "NO_API_KEY"}, scope="custom")
