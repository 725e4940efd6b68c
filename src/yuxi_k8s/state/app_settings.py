"""What the application accepts in a stored setting or model provider (the pinned contract's facts).

:mod:`.values` checks that a value can be stored at all; this checks that the
application can use it, where :mod:`.values` cannot know:

- a config key the application's ``Config`` persists holds that field's type
  (``contracts/<version>.yaml``, ``settings.fields``): ``Config`` does not check
  on assignment, and a process that loads ``sandbox_exec_timeout_seconds = [1]``
  stops at start (``int([1])``); the fields the application computes for itself
  (``settings.runtime``) are never stored. Keys of other versions pass;
- a model provider's ``env`` names a model-provider key variable (``provider: true``
  in the contract) or ``NO_API_KEY``: the application sends the variable it names
  as the bearer key to the provider's ``base_url``, so ``POSTGRES_PASSWORD`` would
  hand the database password to any server an admin names.

Each check raises :class:`InvalidValueError` with one line naming the key or
provider and never the value. The store calls them on every write, ``migrate-config``
on every row it imports, and the settings binding before a save and on load
(where a bad row already stored is skipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from .errors import InvalidValueError

NO_KEY = "NO_API_KEY"  # the application's word for "this provider needs no key"
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "text"),
}


@cache
def _facts() -> tuple[dict[str, str], frozenset[str], frozenset[str]]:
    from yuxi_k8s.app.contract import load  # the pinned version's contract

    contract = load()
    return contract.setting_types, contract.runtime_settings, frozenset(contract.provider_keys())


def provider_key_variables() -> list[str]:
    """What a provider's ``env`` may name, sorted (NO_API_KEY first)."""
    return [NO_KEY, *sorted(_facts()[2])]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "text", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def check_setting(key: str, value: Any) -> None:
    """Raise InvalidValueError unless the application can use *value* for config key *key*."""
    types, runtime, _ = _facts()
    if key in runtime:
        raise InvalidValueError(f"key {key}: the application computes it at start; it is not a setting")
    kind = types.get(key)
    if kind is None:
        return  # not a field of this version: kept as the application keeps it
    accepted, described = _KINDS[kind]
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        raise InvalidValueError(
            f"key {key}: the application's field is {described} ({kind}), not {_json_type(value)}"
        )


def check_provider(scope: str, name: str, record: Mapping[str, Any]) -> None:
    """Raise InvalidValueError unless provider *record*'s ``env`` names a model-provider key variable."""
    if "env" not in record:
        return  # an edit of a built-in provider keeps the built-in's variable
    env = record["env"]
    if isinstance(env, str) and env.startswith("${") and env.endswith("}"):
        env = env[2:-1]  # the application's own spelling of a variable name
    if env != NO_KEY and env not in _facts()[2]:
        raise InvalidValueError(
            f"provider {scope}/{name}: env must name a model-provider key variable "
            f"({', '.join(provider_key_variables())}), the variable whose value the application "
            "sends to base_url as the API key"
        )
