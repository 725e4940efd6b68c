"""`--format sarif`: the report as SARIF 2.1.0, each finding on the source file of its object.

CI systems (GitHub code scanning, GitLab, Azure DevOps) show SARIF results on the files they
name. A rendered object has no file, so each kustomization is rendered a second time through a
throw-away wrapper with ``buildMetadata: [originAnnotations]``: kustomize then writes
``config.kubernetes.io/origin`` on every object, the path of the file it came from (or, for an
object a generator made, the kustomization that configured it). A finding on a Deployment lands on
``base/api.Deployment.yaml``, the line of its ``kind:``; a finding about a kustomization's own
fields (YK-IMG-003, YK-OBJ-005) on that ``kustomization.yaml``; an object kustomize cannot place
(a patch created it whole) on the validated path's ``kustomization.yaml``. Plain manifest folders
(gitops/argocd) are read file by file.

Paths are relative to the checkout (``%SRCROOT%``) when the files are inside it, which is what
code scanning needs to show them on the pull request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s.validate.engine import ENGINE_ERROR, Violation
from yuxi_k8s.validate.render import KUSTOMIZATION_FILES, kustomize_command, kustomize_env, load_documents
from yuxi_k8s.validate.report import OverlayReport, Report
from yuxi_k8s.validate.rules import all_rules

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
ORIGIN = "config.kubernetes.io/origin"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
RENDER_RULE = "YK-RENDER"
SCHEMA_RULE = "YK-SCHEMA"
# (kind, namespace, name) of a rendered object -> its source file (absolute)
Origins = dict[tuple[str, str, str], Path]


def _kustomization_file(folder: Path) -> Path | None:
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def origins(path: str) -> Origins:
    """Where each object of *path*'s render comes from; {} when that cannot be told."""
    target = Path(path).resolve()
    found: Origins = {}
    if target.is_file() or (target.is_dir() and _kustomization_file(target) is None):
        files = [target] if target.is_file() else sorted([*target.glob("*.yaml"), *target.glob("*.yml")])
        for f in files:
            try:
                docs = load_documents(f.read_text())
            except (OSError, yaml.YAMLError):
                continue
            for doc in docs:
                found[_ident(doc)] = f
        return found
    with tempfile.TemporaryDirectory(prefix="yuxi-k8s-sarif-") as tmp:
        wrapper = Path(tmp)
        (wrapper / "kustomization.yaml").write_text(
            # kustomize refuses an absolute resource path ("new root cannot be absolute")
            yaml.safe_dump(
                {"resources": [os.path.relpath(target, wrapper)], "buildMetadata": ["originAnnotations"]}
            )
        )
        proc = subprocess.run(
            kustomize_command(wrapper), capture_output=True, text=True, check=False, env=kustomize_env()
        )
        if proc.returncode != 0:
            return found
        for doc in load_documents(proc.stdout):
            origin = yaml.safe_load(
                ((doc.get("metadata") or {}).get("annotations") or {}).get(ORIGIN) or "{}"
            )
            if not isinstance(origin, dict):
                continue
            source = origin.get("path") or origin.get("configuredIn")
            if source and "://" not in str(source):
                found[_ident(doc)] = Path(os.path.normpath(wrapper / str(source)))
    return found


