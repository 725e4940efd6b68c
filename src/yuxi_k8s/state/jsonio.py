"""Fast JSON for bulk work (orjson), falling back to the standard library where it is stricter.

orjson refuses what Python's json accepts (NaN, integers beyond 64 bits); the
fallback keeps those working and gives the standard library's error messages
(with line numbers) for malformed input.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class NotJSONError(ValueError):
    """NaN or Infinity: Python writes them, JSON and PostgreSQL have no such values."""


def _refuse_constant(name: str) -> Any:
    raise NotJSONError(f"{name} is not JSON and PostgreSQL cannot store it; replace it (e.g. with null)")


def fast_loads(data: str | bytes) -> Any:
    """orjson only: raises ValueError (orjson.JSONDecodeError) on anything it refuses."""
    return orjson.loads(data)


def loads(data: str | bytes, *, allow_nan: bool = True) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if allow_nan:
            return json.loads(data)
        return json.loads(data, parse_constant=_refuse_constant)


def dumps(value: Any) -> str:
    """Compact JSON text with UTF-8 kept as is (for the database)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces; true and 1 differ, as do 1 and 1.0."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def use_for(conn: Any) -> None:
    """Make a psycopg connection load and dump JSON/JSONB with these functions."""
    from psycopg.types.json import set_json_dumps, set_json_loads

    set_json_loads(loads, conn)
    set_json_dumps(dumps, conn)
