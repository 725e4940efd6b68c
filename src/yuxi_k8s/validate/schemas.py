"""Schema preparation (core Kubernetes + CRDs) and the kubeconform run.

Core schemas come from the pinned kubernetes-validate package: its per-kind
files reference one large ``_definitions.json`` through absolute ``$ref``\\ s
that kubeconform cannot resolve from a local folder, so each kind is rewritten
once into a standalone file (the kind plus the closure of the definitions it
uses). The result is cached under ``~/.cache/yuxi-k8s/schemas/<key>/``.

A core kind can never pass as "missing schema": kubeconform runs without
``-ignore-missing-schemas``, and :func:`classify` sends only kinds of the
pinned CRD groups to the CRD folder; any other unknown kind is reported by name.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yuxi_k8s.cache import build_once
from yuxi_k8s.validate import crds
from yuxi_k8s.validate.errors import SchemaSourceError, ToolError
from yuxi_k8s.validate.render import find_tool
from yuxi_k8s.validate.versions import KUBERNETES_VERSION, schema_cache_dir

# kubeconform -schema-location templates for the two prepared folders.
CORE_TEMPLATE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
CRD_TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
DEFS_REF = "/api/_definitions.json#/$defs/"
LOCAL_REF = "#/$defs/"


def _source_dir() -> Path:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    src = root / f"v{KUBERNETES_VERSION}-local-strict"
    if not src.is_dir():
        raise SchemaSourceError(
            f"kubernetes-validate has no schemas for v{KUBERNETES_VERSION} ({src}); "
            "install the version pinned in constraints.txt (make venv)"
        )
    return src


def _rewrite_refs(node: Any, used: set[str]) -> Any:
    """Point absolute definition refs at the file's own $defs, collecting their names."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith((DEFS_REF, LOCAL_REF)):
                name = value.rpartition("/$defs/")[2]
                used.add(name)
                out[key] = "#/$defs/" + name
            else:
                out[key] = _rewrite_refs(value, used)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, used) for v in node]
    return node


def _standalone(kind_schema: dict, definitions: dict[str, Any]) -> dict:
    used: set[str] = set()
    top = _rewrite_refs(kind_schema, used)
    defs: dict[str, Any] = {}
    todo = list(used)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        more: set[str] = set()
        defs[name] = _rewrite_refs(definitions[name], more)
        todo.extend(more - defs.keys())
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top.pop("$id", None)
    top["$defs"] = defs
    return top


def kubernetes_schema_dir() -> Path:
    """The folder of standalone strict core schemas, built once per key."""

    def build(folder: Path) -> None:
        src = _source_dir()
        definitions = json.loads((src / "_definitions.json").read_text())["$defs"]
        for path in src.glob("*.json"):
            if path.name.startswith("_") or path.name == "all.json":
                continue
            schema = json.loads(path.read_text())
            if "kind" not in schema.get("properties", {}):  # a sub-type, not a kind
                continue
            (folder / path.name).write_text(json.dumps(_standalone(schema, definitions)))

    return build_once(schema_cache_dir() / "kubernetes", build)


def core_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs the core schema folder knows, read from file names."""
    kinds: set[tuple[str, str]] = set()
    for path in kubernetes_schema_dir().glob("*.json"):
        parts = path.stem.split("-")
        kinds.add(("/".join(parts[1:]), parts[0]))  # kind is lowercased, group/version follow
    return kinds


@dataclass
class SchemaResult:
    """One object's schema outcome."""

    overlay: str
    kind: str
    name: str
    namespace: str
    status: str  # valid | invalid | error | note (SOPS)
    messages: list[str] = field(default_factory=list)


def classify(api_version: str, kind: str, core: set[tuple[str, str]]) -> str:
    """core | crd | unknown for one apiVersion/kind."""
    group, _, version = api_version.rpartition("/")
    # kubernetes-validate names files <kind>-<group first label>-<version>
    short = f"{group.split('.')[0]}/{version}" if group else version
    if (short, kind.lower()) in core and (not group or "." not in group or group.endswith(".k8s.io")):
        return "core"
    if group in crds.known_groups():
        return "crd"
    return "unknown"


