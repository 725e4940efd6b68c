"""What may be stored: checked once, where values enter, for both backends and the transfer.

A value is what both JSON (the database) and TOML (the application's files)
can hold: objects with string keys, arrays, strings, finite numbers and
booleans. Refused with one line naming where (``key default_model``,
``provider custom/x: models[3]``): null (TOML has none: the file backend and
an export would drop it, so neither backend stores it; delete the key
instead), NaN and infinities (JSON and PostgreSQL have none; ``1e999`` parses
as infinity), NUL characters (PostgreSQL text cannot hold them), nesting
deeper than :data:`MAX_DEPTH` (checked without recursion), more than
:data:`MAX_VALUE_BYTES` once encoded, a malformed TOML date tag
(:data:`TOML_TAG`), and any other Python type.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any

from .errors import InvalidValueError

MAX_DEPTH = 32
MAX_VALUE_BYTES = 256 * 1024
MAX_NAME_CHARS = 200
# TOML integers are 64-bit: a larger one could be stored but never exported.
INT_LIMIT = 2**63
# TOML dates and times have no JSON form: they are kept as {"$toml": "<kind>", "value": "<ISO text>"}.
TOML_TAG = "$toml"
TOML_KINDS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
}


def _path(where: str, trail: str) -> str:
    return f"{where}: {trail}" if trail else where


def is_toml_tag(node: Any) -> bool:
    """True for the JSON form of a TOML date/time (see :data:`TOML_TAG`)."""
    return isinstance(node, dict) and set(node) == {TOML_TAG, "value"}


def _check_tag(node: dict[str, Any], where: str) -> None:
    kind, text = node[TOML_TAG], node["value"]
    parse = TOML_KINDS.get(kind) if isinstance(kind, str) else None
    if parse is None or not isinstance(text, str):
        raise InvalidValueError(
            f"{where}: an object of exactly {TOML_TAG!r} and 'value' is a TOML date/time tag: "
            f"{TOML_TAG!r} must be one of {', '.join(TOML_KINDS)} and 'value' its ISO text"
        )
    try:
        parse(text)
    except ValueError:
        raise InvalidValueError(f"{where}: the TOML {kind} tag does not hold an ISO {kind}") from None


def check_value(value: Any, where: str) -> None:
    """Raise InvalidValueError unless *value* can be stored and exported as TOML/JSON."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, trail, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidValueError(f"{_path(where, trail)}: nested deeper than {MAX_DEPTH} levels")
        if node is None:
            raise InvalidValueError(
                f"{_path(where, trail)}: null has no TOML form (the application's files); "
                "leave the key out or delete it"
            )
        if isinstance(node, bool):
            continue
        if isinstance(node, str):
            if "\x00" in node:
                raise InvalidValueError(f"{_path(where, trail)}: text contains a NUL character")
        elif isinstance(node, int):
            if not -INT_LIMIT <= node < INT_LIMIT:
                raise InvalidValueError(f"{_path(where, trail)}: integer outside 64 bits")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidValueError(
                    f"{_path(where, trail)}: {node!r} is not a JSON number (NaN/Infinity; "
                    "a literal like 1e999 overflows to Infinity)"
                )
        elif isinstance(node, dict):
            if is_toml_tag(node):
                _check_tag(node, _path(where, trail))
                continue
            for key, item in node.items():
                if not isinstance(key, str):
                    raise InvalidValueError(f"{_path(where, trail)}: object key {key!r} is not text")
                if "\x00" in key:
                    raise InvalidValueError(f"{_path(where, trail)}: object key contains a NUL character")
                stack.append((item, f"{trail}.{key}" if trail else key, depth + 1))
        elif isinstance(node, list | tuple):
            for index, item in enumerate(node):
                stack.append((item, f"{trail}[{index}]", depth + 1))
        else:
            raise InvalidValueError(f"{_path(where, trail)}: {type(node).__name__} is not a JSON value")
    size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise InvalidValueError(f"{where}: {size} bytes, more than the {MAX_VALUE_BYTES} allowed")


def check_name(name: Any, what: str) -> str:
    """A config key or provider name: non-empty text without NUL, at most MAX_NAME_CHARS."""
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"a {what} is non-empty text, not {name!r}"[:200])
    if "\x00" in name:
        raise InvalidValueError(f"a {what} cannot contain a NUL character")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidValueError(f"a {what} is at most {MAX_NAME_CHARS} characters ({len(name)} given)")
    return name


def check_record(record: Any, where: str) -> dict[str, Any]:
    """A provider record: a JSON object."""
    if not isinstance(record, dict):
        raise InvalidValueError(f"{where}: a provider record is an object, not {type(record).__name__}")
    check_value(record, where)
    return record


def loads(text: str | bytes, where: str) -> Any:
    """Parse JSON strictly (no NaN/Infinity, duplicate keys refused) and check the result."""

    def no_constants(name: str) -> Any:
        raise InvalidValueError(f"{where}: {name} is not JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in pairs:
            if key in out:
                raise InvalidValueError(f"{where}: key {key!r} appears twice")
            out[key] = item
        return out

    try:
        value = json.loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise InvalidValueError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"{where}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    check_value(value, where)
    return value


def dumps(value: Any) -> str:
    """Compact JSON text with UTF-8 kept as is (for the database)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def canonical(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces; true and 1 differ, as do 1 and 1.0."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
