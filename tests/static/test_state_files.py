"""The application's settings files (state.saves), confined file IO (state.fileio) and the transfer plan.

Pure code on a temp folder: no database, no Redis.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path

import pytest
import tomli_w

from yuxi_k8s.state import StateError
from yuxi_k8s.state.fileio import (
    MAX_FILE_BYTES,
    PartialWriteError,
    UnsafePathError,
    confined,
    read_regular,
    replace_all,
)
from yuxi_k8s.state.saves import (
    BASE_TOML,
    CUSTOM_PROVIDERS_TOML,
    FormatError,
    Snapshot,
    read_saves,
    render_saves,
    write_saves,
)
from yuxi_k8s.transfer.plan import make_plan, rows_snapshot, same, snapshot_rows


def write(root: Path, rel: str, doc: dict[str, object]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")


# --- saves: parse and render -------------------------------------------------------------


def test_parse_the_applications_two_files(tmp_path: Path) -> None:
    write(tmp_path, BASE_TOML, {"default_model": "a/b", "enable_reranker": True,
                                "model_names": {"openai": {"name": "OpenAI", "models": ["x"]}}})  # fmt: skip
    write(tmp_path, CUSTOM_PROVIDERS_TOML, {"model_names": {"mine": {"name": "Mine", "custom": True}}})
    snap = read_saves(tmp_path)
    assert snap.config == {"default_model": "a/b", "enable_reranker": True}
    assert snap.providers == {
        ("model_names", "openai"): {"name": "OpenAI", "models": ["x"]},
        ("custom", "mine"): {"name": "Mine", "custom": True},
    }
    assert snap.present == {BASE_TOML, CUSTOM_PROVIDERS_TOML}
    assert snap.counts() == {"config keys": 2, "providers": 2}


def test_render_is_stable_and_round_trips(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 27, 4, 30, tzinfo=dt.UTC)
    write(tmp_path, BASE_TOML, {"z": 1, "a": {"when": when, "day": dt.date(2026, 1, 2)},
                                "model_names": {"b": {"name": "B"}, "a": {"name": "A"}}})  # fmt: skip
    snap = read_saves(tmp_path)
    assert snap.config["a"]["when"] == {"$toml": "datetime", "value": "2026-11-27T04:30:00+00:00"}
    files = render_saves(snap)
    assert list(files) == [BASE_TOML]
    assert files[BASE_TOML].index("[model_names.a]") < files[BASE_TOML].index("[model_names.b]")
    out = tmp_path / "out"
    out.mkdir()
    write_saves(out, snap)
    assert read_saves(out) == Snapshot(snap.config, snap.providers, {BASE_TOML})
    assert tomllib.loads((out / BASE_TOML).read_text())["a"]["when"] == when
    assert write_saves(out, snap).written == []  # unchanged: nothing rewritten


def test_render_of_what_files_cannot_hold() -> None:
    # Rows of older kits may hold null (values refuses it now): left out, as TOML has none.
    snap = Snapshot(config={"a": None, "b": {"c": None, "d": [1, None]}}, present={BASE_TOML})
    assert tomllib.loads(render_saves(snap)[BASE_TOML]) == {"b": {"d": [1]}}
    # An empty custom file that exists is rendered empty, so a deleted provider stays deleted.
    assert render_saves(Snapshot(present={CUSTOM_PROVIDERS_TOML})) == {CUSTOM_PROVIDERS_TOML: ""}
    with pytest.raises(StateError, match="malformed TOML date/time tag"):
        render_saves(Snapshot(config={"x": {"$toml": "date", "value": "never"}}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = [\n", "base.toml: invalid TOML: "),
        ("a = " + "[" * 100_000 + "]" * 100_000, "base.toml: nested deeper than 32 levels"),
        ("a = " + "[" * 40 + "]" * 40, "base.toml: a" ),
        ("a = 1e999", "base.toml: a: inf is not a JSON number (NaN/Infinity; a literal like 1e999"),
        ("a = nan", "base.toml: a: nan is not a JSON number"),
        ('a = "\\u0000"', "base.toml: a: text contains a NUL character"),
        ("a = 9223372036854775807\nb = 1", None),
        ("model_names = 3", "base.toml: model_names must be a table"),
        ("[model_names]\nx = 3", "base.toml: model_names.x: a provider record is an object, not int"),
    ],
)  # fmt: skip
def test_malformed_settings_are_one_line(tmp_path: Path, text: str, message: str | None) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / BASE_TOML).write_text(text, encoding="utf-8")
    if message is None:
        read_saves(tmp_path)
        return
    with pytest.raises(FormatError) as exc:
        read_saves(tmp_path)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert 'Token "Infinity"' not in str(exc.value)


def test_liberal_input(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / BASE_TOML).write_bytes(b"\xef\xbb\xbfa = 1\n")  # a BOM
    (tmp_path / CUSTOM_PROVIDERS_TOML).write_text("  \n")  # blank: left by a crash mid-write
    snap = read_saves(tmp_path)
    assert snap.config == {"a": 1} and snap.present == {BASE_TOML, CUSTOM_PROVIDERS_TOML}
    (tmp_path / CUSTOM_PROVIDERS_TOML).write_text("other = 1\n")
    with pytest.raises(FormatError, match=r"custom_providers.toml: unexpected top-level keys \['other'\]"):
        read_saves(tmp_path)
    (tmp_path / BASE_TOML).write_bytes(b"a = '\xff'\n")
    with pytest.raises(FormatError, match=r"base\.toml: not UTF-8 text"):
        read_saves(tmp_path)
    assert read_saves(tmp_path / "config").empty is True
    with pytest.raises(FormatError, match="not a directory"):
        read_saves(tmp_path / "nope")


# --- fileio: confinement, special files, all-or-nothing ---------------------------------------


def test_links_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "f").write_text("x")
    (root / "in").mkdir()
    (root / "in" / "f").write_text("inside")
    (root / "link-in").symlink_to(root / "in" / "f")
    (root / "link-out").symlink_to(outside / "f")
    (root / "dir-out").symlink_to(outside)
    assert read_regular(root, "link-in") == b"inside"
    assert confined(root, "not/yet/there") == root / "not/yet/there"
    for rel in ("link-out", "dir-out/f", "dir-out/new", "../outside/f"):
        with pytest.raises(UnsafePathError, match="leads outside"):
            confined(root, rel)
    assert read_regular(root, "absent") is None


def test_special_and_oversized_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePathError, match="fifo: not a regular file; refused"):
        read_regular(tmp_path, "fifo")  # returns at once: never opens the FIFO for a blocking read
    (tmp_path / "big").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    with pytest.raises(
        UnsafePathError, match=f"big: {MAX_FILE_BYTES + 1} bytes, larger than the {MAX_FILE_BYTES}"
    ):
        read_regular(tmp_path, "big")
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(UnsafePathError):
        read_regular(tmp_path, "zero")


def test_replace_all_puts_back_what_it_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")
    real = os.replace
    calls: list[str] = []

    def failing(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(PartialWriteError) as exc:
        replace_all(tmp_path, {"a": "new a", "b": "new b", "c": "new c"})
    monkeypatch.setattr(os, "replace", real)
    assert str(exc.value).endswith("b: Permission denied; nothing written (3 file(s) were to change)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp file, no c
    assert (tmp_path / "a").read_text() == "old a" and (tmp_path / "b").read_text() == "old b"
    report = replace_all(tmp_path, {"a": "old a", "b": "new b"})
    assert report.written == ["b"] and report.unchanged == ["a"]


# --- the transfer plan ---------------------------------------------------------------------------


def test_plan() -> None:
    files = snapshot_rows(
        Snapshot(config={"a": 1, "b": True, "c": "x"}, providers={("custom", "p"): {"n": 1}})
    )
    database = {"config": {"a": 1, "b": 1, "d": 0}, "provider": {("custom", "p"): {"n": 1}}}
    plan = make_plan(files, database)
    config = plan.kinds["config"]
    assert config.insert == {"c": "x"} and config.update == {"b": True}  # true is not 1
    assert config.unchanged == 1 and config.only_in_db == ["d"]
    assert plan.kinds["provider"].unchanged == 1 and not plan.empty and plan.differences == 3
    assert plan.details() == ["+ config c", "~ config b", "- config d"]
    assert plan.details(limit=1) == ["+ config c", "... and 2 more"]
    assert (
        "config keys         1 new,    1 changed,    1 unchanged, 1 only in the database (kept)"
        in plan.summary()[0]
    )
    assert make_plan(files, files).empty
    assert same(1.0, 1.0) and not same(1, 1.0) and not same(True, 1)
    assert rows_snapshot(files).config == {"a": 1, "b": True, "c": "x"}