def check(objects_by_overlay: dict[str, list[dict]], jobs: int = 4) -> list[SchemaResult]:
    """Schema-check every object with kubeconform -strict; one process for all overlays."""
    core_dir = kubernetes_schema_dir()
    crd_dir = crds.schema_dir()
    core = core_kinds()
    results: list[SchemaResult] = []
    with tempfile.TemporaryDirectory(prefix="yuxi-validate-") as tmp:
        files: dict[str, str] = {}
        # kubeconform reports kind and name only; the namespace comes from the object.
        namespaces: dict[tuple[str, str, str], str] = {}
        for index, (overlay, objects) in enumerate(objects_by_overlay.items()):
            docs = []
            for obj in objects:
                raw_meta = obj.get("metadata")
                meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
                api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
                where = (overlay, kind, str(meta.get("name", "")), str(meta.get("namespace", "")))
                namespaces[where[:3]] = where[3]
                if classify(api_version, kind, core) == "unknown":
                    results.append(
                        SchemaResult(
                            *where,
                            "error",
                            [
                                f"unknown kind {kind} ({api_version}): not a Kubernetes "
                                f"{KUBERNETES_VERSION} kind and not from a pinned CRD "
                                "(misspelled? else add its CRD to validate/versions.py)"
                            ],
                        )
                    )
                    continue
                if is_sops(obj):
                    obj = strip_sops(obj)
                    results.append(
                        SchemaResult(
                            *where,
                            "note",
                            ["SOPS-encrypted: schema-checked without its encrypted values"],
                        )
                    )
                docs.append(json.dumps(obj))
            if docs:
                path = Path(tmp) / f"{index}.yaml"
                path.write_text("\n---\n".join(docs) + "\n")
                files[str(path)] = overlay
        if not files:
            return results
        proc = subprocess.run(
            [
                str(find_tool("kubeconform")),
                "-strict",
                "-verbose",
                "-output",
                "json",
                "-n",
                str(jobs),
                "-kubernetes-version",
                KUBERNETES_VERSION,
                "-schema-location",
                f"{core_dir}/{CORE_TEMPLATE}",
                "-schema-location",
                f"{crd_dir}/{CRD_TEMPLATE}",
                *files,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            report = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"kubeconform failed: {proc.stderr.strip() or proc.stdout[:200]}") from exc
        for item in report.get("resources") or []:
            if item.get("status") == "statusEmpty":
                continue
            overlay = files.get(item.get("filename", ""), item.get("filename", ""))
            status = item.get("status", "").removeprefix("status").lower()
            kind, name = item.get("kind", ""), item.get("name", "")
            namespace = namespaces.get((overlay, kind, name), "")
            results.append(SchemaResult(overlay, kind, name, namespace, status, _messages(item)))
    return results


def _messages(item: dict[str, Any]) -> list[str]:
    """Each "at '/path': reason" of kubeconform's message, without the schema file URL."""
    msg = str(item.get("msg") or "")
    found = re.findall(r"at '([^']*)': (.*?)(?= - at '|$)", msg)
    specific = [(p, r) for p, r in found if r.strip() != "validation failed"]  # drop parent summaries
    if found:
        return [f"{path or '/'}: {reason.strip()}" for path, reason in (specific or found)]
    errors = item.get("validationErrors") or []
    return [f"{e.get('path') or '/'}: {e.get('msg')}" for e in errors] or ([msg] if msg else [])


def is_sops(obj: dict) -> bool:
    return isinstance(obj.get("sops"), dict)


def strip_sops(obj: dict) -> dict:
    """The object without SOPS metadata and encrypted values (kept: their keys)."""
    out = {k: v for k, v in obj.items() if k != "sops"}
    for key in ("data", "stringData"):
        if isinstance(out.get(key), dict):
            out[key] = dict.fromkeys(out[key], "")
    return out


def failures(results: Iterable[SchemaResult]) -> Iterator[SchemaResult]:
    return (r for r in results if r.status in ("invalid", "error"))
