"""What may be stored (yuxi_k8s.state.values): checked once, where values enter. Pure code, no services."""

from __future__ import annotations

import math
from typing import Any

import pytest

from yuxi_k8s.state import InvalidValueError
from yuxi_k8s.state.values import (
    MAX_DEPTH,
    MAX_VALUE_BYTES,
    canonical,
    check_name,
    check_record,
    check_value,
    dumps,
    loads,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "年度报告 🚀",
        0,
        -(2**63),
        2**63 - 1,
        0.5,
        True,
        [],
        {},
        {"a": [1, {"b": "c"}]},
        nested(MAX_DEPTH - 1),
        {"$toml": "datetime", "value": "2026-11-27T04:30:00+00:00"},
        {"$toml": "date", "value": "2026-11-27"},
        {"$toml": "time", "value": "04:30:00"},
        {"$toml": "date", "value": "2026-11-27", "other": 1},  # not a tag: an ordinary object
    ],
)
def test_accepted(value: Any) -> None:
    check_value(value, "key k")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "key k: nan is not a JSON number"),
        (-math.inf, "key k: -inf is not a JSON number (NaN/Infinity; a literal like 1e999 overflows"),
        ({"a": {"b": [0, math.inf]}}, "key k: a.b[1]: inf"),
        ("a\x00", "key k: text contains a NUL character"),
        ({"\x00": 1}, "key k: object key contains a NUL character"),
        (None, "key k: null has no TOML form"),
        ([1, None], "key k: [1]: null has no TOML form"),
        (2**63, "key k: integer outside 64 bits"),
        (-(2**63) - 1, "integer outside 64 bits"),
        (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        (nested(5000), f"nested deeper than {MAX_DEPTH} levels"),  # no RecursionError
        ({1: 2}, "object key 1 is not text"),
        (b"bytes", "bytes is not a JSON value"),
        (object(), "object is not a JSON value"),
        ("x" * (MAX_VALUE_BYTES + 1), f"more than the {MAX_VALUE_BYTES} allowed"),
        (
            {"$toml": "datetime", "value": "yesterday"},
            "key k: the TOML datetime tag does not hold an ISO datetime",
        ),
        ({"$toml": "week", "value": "1"}, "is a TOML date/time tag"),
        ({"$toml": "date", "value": 20261127}, "is a TOML date/time tag"),
    ],
)
def test_refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidValueError) as exc:
        check_value(value, "key k")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_messages_never_quote_the_value() -> None:
    secret = "sk-secret-value"
    for value in ({"token": secret, "bad": math.nan}, {"$toml": "date", "value": secret}, secret + "\x00"):
        with pytest.raises(InvalidValueError) as exc:
            check_value(value, "key k")
        assert secret not in str(exc.value)


def test_names_and_records() -> None:
    assert check_name("openai", "provider name") == "openai"
    for bad, message in (
        ("", "non-empty"),
        (None, "non-empty"),
        ("a\x00", "NUL"),
        ("n" * 201, "at most 200"),
    ):
        with pytest.raises(InvalidValueError, match=message):
            check_name(bad, "provider name")
    assert check_record({"name": "x"}, "provider custom/x") == {"name": "x"}
    with pytest.raises(
        InvalidValueError, match="provider custom/x: a provider record is an object, not list"
    ):
        check_record([], "provider custom/x")


def test_loads_is_strict() -> None:
    assert loads('{"a": [1, 2.5, "x"]}', "body") == {"a": [1, 2.5, "x"]}
    cases = {
        '{"a": NaN}': "body: NaN is not JSON",
        '{"a": -Infinity}': "body: -Infinity is not JSON",
        '{"a": 1e999}': "inf is not a JSON number",
        '{"a": 1, "a": 2}': "body: key 'a' appears twice",
        '{"a": "\\u0000"}': "NUL character",
        "[" * 100_000: f"body: nested deeper than {MAX_DEPTH} levels",
        '{"a": ': "body: invalid JSON: Expecting value (line 1)",
        '{"a": null}': "null has no TOML form",
    }
    for text, message in cases.items():
        with pytest.raises(InvalidValueError) as exc:
            loads(text, "body")
        assert message in str(exc.value), text[:20]


def test_dumps_and_canonical() -> None:
    assert dumps({"b": "年", "a": [1, 2.0]}) == '{"b":"年","a":[1,2.0]}'
    assert canonical({"b": 1, "a": 2}) == canonical({"a": 2, "b": 1}) == b'{"a":2,"b":1}'
    assert canonical(True) != canonical(1) and canonical(1) != canonical(1.0)
