"""contracts/0.6.1.yaml agrees with the pinned source, and the extractor sees what it should.

The source comes from YUXI_K8S_APP_SOURCE (CI: the shared copy of the tarball) or a clone of
the pinned tag; where neither can be had the test fails naming what is missing. Every variable
the api, the worker and the provisioner read and every table the application creates must be
in the contract, and nothing the source never reads may be; defaults must match.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from yuxi_k8s.app import PINNED_VERSION, contract
from yuxi_k8s.app.extract import extract


def test_the_contract_and_the_pinned_source_agree(pinned_tree: Path) -> None:
    pinned = contract.identify(pinned_tree, PINNED_VERSION)
    assert contract.differences(pinned, pinned_tree) == []


def test_a_source_that_reads_one_more_variable_is_a_difference(pinned_tree: Path, tmp_path: Path) -> None:
    """The comparison can fail: a copy of the tree that reads a new variable and creates a new table."""
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(pinned_tree, tree, ignore=shutil.ignore_patterns("web", "docs", "node_modules"))
    (tree / "web").mkdir()
    shutil.copy(pinned_tree / "web" / "package.json", tree / "web" / "package.json")
    extra = tree / "backend" / "package" / "yuxi" / "kit_probe_module.py"
    extra.write_text(
        textwrap.dedent(
            """
            import os
            SETTING = os.getenv("YUXI_NEW_SETTING", "on")
            SQL = "CREATE TABLE IF NOT EXISTS kit_probe_table (id int)"
            """
        )
    )
    app_py = tree / "backend" / "package" / "yuxi" / "config" / "app.py"
    app_py.write_text(
        app_py.read_text().replace("sandbox_exec_timeout_seconds: int", "sandbox_exec_timeout_seconds: float")
    )
    problems = contract.differences(contract.load(), tree)
    assert any("YUXI_NEW_SETTING is read by the source" in p for p in problems), problems
    changed_type = (
        "settings: sandbox_exec_timeout_seconds is float in the source "
        "(backend/package/yuxi/config/app.py), int in the contract"
    )
    assert changed_type in problems, problems
    assert any("kit_probe_table is created by the source" in p for p in problems), problems


def test_the_extractor_follows_constants_wrappers_and_the_model_catalogue(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        textwrap.dedent(
            """
            import os
            from os import getenv
            URL_ENV = "THE_URL"
            class Manager:
                NAME_ENV = "THE_NAME"
                def go(self):
                    return os.getenv(self.NAME_ENV), os.environ.get(URL_ENV, "x"), os.environ["DIRECT"]
            def _env(name, default=""):
                return os.environ.get(name, default).strip()
            A = _env("WRAPPED", "dflt")
            B = getenv("BARE")
            class Model:
                __tablename__ = "things"
            """
        )
    )
    (pkg / "models.py").write_text(
        'P = Provider(env="SOME_API_KEY", api_key="OTHER_KEY")\nQ = Provider(env="NO_API_KEY")\n'
    )
    facts = extract(tmp_path, ["pkg"], "pkg/models.py")
    assert set(facts.env) == {"THE_NAME", "THE_URL", "DIRECT", "WRAPPED", "BARE"}
    assert facts.env["THE_URL"].default == "x" and facts.env["WRAPPED"].default == "dflt"
    assert facts.provider_env == {"SOME_API_KEY", "OTHER_KEY"}
    assert facts.tables == {"things"}


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, r"is not a Yuxi-Know source tree \(missing"),
        ({"version": "0.6.2"}, "is Yuxi-Know 0.6.2, but this kit deploys 0.6.1"),
    ],
)
def test_a_tree_that_is_not_the_pinned_application_is_one_line(
    tmp_path: Path, layout: dict[str, str], message: str
) -> None:
    tree = tmp_path / "tree"
    if layout:
        for marker in contract.load().source["markers"]:
            (tree / marker).parent.mkdir(parents=True, exist_ok=True)
            (tree / marker).write_text("")
        (tree / "backend" / "pyproject.toml").write_text(f'[project]\nversion = "{layout["version"]}"\n')
    else:
        tree.mkdir()
    with pytest.raises(contract.ContractError, match=message) as raised:
        contract.identify(tree)
    assert "\n" not in str(raised.value)


def test_an_unsupported_version_is_one_line() -> None:
    with pytest.raises(
        contract.ContractError,
        match=r"Yuxi-Know 9\.9\.9 is not supported by this kit \(contracts for: 0\.6\.1\)",
    ):
        contract.load("9.9.9")