def _ident(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return str(doc.get("kind", "")), str(meta.get("namespace", "") or ""), str(meta.get("name", ""))


def _root() -> Path:
    from yuxi_k8s.paths import REPO_ROOT, in_checkout

    return REPO_ROOT if in_checkout() else Path.cwd()


def _uri(file: Path, root: Path) -> dict[str, str]:
    file = file.resolve()
    if file.is_relative_to(root):
        return {"uri": file.relative_to(root).as_posix(), "uriBaseId": "%SRCROOT%"}
    return {"uri": file.as_uri()}


def _line(file: Path, kind: str) -> int:
    """The line of the object's `kind:` in its file (1 when not found)."""
    try:
        for number, text in enumerate(file.read_text().splitlines(), 1):
            if re.fullmatch(rf"kind:\s*['\"]?{re.escape(kind)}['\"]?\s*", text):
                return number
    except OSError:
        pass
    return 1


def _location(o: OverlayReport, found: Origins, kind: str, namespace: str, name: str, root: Path) -> dict:
    """The physical location of one object's finding."""
    file = found.get((kind, namespace, name))
    region_kind = kind
    if file is None and kind == "Kustomization":  # findings about a kustomization's own fields
        for folder in (Path(name), Path(o.path)):
            file = _kustomization_file(folder.resolve()) if folder.is_dir() else None
            if file is not None:
                break
        region_kind = ""
    if file is None:  # kustomize could not say (or a plain file): the validated path
        target = Path(o.path).resolve()
        file = target if target.is_file() else _kustomization_file(target)
        region_kind = ""
    if file is None:
        return {"physicalLocation": {"artifactLocation": {"uri": Path(o.path).resolve().as_uri()}}}
    line = _line(file, region_kind) if region_kind else 1
    return {"physicalLocation": {"artifactLocation": _uri(file, root), "region": {"startLine": line}}}


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _result(o: OverlayReport, v: Violation, found: Origins, root: Path) -> dict[str, Any]:
    where = f"{v.kind} {v.namespace + '/' if v.namespace else ''}{v.name}"
    rule = v.crashed_rule or v.rule if v.rule == ENGINE_ERROR else v.rule
    result: dict[str, Any] = {
        "ruleId": v.rule,
        "level": LEVELS.get(v.severity, "error"),
        "message": {"text": f"{where} ({o.path}, env {o.env}): {v.message}\nFix: {v.fix}"},
        "locations": [_location(o, found, v.kind, v.namespace, v.name, root)],
        "partialFingerprints": {"yuxiK8sFinding/v1": _fingerprint(rule, o.path, where, v.message)},
        "properties": {"overlay": o.path, "env": o.env, "object": where},
    }
    if v.suppressed is not None:
        result["suppressions"] = [{"kind": "inSource", "justification": v.suppressed}]
    return result


def _driver() -> dict[str, Any]:
    rules = [
        {
            "id": r.id,
            "name": r.id.replace("-", ""),
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.message},
            "help": {
                "text": f"Fix: {r.fix}",
                "markdown": f"**Fix:** {r.fix}\n\nSee docs/rules.md#{r.id.lower()}.",
            },
            "defaultConfiguration": {
                "level": LEVELS.get(r.severity, "none") if r.severity != "off" else "none"
            },
            "properties": {"tags": [r.family], "environments": list(r.envs)},
        }
        for r in all_rules()
    ]
    rules += [
        {
            "id": RENDER_RULE,
            "name": "Render",
            "shortDescription": {"text": "The kustomization renders"},
            "fullDescription": {"text": "kubectl kustomize failed on the validated path."},
            "defaultConfiguration": {"level": "error"},
        },
        {
            "id": SCHEMA_RULE,
            "name": "Schema",
            "shortDescription": {"text": "Objects pass the pinned Kubernetes and CRD schemas"},
            "fullDescription": {"text": "kubeconform -strict against the pinned schemas (docs/validate.md)."},
            "defaultConfiguration": {"level": "error"},
        },
        {
            "id": ENGINE_ERROR,
            "name": "RuleCrashed",
            "shortDescription": {"text": "A rule crashed: the check is incomplete"},
            "fullDescription": {"text": "A rule raised on this render; what it would have found is unknown."},
            "defaultConfiguration": {"level": "error"},
        },
    ]
    return {
        "name": "yuxi-k8s validate",
        "informationUri": "https://github.com/yuxi-k8s/yuxi-k8s",
        "rules": rules,
    }


def to_sarif(report: Report) -> str:
    root = _root()
    results: list[dict[str, Any]] = []
    for o in report.overlays:
        if o.render_error:
            results.append(
                {
                    "ruleId": RENDER_RULE,
                    "level": "error",
                    "message": {"text": f"{o.path}: {o.render_error}"},
                    "locations": [_location(o, {}, "", "", "", root)],
                    "partialFingerprints": {"yuxiK8sFinding/v1": _fingerprint(RENDER_RULE, o.path)},
                }
            )
            continue
        found = origins(o.path)
        for s in o.schema_failures:
            where = f"{s.kind} {s.namespace + '/' if s.namespace else ''}{s.name}"
            results.append(
                {
                    "ruleId": SCHEMA_RULE,
                    "level": "error",
                    "message": {"text": f"{where} ({o.path}): {'; '.join(s.messages)}"},
                    "locations": [_location(o, found, s.kind, s.namespace, s.name, root)],
                    "partialFingerprints": {"yuxiK8sFinding/v1": _fingerprint(SCHEMA_RULE, o.path, where)},
                }
            )
        for v in [*o.active(report.fail_on), *o.engine_errors, *o.suppressed]:
            results.append(_result(o, v, found, root))
    doc = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": _driver()},
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.resolve().as_uri() + "/"}},
                "results": results,
                "properties": {"verdict": report.verdict, "summary": report.summary()},
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
