"""The application contract: what one Yuxi-Know version reads, serves and owns, as data.

``load()`` reads ``contracts/<version>.yaml`` (the pinned version by default);
``identify(tree)`` says whether a folder is a Yuxi-Know source tree and of which
version; ``differences(contract, tree)`` re-extracts the environment variables
and table names from that tree (:mod:`yuxi_k8s.app.extract`) and lists every
disagreement with the contract. Errors are :class:`ContractError`, one line each.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.app import PINNED_VERSION
from yuxi_k8s.app.extract import extract, settings_fields

CONTRACTS = Path(__file__).resolve().parent / "contracts"
KIT_ENV = Path(__file__).resolve().parent / "kit-env.yaml"


class ContractError(ValueError):
    """A contract is missing or malformed, or a tree is not the application it describes."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    group: str  # "app" (api and worker) or "provisioner"
    required: bool = False
    secret: bool = False
    provider: bool = False
    default: str | None = None
    purpose: str = ""


@dataclass(frozen=True)
class Contract:
    version: str
    source: dict[str, Any]
    components: dict[str, dict[str, Any]]
    endpoints: dict[str, dict[str, Any]]
    paths: dict[str, str]
    env: dict[str, dict[str, EnvVar]]  # group -> name -> variable
    app_tables: frozenset[str]
    library_tables: frozenset[str]
    reserved_tables: frozenset[str]
    state: dict[str, str] = field(default_factory=dict)
    # The app's settings (class Config): persisted field -> type name, and its runtime fields.
    setting_types: dict[str, str] = field(default_factory=dict)
    runtime_settings: frozenset[str] = frozenset()

    @property
    def owned_tables(self) -> frozenset[str]:
        """Every name the kit must never create in the application's database."""
        return self.app_tables | self.library_tables | self.reserved_tables

    def env_group(self, group: str) -> dict[str, EnvVar]:
        return self.env.get(group, {})

    def reads(self, group: str, name: str) -> bool:
        return name in self.env_group(group)

    def required(self, group: str) -> list[EnvVar]:
        return [v for v in self.env_group(group).values() if v.required]

    def provider_keys(self) -> list[str]:
        return sorted(v.name for v in self.env_group("app").values() if v.provider)

    def image(self, component: str) -> str:
        return str(self.components[component]["image"])


@dataclass(frozen=True)
class KitVariable:
    """A variable the kit sets on the application's containers and the application never reads."""

    name: str
    read_by: str
    reason: str
    groups: tuple[str, ...] = ()  # contract env groups whose containers may carry it; () = every group

    def allowed_in(self, group: str) -> bool:
        return not self.groups or group in self.groups


