"""What the application can use in a stored setting or provider (issue 20 items 13, 14): pure checks.

The types are the contract's (``settings.fields``, checked against the pinned source by
test_app_contract.py); the provider-key variables are the contract's ``provider: true`` ones,
the list the provider-keys Secret is documented with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yuxi_k8s.app.contract import load
from yuxi_k8s.state import InvalidValueError, Settings, open_config
from yuxi_k8s.state.app_settings import check_provider, check_setting, provider_key_variables

OPENAI = {"name": "x", "url": "u", "base_url": "https://attacker.example/v1", "default": "m", "models": ["m"]}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sandbox_exec_timeout_seconds", [1], "is an integer (int), not a list"),
        ("sandbox_exec_timeout_seconds", "soon", "is an integer (int), not text"),
        ("sandbox_exec_timeout_seconds", True, "is an integer (int), not true/false"),
        ("sandbox_max_output_bytes", 1.5, "is an integer (int), not a number"),
        ("enable_reranker", 1, "is true or false (bool), not an integer"),
        ("default_model", {"a": 1}, "is text (str), not an object"),
        ("model_provider_status", {}, "the application computes it at start; it is not a setting"),
    ],
)
def test_a_value_of_another_type_is_refused_in_one_line_without_the_value(
    key: str, value: Any, expected: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        check_setting(key, value)
    message = str(caught.value)
    assert message.startswith(f"key {key}: ") and expected in message and "\n" not in message
    assert "soon" not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sandbox_exec_timeout_seconds", 300),
        ("enable_reranker", False),
        ("default_model", "siliconflow/x"),
        ("a_key_of_another_version", [1, {"x": None}]),  # kept as the application keeps it
    ],
)
def test_the_fields_type_and_unknown_keys_pass(key: str, value: Any) -> None:
    check_setting(key, value)


def test_every_persisted_field_has_a_type() -> None:
    contract = load()
    assert contract.setting_types["sandbox_exec_timeout_seconds"] == "int"
    assert not set(contract.setting_types) & contract.runtime_settings


@pytest.mark.parametrize(
    "env",
    ["POSTGRES_PASSWORD", "JWT_SECRET_KEY", "REDIS_URL", "${MINIO_SECRET_KEY}", "TAVILY_API_KEY", 5, ""],
)
def test_a_provider_naming_any_other_variable_is_refused(env: Any) -> None:
    with pytest.raises(InvalidValueError) as caught:
        check_provider("custom", "evil", {**OPENAI, "env": env})
    message = str(caught.value)
    assert message.startswith(
        "provider custom/evil: env must name a model-provider key variable (NO_API_KEY, "
    )
    assert not any(word in message for word in ("POSTGRES", "JWT", "REDIS", "MINIO", "TAVILY"))


@pytest.mark.parametrize("env", ["NO_API_KEY", "OPENAI_API_KEY", "${SILICONFLOW_API_KEY}"])
def test_provider_key_variables_pass(env: str) -> None:
    check_provider("custom", "mine", {**OPENAI, "env": env})
    check_provider("model_names", "openai", {"models": ["m"]})  # an edit that keeps the built-in's env


def test_the_provider_keys_are_the_contracts_one_list() -> None:
    assert provider_key_variables() == ["NO_API_KEY", *load().provider_keys()]


def test_the_file_backend_refuses_them_too_and_writes_nothing(tmp_path: Path) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    with open_config(Settings(mode="file", save_dir=saves)) as cfg:
        with pytest.raises(InvalidValueError, match="sandbox_exec_timeout_seconds"):
            cfg.set("sandbox_exec_timeout_seconds", [1])
        with pytest.raises(InvalidValueError, match="provider custom/evil"):
            cfg.put_provider("evil", {**OPENAI, "env": "POSTGRES_PASSWORD"}, scope="custom")
    assert not (saves / "config" / "base.toml").exists()
    assert not (saves / "config" / "custom_providers.toml").exists()
