"""The per-process state table (contracts/0.6.1-process-state.yaml) is complete, proven and current.

Every row of the app's facts has a decision; every test, doc anchor and kit module a row names
exists; every upstream place it names is still defined in the pinned source (re-read here, so a
place that moved fails); docs/per-process-state.md shows the same decisions. Each check is also
shown to fail on a broken copy.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from yuxi_k8s.app import process_state
from yuxi_k8s.paths import REPO_ROOT

DOCS_PAGE = REPO_ROOT / "docs" / "per-process-state.md"
# Rows 1-20 of "Per-process state in v0.6.1" and the findings listed after it.
EXPECTED_ROWS = [str(n) for n in range(1, 21)] + [
    "db-url-log",
    "object-urls",
    "provider-env",
    "config-any-type",
]


@pytest.fixture(scope="module")
def rows() -> list[process_state.Row]:
    return process_state.load()


def _table() -> dict:
    return yaml.safe_load(process_state.table_path().read_text(encoding="utf-8"))


def _problems(doc: dict) -> list[str]:
    return process_state.parse(doc, "copy.yaml")[1]


def _entry(doc: dict, row_id: str) -> dict:
    return next(r for r in doc["rows"] if str(r["row"]) == row_id)


def test_every_row_is_listed_once_with_a_decision(rows: list[process_state.Row]) -> None:
    assert [r.id for r in rows] == EXPECTED_ROWS
    assert all(r.decision.kind in process_state.KINDS and r.decision.text for r in rows)


def test_no_test_the_table_names_is_missing(rows: list[process_state.Row]) -> None:
    assert process_state.missing_tests(rows, REPO_ROOT) == []


def test_every_place_is_still_defined_in_the_pinned_source(
    rows: list[process_state.Row], pinned_tree: Path
) -> None:
    assert process_state.moved_places(rows, pinned_tree) == []


def test_the_docs_page_shows_the_same_decisions(rows: list[process_state.Row]) -> None:
    documented = process_state.docs_decisions(DOCS_PAGE.read_text(encoding="utf-8"))
    assert documented == {r.id: (r.decision.kind, r.decision.issue) for r in rows}
    open_in_docs = sorted(row for row, (kind, _) in documented.items() if kind == "open")
    assert open_in_docs == sorted(r.id for r in rows if r.decision.kind == "open")


def test_the_docs_page_is_linked_from_the_readme_and_database_mode() -> None:
    for page in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "database-mode.md"):
        assert "per-process-state.md" in page.read_text(encoding="utf-8"), page.name


def test_a_contract_folder_table_is_not_a_supported_version() -> None:
    from yuxi_k8s.app import contract

    assert all("process-state" not in v for v in contract.supported_versions())


# The checks can fail: broken copies of the table, the repository and the source.


def test_a_row_without_a_decision_is_reported() -> None:
    doc = _table()
    del _entry(doc, "7")["decision"]
    assert "copy.yaml: row 7: has no decision" in _problems(doc)


@pytest.mark.parametrize(
    ("row", "change", "expected"),
    [
        ("7", {"kind": "maybe"}, "copy.yaml: row 7: decision kind 'maybe' is not one of"),
        ("7", {"text": " "}, "copy.yaml: row 7: the decision has no `text`"),
        ("7", {"kind": "open", "issue": None}, "copy.yaml: row 7: is open without the issue that tracks it"),
        (
            "16",
            {"kind": "kit"},
            "copy.yaml: row 16: 'docs: docs/per-process-state.md#mcp-tool-cache-row-16': a doc",
        ),
    ],
)
def test_a_malformed_decision_is_one_line(row: str, change: dict, expected: str) -> None:
    doc = _table()
    decision = _entry(doc, row)["decision"]
    for key, value in change.items():
        if value is None:
            decision.pop(key, None)
        else:
            decision[key] = value
    problems = _problems(doc)
    assert any(p.startswith(expected) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_a_decided_row_without_tests_is_reported() -> None:
    doc = _table()
    _entry(doc, "14")["tests"] = []
    assert "copy.yaml: row 14: is kit without a test that proves it" in _problems(doc)


def test_load_names_every_problem_of_a_file(tmp_path: Path) -> None:
    doc = _table()
    del _entry(doc, "7")["decision"]
    _entry(doc, "18")["tests"] = []
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(process_state.ProcessStateError) as caught:
        process_state.load(path)
    assert str(caught.value).splitlines() == [
        "broken.yaml: row 7: has no decision",
        "broken.yaml: row 18: is manifests without a test that proves it",
    ]


def test_a_renamed_test_a_lost_anchor_and_a_missing_module_are_reported(
    rows: list[process_state.Row], tmp_path: Path
) -> None:
    # A copy of the repository where row 14's first test was renamed and the docs page lost its heading.
    repo = tmp_path / "repo"
    (repo / "tests" / "app").mkdir(parents=True)
    (repo / "docs").mkdir()
    (repo / "src" / "yuxi_k8s" / "app" / "integration").mkdir(parents=True)
    for rel in {t.split("::")[0] for r in rows for t in r.tests if t.startswith("tests/")}:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, repo / rel)
    for module in {r.decision.module for r in rows if r.decision.module}:
        if module != "yuxi_k8s.app.integration.settings_binding":  # every kit module but row 14's
            path = repo / "src" / Path(*module.split(".")).with_suffix(".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    test_file = repo / "tests" / "app" / "test_settings_binding.py"
    text = test_file.read_text(encoding="utf-8")
    test_file.write_text(
        text.replace("def test_a_save_on_one_replica_reaches_the_other_without_a_restart(", "def renamed("),
        encoding="utf-8",
    )
    (repo / "docs" / "per-process-state.md").write_text(
        "# Per-process state\n\n## MCP tools\n", encoding="utf-8"
    )
    assert process_state.missing_tests(rows, repo) == [
        "row 14: test_a_save_on_one_replica_reaches_the_other_without_a_restart is not defined in "
        "tests/app/test_settings_binding.py "
        "(tests/app/test_settings_binding.py::test_a_save_on_one_replica_reaches_the_other_without_a_restart)",
        "row 14: kit module yuxi_k8s.app.integration.settings_binding is not in src/",
        "row 15: docs/per-process-state.md has no heading #settings-read-once-row-15",
        "row 16: docs/per-process-state.md has no heading #mcp-tool-cache-row-16",
    ]
    (repo / "tests" / "e2e" / "test_app_stack.py").unlink()
    assert any(
        "tests/e2e/test_app_stack.py does not exist" in p for p in process_state.missing_tests(rows, repo)
    )


def test_a_place_that_moved_in_the_source_is_reported(
    rows: list[process_state.Row], pinned_tree: Path, tmp_path: Path
) -> None:
    # A copy of the files the table names, where one method is renamed and one file is gone.
    tree = tmp_path / "tree"
    for rel in {p.file for r in rows for p in r.places}:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pinned_tree / rel, tree / rel)
    base = tree / "backend" / "package" / "yuxi" / "knowledge" / "base.py"
    base.write_text(
        base.read_text(encoding="utf-8").replace(
            "async def _save_metadata(", "async def _write_all_metadata("
        ),
        encoding="utf-8",
    )
    (tree / "backend" / "server" / "main.py").unlink()
    assert process_state.moved_places(rows, tree) == [
        "row 2: KnowledgeBase._save_metadata is not defined in backend/package/yuxi/knowledge/base.py",
        "row 9: backend/server/main.py is not in the source",
    ]


def test_definitions_sees_methods_attributes_and_conditional_names() -> None:
    names = process_state.definitions(
        textwrap.dedent(
            """
            LIMIT = 10
            cache: dict = {}
            a, b = 1, 2
            if FLAG:
                service = object()
            else:
                service = None
            class Store:
                _items = set()
                model_config = {}
                class Inner:
                    def go(self): ...
                def __init__(self):
                    self.path: str = ""
                    self.count = 0
                @classmethod
                def reset(cls):
                    cls.shared = []
                async def save(self):
                    local = 1
            def helper():
                hidden = 2
            """
        )
    )
    assert {"LIMIT", "cache", "a", "b", "service", "Store", "Store._items", "Store.model_config"} <= names
    assert {"Store.Inner", "Store.Inner.go", "Store.__init__", "Store.path", "Store.count"} <= names
    assert {"Store.reset", "Store.shared", "Store.save", "helper"} <= names
    assert not {"local", "hidden", "Store.local", "Store.save.local"} & names


def test_heading_anchors_follow_github() -> None:
    assert process_state.heading_anchor("### MCP tool cache (row 16)") == "mcp-tool-cache-row-16"
    assert process_state.heading_anchor('## What "open" means') == "what-open-means"