@cache
def kit_env() -> dict[str, KitVariable]:
    """The kit-only variables of ``kit-env.yaml``: name -> declaration (each with its reason)."""
    where = KIT_ENV.name
    try:
        doc = yaml.safe_load(KIT_ENV.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{where}: cannot read ({exc})") from exc
    out: dict[str, KitVariable] = {}
    for name, attrs in _mapping(doc if isinstance(doc, dict) else {}, "variables", where).items():
        attrs = attrs if isinstance(attrs, dict) else {}
        unknown = set(attrs) - {"read_by", "reason", "groups"}
        if unknown:
            raise ContractError(f"{where}: {name} has unknown keys {sorted(unknown)}")
        read_by, reason = str(attrs.get("read_by") or ""), str(attrs.get("reason") or "").strip()
        if not read_by or not reason:
            raise ContractError(f"{where}: {name} needs read_by and a reason")
        out[str(name)] = KitVariable(str(name), read_by, reason, tuple(map(str, attrs.get("groups") or ())))
    return out


def supported_versions() -> list[str]:
    # Beside each contract lies its per-process state table (<version>-process-state.yaml).
    return sorted(p.stem for p in CONTRACTS.glob("*.yaml") if not p.stem.endswith("-process-state"))


def _mapping(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ContractError(f"{where}: '{key}' must be a mapping")
    return value


SETTING_TYPES = ("bool", "int", "float", "str")


def _settings(doc: dict[str, Any], where: str) -> tuple[dict[str, str], frozenset[str]]:
    section = doc.get("settings") or {}
    if not isinstance(section, dict):
        raise ContractError(f"{where}: 'settings' must be a mapping")
    fields = section.get("fields") or {}
    if not isinstance(fields, dict):
        raise ContractError(f"{where}: 'settings.fields' must be a mapping")
    for name, kind in fields.items():
        if kind not in SETTING_TYPES:
            raise ContractError(f"{where}: settings.fields.{name} is {kind!r}, not one of {SETTING_TYPES}")
    return {str(k): str(v) for k, v in fields.items()}, frozenset(map(str, section.get("runtime") or ()))


def parse(doc: Any, where: str) -> Contract:
    if not isinstance(doc, dict):
        raise ContractError(f"{where}: a contract is a mapping")
    version = str(doc.get("version", ""))
    if not version:
        raise ContractError(f"{where}: 'version' is missing")
    env: dict[str, dict[str, EnvVar]] = {}
    for group, variables in _mapping(doc, "env", where).items():
        env[group] = {}
        for name, attrs in (variables or {}).items():
            attrs = attrs or {}
            unknown = set(attrs) - {"required", "secret", "provider", "default", "purpose"}
            if unknown:
                raise ContractError(f"{where}: env {group}.{name} has unknown keys {sorted(unknown)}")
            default = attrs.get("default")
            env[group][name] = EnvVar(
                name=name,
                group=group,
                required=bool(attrs.get("required", False)),
                secret=bool(attrs.get("secret", False)),
                provider=bool(attrs.get("provider", False)),
                default=None if default is None else str(default),
                purpose=str(attrs.get("purpose", "")),
            )
    tables = _mapping(doc, "tables", where)
    setting_types, runtime_settings = _settings(doc, where)
    return Contract(
        version=version,
        source=_mapping(doc, "source", where),
        components=_mapping(doc, "components", where),
        endpoints=_mapping(doc, "endpoints", where),
        paths=_mapping(doc, "paths", where),
        env=env,
        app_tables=frozenset(tables.get("app") or ()),
        library_tables=frozenset(tables.get("libraries") or ()),
        reserved_tables=frozenset(tables.get("reserved") or ()),
        state=dict(doc.get("state") or {}),
        setting_types=setting_types,
        runtime_settings=runtime_settings,
    )


@cache
def load(version: str = PINNED_VERSION) -> Contract:
    path = CONTRACTS / f"{version}.yaml"
    if not path.is_file():
        known = ", ".join(supported_versions())
        raise ContractError(f"Yuxi-Know {version} is not supported by this kit (contracts for: {known})")
    contract = parse(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)
    if contract.version != version:
        raise ContractError(f"{path.name} says version {contract.version}")
    return contract


def tree_version(tree: Path, contract: Contract) -> str:
    """The version a source tree states in its version files (``project.version``)."""
    for rel in contract.source.get("version_files", []):
        path = tree / rel
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ContractError(f"{rel} in {tree} is not valid TOML ({exc})") from exc
            version = data.get("project", {}).get("version")
            if isinstance(version, str):
                return version
    raise ContractError(f"{tree} states no version (looked in {', '.join(contract.source['version_files'])})")


def identify(tree: Path, version: str = PINNED_VERSION) -> Contract:
    """The contract for *tree*, or ContractError if it is not Yuxi-Know *version*."""
    contract = load(version)
    if not tree.is_dir():
        raise ContractError(f"{tree} is not a folder")
    missing = [m for m in contract.source.get("markers", []) if not (tree / m).is_file()]
    if missing:
        raise ContractError(f"{tree} is not a Yuxi-Know source tree (missing {', '.join(missing)})")
    found = tree_version(tree, contract)
    if found != version:
        raise ContractError(
            f"{tree} is Yuxi-Know {found}, but this kit deploys {version} "
            f"(supported: {', '.join(supported_versions())})"
        )
    return contract


def differences(contract: Contract, tree: Path) -> list[str]:
    """Every way *tree*'s sources and the contract disagree (empty: they agree)."""
    src = contract.source
    app = extract(tree, src["python_roots"], src.get("model_catalogue"))
    provisioner = extract(tree, [src["provisioner_source"]])
    problems: list[str] = []

    def compare(what: str, in_source: set[str], in_contract: set[str], hint: dict[str, str]) -> None:
        for name in sorted(in_source - in_contract):
            where = hint.get(name, "?")
            problems.append(f"{what}: {name} is read by the source ({where}) but not in the contract")
        for name in sorted(in_contract - in_source):
            problems.append(f"{what}: {name} is in the contract but the source never reads it")

    app_names = set(app.env) | app.provider_env
    compare("env app", app_names, set(contract.env_group("app")), {k: v.where for k, v in app.env.items()})
    compare(
        "env provisioner",
        set(provisioner.env),
        set(contract.env_group("provisioner")),
        {k: v.where for k, v in provisioner.env.items()},
    )
    declared_providers = set(contract.provider_keys())
    for name in sorted(app.provider_env - declared_providers):
        problems.append(f"env app: {name} is a provider key in the model catalogue but not marked provider")
    for group, facts in (("app", app), ("provisioner", provisioner)):
        for name, read in facts.env.items():
            var = contract.env_group(group).get(name)
            known = var is not None and var.default is not None and read.default is not None
            if known and var is not None and var.default != read.default:
                problems.append(
                    f"env {group}: {name} default is {read.default!r} in the source ({read.where}), "
                    f"{var.default!r} in the contract"
                )
    problems += _setting_differences(contract, tree)
    for name in sorted(app.tables - contract.app_tables):
        problems.append(f"tables: {name} is created by the source but not in the contract")
    for name in sorted(contract.app_tables - app.tables):
        problems.append(f"tables: {name} is in the contract but the source never creates it")
    return problems


def _setting_differences(contract: Contract, tree: Path) -> list[str]:
    model = contract.source.get("settings_model")
    if not model:
        return []
    found = settings_fields(tree / model)
    persisted = {name: f.annotation for name, f in found.items() if not f.excluded}
    runtime = {name for name, f in found.items() if f.excluded}
    problems = [
        f"settings: {name} is {persisted.get(name, 'absent')} in the source ({model}), "
        f"{contract.setting_types.get(name, 'absent')} in the contract"
        for name in sorted(set(persisted) | set(contract.setting_types))
        if persisted.get(name) != contract.setting_types.get(name)
    ]
    problems += [
        f"settings: runtime field {name} is only in the {'source' if name in runtime else 'contract'}"
        for name in sorted(runtime ^ contract.runtime_settings)
    ]
    return problems
