"""The application's settings files under saves/: parse them into records and render them back.

Yuxi-Know v0.6.1 keeps two files (``contracts/0.6.1.yaml``, ``state``):

- ``config/base.toml``: the settings ``Config.save()`` writes (the keys that differ
  from the defaults) and ``[model_names.<provider>]`` tables of built-in
  providers someone edited;
- ``config/custom_providers.toml``: ``[model_names.<provider>]`` tables of the
  providers users added.

:class:`Snapshot` sits between the files and the database, so ``migrate-config``,
``export-config``, ``diff`` and the file backend agree on what each file holds.
Reading is confined to the saves folder (:mod:`.fileio`), values are checked
(:mod:`.values`), rendering is stable (sorted keys), so an unchanged import
exports identically.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import fileio
from .errors import InvalidValueError, StateError
from .values import MAX_DEPTH, TOML_KINDS, TOML_TAG, check_name, check_record, check_value, is_toml_tag

BASE_TOML = "config/base.toml"
CUSTOM_PROVIDERS_TOML = "config/custom_providers.toml"
PROVIDER_FILES = {"model_names": BASE_TOML, "custom": CUSTOM_PROVIDERS_TOML}
MANAGED_FILES = (BASE_TOML, CUSTOM_PROVIDERS_TOML)


class FormatError(StateError, ValueError):
    """A settings file that cannot be read; str() is one line naming the file (and line)."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class Snapshot:
    """Everything the state library keeps, as plain records."""

    config: dict[str, Any] = field(default_factory=dict)
    providers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Managed files that exist (an empty base.toml still counts: export recreates it).
    present: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.present and not self.config and not self.providers

    def counts(self) -> dict[str, int]:
        return {"config keys": len(self.config), "providers": len(self.providers)}


# --- TOML values that JSON cannot hold ------------------------------------------


def _toml_to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {TOML_TAG: type(value).__name__, "value": value.isoformat()}
    return value


def _json_to_toml(value: Any) -> Any:
    if isinstance(value, dict):
        if is_toml_tag(value):
            try:
                return TOML_KINDS[value[TOML_TAG]](value["value"])
            except (KeyError, TypeError, ValueError):  # only rows written before values were checked
                raise InvalidValueError("a malformed TOML date/time tag cannot be written as TOML") from None
        # TOML has no null (values.check_value refuses it; rows of older kits may hold one):
        # a key set to None is left out of the file.
        return {k: _json_to_toml(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_json_to_toml(v) for v in value if v is not None]
    return value


# --- reading -------------------------------------------------------------------


def load_toml(root: Path, rel: str) -> dict[str, Any] | None:
    """Parse *root*/*rel* (None when absent or blank). Errors are FormatError naming file and line."""
    path = Path(root) / rel
    try:
        data = fileio.read_regular(root, rel)
    except StateError as exc:
        raise FormatError(path, str(exc).removeprefix(f"{path}: ")) from None
    if data is None:
        return None
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM (edited on Windows)
        data = data[3:]
    if not data.strip():  # an empty file, left by a crash mid-write of the app, holds nothing
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise FormatError(path, f"invalid TOML: {str(exc).splitlines()[0]}", line) from None
    except RecursionError:
        raise FormatError(path, f"nested deeper than {MAX_DEPTH} levels") from None
    value = _toml_to_json(doc)
    try:
        check_value(value, "file")
    except InvalidValueError as exc:
        raise FormatError(path, str(exc).removeprefix("file: ")) from None
    return value  # type: ignore[no-any-return]


def _providers_of(path: Path, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    table = doc.get("model_names")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise FormatError(path, "model_names must be a table")
    for name, record in table.items():
        try:
            check_name(name, "provider name")
            check_record(record, f"model_names.{name}")
        except InvalidValueError as exc:
            raise FormatError(path, str(exc)) from None
    return table


def read_saves(root: Path) -> Snapshot:
    """Parse the settings files under *root* (a saves/ directory)."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, "not a directory (expected the application's saves/ folder)")
    snap = Snapshot()
    base = load_toml(root, BASE_TOML)
    if base is not None or (root / BASE_TOML).is_file():
        base = base or {}
        for name, record in _providers_of(root / BASE_TOML, base).items():
            snap.providers[("model_names", name)] = record
        snap.config = {k: v for k, v in base.items() if k != "model_names"}
        snap.present.add(BASE_TOML)
    custom = load_toml(root, CUSTOM_PROVIDERS_TOML)
    if custom is not None or (root / CUSTOM_PROVIDERS_TOML).is_file():
        custom = custom or {}
        unknown = sorted(set(custom) - {"model_names"})
        if unknown:  # the app reads only model_names from this file; say so rather than drop them
            raise FormatError(root / CUSTOM_PROVIDERS_TOML, f"unexpected top-level keys {unknown}")
        for name, record in _providers_of(root / CUSTOM_PROVIDERS_TOML, custom).items():
            snap.providers[("custom", name)] = record
        snap.present.add(CUSTOM_PROVIDERS_TOML)
    return snap


# --- rendering -----------------------------------------------------------------


def dump_toml(value: Mapping[str, Any]) -> str:
    return tomli_w.dumps(_json_to_toml(dict(value)))


def render_saves(snap: Snapshot) -> dict[str, str]:
    """The text of every settings file the snapshot holds, by relative path (the app's own format)."""
    by_scope: dict[str, dict[str, dict[str, Any]]] = {"model_names": {}, "custom": {}}
    for (scope, name), record in sorted(snap.providers.items()):
        by_scope[scope][name] = record
    out: dict[str, str] = {}
    if snap.config or by_scope["model_names"] or BASE_TOML in snap.present:
        base: dict[str, Any] = dict(snap.config)
        if by_scope["model_names"]:
            base["model_names"] = by_scope["model_names"]
        out[BASE_TOML] = dump_toml(base)
    if by_scope["custom"] or CUSTOM_PROVIDERS_TOML in snap.present:
        out[CUSTOM_PROVIDERS_TOML] = dump_toml(
            {"model_names": by_scope["custom"]} if by_scope["custom"] else {}
        )
    return out


def write_saves(root: Path, snap: Snapshot) -> fileio.WriteReport:
    """Write the snapshot's files under *root*: all of them or none."""
    return fileio.replace_all(root, render_saves(snap))
