"""Opt-outs need a reason, are reported, and severities follow the config."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from yuxi_k8s.validate.engine import evaluate, load_config
from yuxi_k8s.validate.report import OverlayReport, Report

CLEAN = [d for d in yaml.safe_load_all((Path(__file__).parent / "clean" / "app.yaml").read_text()) if d]


def with_writable_root(annotations: dict[str, str] | None = None) -> list[dict]:
    objects = copy.deepcopy(CLEAN)
    api = next(o for o in objects if o["kind"] == "Deployment")
    del api["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    if annotations:
        api["metadata"]["annotations"] = annotations
    return objects


def test_clean_app_has_no_violation() -> None:
    assert evaluate("clean", "prod", CLEAN, load_config(), strict=True) == []


def test_violation_without_opt_out_fails() -> None:
    found = evaluate("x", "prod", with_writable_root(), load_config(), strict=True)
    assert [v.rule for v in found] == ["YK-HARD-001"]
    assert OverlayReport("x", "prod", violations=found).failed()


def test_opt_out_with_reason_suppresses_and_is_reported() -> None:
    reason = "the upstream image writes its cache under /app"
    objects = with_writable_root({"yuxi-k8s.io/allow-YK-HARD-001": reason})
    found = evaluate("x", "prod", objects, load_config(), strict=True)
    assert [(v.rule, v.suppressed) for v in found] == [("YK-HARD-001", reason)]
    report = Report([OverlayReport("x", "prod", violations=found)])
    assert not report.failed
    assert report.summary()["suppressed"] == 1


def test_opt_out_id_is_case_insensitive() -> None:
    found = evaluate(
        "x", "prod", with_writable_root({"yuxi-k8s.io/allow-yk-hard-001": "why"}), load_config(), strict=True
    )
    assert [v.suppressed for v in found] == ["why"]


def test_opt_out_without_reason_does_not_suppress() -> None:
    found = evaluate(
        "x", "prod", with_writable_root({"yuxi-k8s.io/allow-YK-HARD-001": "  "}), load_config(), strict=True
    )
    assert {(v.rule, v.suppressed) for v in found} == {("YK-HARD-001", None), ("YK-META-001", None)}


def test_opt_out_rules_cannot_be_opted_out_of() -> None:
    annotations = {"yuxi-k8s.io/allow-YK-HARD-001": "", "yuxi-k8s.io/allow-YK-META-001": "no"}
    found = evaluate("x", "prod", with_writable_root(annotations), load_config(), strict=True)
    assert any(v.rule == "YK-META-001" and v.suppressed is None for v in found)


def test_severity_override_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "policy.yaml"
    cfg.write_text("severity: {YK-HARD-001: warning}\n")
    found = evaluate("x", "prod", with_writable_root(), load_config(str(cfg)), strict=True)
    assert [(v.rule, v.severity) for v in found] == [("YK-HARD-001", "warning")]
    overlay = OverlayReport("x", "prod", violations=found)
    assert overlay.failed("warning") and not overlay.failed("error")
    cfg.write_text("severity: {YK-HARD-001: off}\n")
    assert evaluate("x", "prod", with_writable_root(), load_config(str(cfg)), strict=True) == []


def test_environment_scoping() -> None:
    objects = copy.deepcopy(CLEAN)
    next(o for o in objects if o["kind"] == "Deployment")["spec"]["replicas"] = 1
    assert "YK-AVL-001" in {v.rule for v in evaluate("x", "prod", objects, load_config(), strict=True)}
    assert "YK-AVL-001" not in {v.rule for v in evaluate("x", "dev", objects, load_config(), strict=True)}


def test_stale_opt_out_is_reported_but_does_not_fail() -> None:
    objects = copy.deepcopy(CLEAN)
    api = next(o for o in objects if o["kind"] == "Deployment")
    api["metadata"]["annotations"] = {"yuxi-k8s.io/allow-YK-HARD-001": "no longer true"}
    found = evaluate("x", "prod", objects, load_config(), strict=True)
    assert [(v.rule, v.severity) for v in found] == [("YK-META-003", "info")]
    overlay = OverlayReport("x", "prod", violations=found)
    assert not overlay.failed() and overlay.info == found


def test_malformed_objects_do_not_crash_the_rules() -> None:
    """Garbage where a mapping belongs is the schema check's to report; the rules read it as absent
    (strict: a crash would raise here)."""
    objects = copy.deepcopy(CLEAN)
    api = next(o for o in objects if o["kind"] == "Deployment")
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = 1
    container["securityContext"] = "yes"
    api["spec"]["template"]["spec"]["volumes"] = [None, "x"]
    found = evaluate("x", "prod", objects, load_config(), strict=True)
    assert {"YK-RES-001", "YK-RES-002", "YK-PSS-002", "YK-HARD-001"} <= {v.rule for v in found}
    assert all(v.severity == "error" for v in found)


def test_env_inference() -> None:
    from yuxi_k8s.validate.engine import infer_env

    assert infer_env("overlays/dev") == "dev"
    assert infer_env("overlays/prod-eu") == "prod"
    assert infer_env("clusters/production/app") == "prod"
    assert infer_env("gitops/flux/staging/app") == "staging"
    assert infer_env("somewhere/else") == "prod"
    assert infer_env(str(Path.cwd() / "base")) == "prod"
