"""A rule that crashes is reported as what it is: never as its own finding, never as a pass.

Strict mode (what every test of the rules uses) raises; the product reports YK-ENGINE-001
naming the rule and the object, and exits 3 (the check is incomplete).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.static.rule_fixtures import RULES_DIR, run_fixture
from yuxi_k8s.cli import main
from yuxi_k8s.validate.engine import ENGINE_ERROR, RuleCrash, evaluate, load_config
from yuxi_k8s.validate.errors import EXIT_INCOMPLETE
from yuxi_k8s.validate.model import Context
from yuxi_k8s.validate.report import OverlayReport, Report
from yuxi_k8s.validate.rules import REGISTRY, Finding, all_rules, rule

CLEAN_APP = Path(__file__).parent / "clean" / "app.yaml"
CLEAN = [d for d in yaml.safe_load_all(CLEAN_APP.read_text()) if d]
CRASHER = "YK-TEST-999"


@pytest.fixture
def crashing_rule() -> Iterator[str]:
    """A registered rule that flags the Namespace, then fails on the Deployment."""

    @rule(CRASHER, family="test", title="Crashes", message="Crashes on purpose.", fix="None needed.")
    def crash(ctx: Context) -> Iterator[Finding]:
        for res in ctx.of_kind("Namespace"):
            yield res, "flagged before the crash"
        for workload in ctx.workloads:
            workload.pod_spec["nodeName"]  # the clean app has none: KeyError

    all_rules()
    try:
        yield CRASHER
    finally:
        del REGISTRY[CRASHER]


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if f'["{text}"]' in line)


def test_strict_mode_raises_naming_the_rule_and_the_object(crashing_rule: str) -> None:
    with pytest.raises(RuleCrash) as crash:
        evaluate("x", "prod", CLEAN, load_config(), strict=True)
    assert str(crash.value).startswith(
        f"{crashing_rule} crashed on Deployment yuxi/api: KeyError: 'nodeName'"
    )
    assert str(crash.value).endswith(f"at {Path(__file__).name}:{_line_of('nodeName')}")
    assert isinstance(crash.value.__cause__, KeyError)


def test_a_crash_is_an_engine_error_never_the_rules_own_finding(crashing_rule: str) -> None:
    found = evaluate("x", "prod", CLEAN, load_config())
    crashes = [v for v in found if v.rule == ENGINE_ERROR]
    assert len(crashes) == 1
    [crash] = crashes
    assert (crash.kind, crash.namespace, crash.name) == ("Deployment", "yuxi", "api")
    assert crash.crashed_rule == crashing_rule and crash.severity == "error"
    assert f"rule {crashing_rule} crashed on" in crash.message and "KeyError" in crash.message
    # What the rule found before it crashed is kept, under its own id; the crash is not one of them.
    own = [v for v in found if v.rule == crashing_rule]
    assert [(v.kind, v.message) for v in own] == [("Namespace", "flagged before the crash")]
    report = Report([OverlayReport("x", "prod", violations=found)])
    assert report.incomplete and report.exit_code == EXIT_INCOMPLETE and report.verdict == "INCOMPLETE"


def test_a_crash_cannot_be_suppressed_nor_switched_off(crashing_rule: str, tmp_path: Path) -> None:
    objects = copy.deepcopy(CLEAN)
    for o in objects:
        o["metadata"].setdefault("annotations", {}).update(
            {
                f"yuxi-k8s.io/allow-{ENGINE_ERROR}": "try to hide it",
                f"yuxi-k8s.io/allow-{CRASHER}": "and this",
            }
        )
    cfg = tmp_path / "policy.yaml"
    cfg.write_text(f"severity: {{{ENGINE_ERROR}: 'off'}}\n")
    found = evaluate("x", "prod", objects, load_config(str(cfg)))
    [crash] = [v for v in found if v.rule == ENGINE_ERROR]
    assert crash.suppressed is None
    # The allowance for the crashed rule is not "stale": that rule never finished looking.
    stale = [v for v in found if v.rule == "YK-META-003" and CRASHER in v.message]
    assert not stale, stale


def test_the_fixture_runner_fails_on_a_crashing_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's experiment: YK-PSS-014's check replaced by `raise KeyError`. Its fail fixture
    used to "pass" because the crash came back under its own id; now the runner raises."""
    all_rules()
    target = "YK-PSS-014"

    def broken(ctx: Context) -> Iterator[Finding]:
        raise KeyError("boom")
        yield  # a generator, like the real checks

    monkeypatch.setitem(REGISTRY, target, dataclasses.replace(REGISTRY[target], check=broken))
    fail_fixture = sorted((RULES_DIR / target).glob("fail*.yaml"))[0]
    with pytest.raises(RuleCrash, match=f"^{target} crashed"):
        run_fixture(fail_fixture)


def _plain_app(tmp_path: Path) -> Path:
    folder = tmp_path / "prod"
    folder.mkdir()
    (folder / "app.yaml").write_text(CLEAN_APP.read_text())
    return folder


def test_cli_exits_3_and_says_incomplete(
    crashing_rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _plain_app(tmp_path)  # plain manifests and --no-schema: no tool needed
    assert main(["validate", "--no-schema", str(app)]) == EXIT_INCOMPLETE
    out, err = capsys.readouterr()
    crash_lines = [ln for ln in out.splitlines() if ln.startswith("  CRASH   ")]
    assert len(crash_lines) == 1 and f"{ENGINE_ERROR} " in crash_lines[0] and crashing_rule in crash_lines[0]
    assert out.rstrip().endswith("— INCOMPLETE") and "1 rule crashes (check incomplete)" in out
    assert "— INCOMPLETE" in err

    report = tmp_path / "r.json"
    assert main(["validate", "-q", "--no-schema", "--format", "json", "--output", str(report), str(app)]) == 3
    doc = json.loads(report.read_text())
    assert doc["complete"] is False and doc["summary"]["engine_errors"] == 1
    [engine] = doc["overlays"][0]["engineErrors"]
    assert engine["rule"] == ENGINE_ERROR and engine["crashed_rule"] == crashing_rule
    assert all(v["rule"] != ENGINE_ERROR for v in doc["overlays"][0]["violations"])

    junit = tmp_path / "r.xml"
    assert main(["validate", "-q", "--no-schema", "--format", "junit", "--output", str(junit), str(app)]) == 3
    root = ET.parse(junit).getroot()
    errored = [c.get("name") for c in root.iter("testcase") if c.find("error") is not None]
    assert errored == [f"{crashing_rule} Crashes"] and root.get("errors") == "1"


def test_cli_strict_raises_with_the_traceback(crashing_rule: str, tmp_path: Path) -> None:
    with pytest.raises(RuleCrash):
        main(["validate", "-q", "--no-schema", "--strict", str(_plain_app(tmp_path))])
