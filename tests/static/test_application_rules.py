"""The YK-APP rules, run without the engine: a crash fails here (it is never a finding), and each
fail fixture is flagged for the reason it was written for. Also: the rules follow the contract,
not the names of 0.6.1, and kit-env.yaml declares only what the application does not read."""

from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from pathlib import Path

import pytest
import yaml

from yuxi_k8s.app import contract as app_contract
from yuxi_k8s.validate.model import Context, Resource
from yuxi_k8s.validate.rules import REGISTRY, all_rules
from yuxi_k8s.validate.rules import application as rules

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "rules"
# What each fail fixture must be flagged for (a fragment of the finding).
EXPECTED = {
    "YK-APP-001/fail": "sets DATABASE_URL",
    "YK-APP-001/fail-envfrom": "sets REDIS_PORT (envFrom api-settings)",
    "YK-APP-002/fail": "does not set JWT_SECRET_KEY",
    "YK-APP-002/fail-optional": "JWT_SECRET_KEY from an optional reference",
    "YK-APP-003/fail": "POSTGRES_URL is a URL with a literal password",
    "YK-APP-003/fail-no-credentials": "REDIS_URL is a URL that carries no credentials",
    "YK-APP-003/fail-configmap-var": "$(REDIS_PASSWORD), which is not from a Secret",
    "YK-APP-003/fail-scheme-setting": "REDIS_URL is a URL with a literal password",
    "YK-APP-004/fail": "LANGGRAPH_CHECKPOINTER_BACKEND is sqlite with 2 app processes",
    "YK-APP-004/fail-shared-key": "JWT_SECRET_KEY is ('worker-credentials', 'JWT_SECRET_KEY')",
    "YK-APP-005/fail": "RUNNING_IN_DOCKER without MODEL_DIR_IN_DOCKER",
    "YK-APP-006/fail": "names Service sandbox-provisioner, not in the render",
    "YK-APP-006/fail-port": "Service sandbox-provisioner has no port 8002",
    "YK-APP-006/fail-default": "names Service sandbox-provisioner, not in the render",
    "YK-APP-007/fail": "has no version tag or digest",
    "YK-APP-007/fail-unset": "SANDBOX_IMAGE is unset",
    "YK-APP-008/fail": "env POSTGRES_URL refers to $(POSTGRES_USER), defined after it",
    "YK-APP-008/fail-undefined": "env REDIS_URL refers to $(REDIS_PASS), not defined",
    "YK-APP-009/fail": "is on registry.example.invalid",
    "YK-APP-009/fail-localhost": "is on localhost",
    "YK-APP-009/fail-sandbox-image": "SANDBOX_IMAGE=registry.example.invalid/all-in-one-sandbox:1.0.0 is on",
    "YK-APP-010/fail": "YUXI_K8S_TEST_HOOKS=1",
}


def fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("YK-APP-*/*.yaml") if p.name.startswith(("fail", "pass")))


def context(path: Path) -> Context:
    text = path.read_text()
    env = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# env:")), "prod"
    )
    return Context(str(path), env, [Resource(d) for d in yaml.safe_load_all(text) if d])


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_rule_on_its_fixture_without_the_engine(path: Path) -> None:
    all_rules()
    rule = REGISTRY[path.parent.name]
    ctx = context(path)
    found = [detail for _, detail in rule.check(ctx)] if rule.applies_to(ctx.env) else []
    if path.name.startswith("pass"):
        assert not found, found
    else:
        expected = EXPECTED[f"{path.parent.name}/{path.stem}"]
        assert any(expected in detail for detail in found), found


def test_every_app_fail_fixture_names_its_reason() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in fixtures() if p.name.startswith("fail")}
    assert names == set(EXPECTED)


def test_shared_values_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """A version that reads YUXI_INSTANCE_ID (0.6.2.dev) needs one value on every replica; 0.6.1 does not."""
    pinned = app_contract.load()
    extra = app_contract.EnvVar("YUXI_INSTANCE_ID", "app")
    later = dataclasses.replace(
        pinned, env={**pinned.env, "app": {**pinned.env_group("app"), extra.name: extra}}
    )
    path = FIXTURES / "YK-APP-004" / "pass.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            name = doc["metadata"]["name"]
            doc["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "YUXI_INSTANCE_ID", "value": name}
            )
    ctx = Context("later", "prod", [Resource(d) for d in docs])
    assert not list(rules.shared_state_problems(ctx, pinned))  # 0.6.1 reads no instance id
    monkeypatch.setattr(rules, "load_contract", lambda: later)
    found = [detail for _, detail in REGISTRY["YK-APP-004"].check(ctx)]
    assert any("YUXI_INSTANCE_ID" in d and "replicas disagree" in d for d in found), found


def test_kit_env_declares_only_what_the_app_does_not_read() -> None:
    contract = app_contract.load()
    kit = app_contract.kit_env()
    assert {"CONFIG_MODE", "HOME", "YUXI_K8S_STATE_STALE_READ_GRACE_S", "YUXI_K8S_TASK_DRAIN_SECONDS"} <= set(
        kit
    )
    assert "YUXI_K8S_REPLICA_LEASE_SECONDS" in kit
    for name, var in kit.items():
        assert not any(contract.reads(group, name) for group in contract.env), f"{name} is read by the app"
        assert var.reason and var.read_by, name
        assert all(g in contract.env for g in var.groups), name


def test_kit_env_ships_with_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["yuxi_k8s"]
    relative = app_contract.KIT_ENV.relative_to(ROOT / "src" / "yuxi_k8s").as_posix()
    assert any(fnmatch.fnmatch(relative, p) for p in patterns), (relative, patterns)
