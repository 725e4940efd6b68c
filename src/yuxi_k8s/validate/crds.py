"""CRDs from pinned upstream Go modules, converted to strict JSON schemas.

The only reachable upstream is the Go module proxy, so each operator's module
zip is fetched with ``go mod download -json MODULE@VERSION`` (versions in
``versions.py``) and the CRD YAML files are copied out of it into
``<cache>/crds/raw/``. Each served version's ``openAPIV3Schema`` becomes
``<cache>/crds/json/<group>/<kind>_<version>.json`` (the layout kubeconform's
``{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}`` template reads).

Strictness: every object schema with ``properties`` gets
``additionalProperties: false`` unless the CRD marks it
``x-kubernetes-preserve-unknown-fields`` (then unknown fields stay allowed,
as the API server would keep them). ``x-kubernetes-int-or-string``,
``nullable`` and ``x-kubernetes-embedded-resource`` are translated too.

The raw CRD files are what a server-side dry-run needs applied first:
``yuxi-k8s validate --print-crd-paths`` or :func:`crd_paths`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.cache import build_once, is_built
from yuxi_k8s.validate.errors import SchemaSourceError, ToolError
from yuxi_k8s.validate.versions import CRD_SOURCES, CrdSource, schema_cache_dir

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _root() -> Path:
    return schema_cache_dir() / "crds"


@cache
def known_groups() -> frozenset[str]:
    """API groups served by the pinned CRDs, read from the file names (group_plural.yaml)."""
    groups = set()
    for source in CRD_SOURCES:
        for path in source.files:
            name = Path(path).name
            if "_" in name:
                groups.add(name.split("_")[0])
    groups.add("argoproj.io")  # Argo CD names its files <kind>-crd.yaml
    return frozenset(groups)


def _json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON objects ``go mod download -json`` prints one after another."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break
        if isinstance(value, dict):
            out.append(value)
    return out


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _download(sources: tuple[CrdSource, ...]) -> dict[CrdSource, Path]:
    """Each module zip in Go's download cache (verified by the checksum database), all through one
    ``go mod download``, which fetches them concurrently."""
    if not shutil.which("go"):
        raise ToolError("go is required to fetch the pinned CRDs (install golang >= 1.24)")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", *(f"{s.module}@{s.version}" for s in sources)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
    )
    infos = {(i.get("Path"), i.get("Version")): i for i in _json_stream(proc.stdout)}
    zips: dict[CrdSource, Path] = {}
    for source in sources:
        info = infos.get((source.module, source.version), {})
        zip_path = info.get("Zip")
        if info.get("Error") or not zip_path or not Path(zip_path).exists():
            reason = info.get("Error") or proc.stderr.strip() or "no zip"
            raise SchemaSourceError(f"cannot fetch {source.module}@{source.version}: {reason}")
        zips[source] = Path(zip_path)
    return zips


def raw_dir() -> Path:
    """Folder of the upstream CRD YAML files, fetched once per pinned set."""

    def build(folder: Path) -> None:
        for source, archive in _download(CRD_SOURCES).items():
            with zipfile.ZipFile(archive) as zf:
                prefix = f"{source.module}@{source.version}/"
                for inner in source.files:
                    try:
                        data = zf.read(prefix + inner)
                    except KeyError as exc:
                        raise SchemaSourceError(f"{source.module}@{source.version} has no {inner}") from exc
                    (folder / Path(inner).name).write_bytes(data)

    return build_once(_root() / "raw", build)


def prepared() -> bool:
    """The converted CRD schemas are in the cache (so nothing needs Go or the network)."""
    return is_built(_root() / "json")


def crd_paths() -> list[Path]:
    """The pinned upstream CRD manifests, for `kubectl apply` before a server-side dry-run."""
    return sorted(raw_dir().glob("*.yaml"))


def strict_schema(node: Any) -> Any:
    """Translate one structural OpenAPI v3 schema node into strict JSON schema."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: strict_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = copy.deepcopy(value)
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def convert(crd: dict) -> dict[str, dict]:
    """{"<group>/<kind>_<version>.json": schema} for each served version of one CRD."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    out = {}
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        raw = ((version.get("schema") or {}).get("openAPIV3Schema")) or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        schema = strict_schema(raw)
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = {"type": "object"}  # ObjectMeta is checked by the API server, not the CRD
        schema.setdefault("required", [])
        for field in ("apiVersion", "kind"):
            if field not in schema["required"]:
                schema["required"].append(field)
        schema["description"] = f"{kind} ({group}/{version['name']}), strict, from the pinned CRD"
        out[f"{group}/{kind.lower()}_{version['name']}.json"] = schema
    return out


def schema_dir() -> Path:
    """Folder of converted CRD schemas in kubeconform's CRD layout, built once."""

    def build(folder: Path) -> None:
        for path in sorted(raw_dir().glob("*.yaml")):
            for doc in yaml.load_all(path.read_text(), Loader=_Loader):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                for rel, schema in convert(doc).items():
                    dest = folder / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_text(json.dumps(schema))

    return build_once(_root() / "json", build)


def crd_kinds() -> list[str]:
    """'group/version Kind' for every converted schema (for docs and tests)."""
    names = []
    for path in sorted(schema_dir().glob("*/*.json")):
        kind, _, version = path.stem.partition("_")
        names.append(f"{path.parent.name}/{version} {kind}")
    return names
