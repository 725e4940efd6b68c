"""The outcome of a validate run and its renderings: text, json, junit, sarif (sarif.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from yuxi_k8s.validate.engine import ENGINE_ERROR, Violation
from yuxi_k8s.validate.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCOMPLETE
from yuxi_k8s.validate.rules import all_rules
from yuxi_k8s.validate.schemas import SchemaResult
from yuxi_k8s.validate.versions import KUBERNETES_VERSION


@dataclass
class OverlayReport:
    path: str
    env: str
    objects: int = 0
    render_error: str | None = None
    schema: list[SchemaResult] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    def active(self, fail_on: str = "warning") -> list[Violation]:
        """The rules' findings that fail the run (engine errors are apart: :attr:`engine_errors`)."""
        levels = ("error",) if fail_on == "error" else ("error", "warning")
        return [
            v
            for v in self.violations
            if v.suppressed is None and v.severity in levels and v.rule != ENGINE_ERROR
        ]

    @property
    def engine_errors(self) -> list[Violation]:
        """Rules that crashed on this render: what they would have found is unknown."""
        return [v for v in self.violations if v.rule == ENGINE_ERROR]

    @property
    def incomplete(self) -> bool:
        return bool(self.engine_errors)

    @property
    def info(self) -> list[Violation]:
        return [v for v in self.violations if v.suppressed is None and v.severity == "info"]

    @property
    def suppressed(self) -> list[Violation]:
        return [v for v in self.violations if v.suppressed is not None]

    @property
    def schema_failures(self) -> list[SchemaResult]:
        return [s for s in self.schema if s.status in ("invalid", "error")]

    @property
    def notes(self) -> list[SchemaResult]:
        return [s for s in self.schema if s.status == "note"]

    def failed(self, fail_on: str = "warning") -> bool:
        return bool(self.render_error or self.schema_failures or self.active(fail_on) or self.incomplete)

    def verdict(self, fail_on: str = "warning") -> str:
        return "INCOMPLETE" if self.incomplete else "FAIL" if self.failed(fail_on) else "ok"


@dataclass
class Report:
    overlays: list[OverlayReport]
    fail_on: str = "warning"

    @property
    def failed(self) -> bool:
        return any(o.failed(self.fail_on) for o in self.overlays)

    @property
    def incomplete(self) -> bool:
        """A rule crashed somewhere: a clean-looking report would not mean clean manifests."""
        return any(o.incomplete for o in self.overlays)

    @property
    def exit_code(self) -> int:
        if self.incomplete:
            return EXIT_INCOMPLETE
        return EXIT_FINDINGS if self.failed else EXIT_CLEAN

    @property
    def verdict(self) -> str:
        return "INCOMPLETE" if self.incomplete else "FAIL" if self.failed else "PASS"

    def summary(self) -> dict[str, int]:
        active = [v for o in self.overlays for v in o.active(self.fail_on)]
        return {
            "overlays": len(self.overlays),
            "failed_overlays": sum(o.failed(self.fail_on) for o in self.overlays),
            "objects": sum(o.objects for o in self.overlays),
            "violations": len(active),
            "errors": sum(v.severity == "error" for v in active),
            "warnings": sum(v.severity == "warning" for v in active),
            "schema_failures": sum(len(o.schema_failures) for o in self.overlays),
            "render_failures": sum(bool(o.render_error) for o in self.overlays),
            "suppressed": sum(len(o.suppressed) for o in self.overlays),
            "info": sum(len(o.info) for o in self.overlays),
            "engine_errors": sum(len(o.engine_errors) for o in self.overlays),
        }


def _where(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


def progress_line(index: int, total: int, o: OverlayReport, fail_on: str) -> str:
    if o.render_error:
        state = "render FAILED"
    else:
        state = (
            f"{o.objects} objects, {len(o.schema_failures)} schema failures, "
            f"{len(o.active(fail_on))} violations, {len(o.suppressed)} suppressed"
        )
        if o.engine_errors:
            state += f", {len(o.engine_errors)} rule crashes"
    return f"[{index}/{total}] {o.path} (env {o.env}): {state} — {o.verdict(fail_on)}"


def to_text(report: Report) -> str:
    lines: list[str] = []
    for o in report.overlays:
        lines.append(f"== {o.path} (env {o.env}, {o.objects} objects): {o.verdict(report.fail_on)}")
        if o.render_error:
            lines.append(f"  RENDER  {o.path}: {o.render_error}")
        for v in o.engine_errors:
            lines.append(f"  CRASH   {v.rule} {_where(v.kind, v.namespace, v.name)}: {v.message}")
            lines.append(f"          fix: {v.fix}")
        for s in o.schema_failures:
            for msg in s.messages or ["invalid"]:
                lines.append(f"  SCHEMA  {_where(s.kind, s.namespace, s.name)}: {msg}")
        for v in o.active(report.fail_on):
            lines.append(
                f"  {v.severity.upper():7} {v.rule} {_where(v.kind, v.namespace, v.name)}: {v.message}"
            )
            lines.append(f"          fix: {v.fix}")
        for v in o.suppressed:
            where = _where(v.kind, v.namespace, v.name)
            lines.append(f"  allowed {v.rule} {where}: {v.message} (reason: {v.suppressed})")
        for v in o.info:
            lines.append(f"  info    {v.rule} {_where(v.kind, v.namespace, v.name)}: {v.message}")
        for s in o.notes:
            lines.append(f"  note    {_where(s.kind, s.namespace, s.name)}: {'; '.join(s.messages)}")
    n = report.summary()
    lines.append(
        f"Summary: {n['overlays']} overlays ({n['failed_overlays']} failed), {n['objects']} objects, "
        f"{n['violations']} violations ({n['errors']} errors, {n['warnings']} warnings), "
        f"{n['schema_failures']} schema failures, {n['render_failures']} render failures, "
        f"{n['suppressed']} suppressed"
        + (f", {n['engine_errors']} rule crashes (check incomplete)" if n["engine_errors"] else "")
        + f" — {report.verdict}"
    )
    return "\n".join(lines) + "\n"


def _schema_dict(s: SchemaResult) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "namespace": s.namespace,
        "name": s.name,
        "status": s.status,
        "messages": s.messages,
    }


def to_json(report: Report) -> str:
    doc = {
        "ok": not report.failed,
        "complete": not report.incomplete,
        "kubernetesVersion": KUBERNETES_VERSION,
        "failOn": report.fail_on,
        "summary": report.summary(),
        "overlays": [
            {
                "path": o.path,
                "env": o.env,
                "ok": not o.failed(report.fail_on),
                "complete": not o.incomplete,
                "objects": o.objects,
                "renderError": o.render_error,
                "schemaFailures": [_schema_dict(s) for s in o.schema_failures],
                "notes": [_schema_dict(s) for s in o.notes],
                "violations": [v.to_dict() for v in o.active(report.fail_on)],
                "suppressed": [v.to_dict() for v in o.suppressed],
                "info": [v.to_dict() for v in o.info],
                "engineErrors": [v.to_dict() for v in o.engine_errors],
            }
            for o in report.overlays
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def to_junit(report: Report) -> str:
    """One testsuite per overlay: render, schema, then one testcase per applicable rule.

    A rule that crashed has an ``<error>`` (JUnit's "could not run"), not a ``<failure>``.
    """
    rules = all_rules()
    root = ET.Element("testsuites", name="yuxi-k8s validate")
    total_tests = total_failures = total_errors = 0
    for o in report.overlays:
        suite = ET.SubElement(root, "testsuite", name=o.path)
        cases = 0
        failures = 0
        errors = 0

        def case(
            name: str,
            classname: str,
            failure: str | None,
            out: str | None = None,
            error: str | None = None,
            suite: ET.Element = suite,
        ) -> None:
            nonlocal cases, failures, errors
            cases += 1
            el = ET.SubElement(suite, "testcase", name=name, classname=classname)
            if error:
                errors += 1
                ET.SubElement(el, "error", message=error.splitlines()[0][:200]).text = error
            if failure:
                failures += 1
                ET.SubElement(el, "failure", message=failure.splitlines()[0][:200]).text = failure
            if out:
                ET.SubElement(el, "system-out").text = out

        case("render", f"{o.path}.render", o.render_error)
        schema_text = "\n".join(
            f"{_where(s.kind, s.namespace, s.name)}: {m}"
            for s in o.schema_failures
            for m in s.messages or ["invalid"]
        )
        notes = "\n".join(f"{_where(s.kind, s.namespace, s.name)}: {'; '.join(s.messages)}" for s in o.notes)
        case("schema", f"{o.path}.schema", schema_text or None, notes or None)
        active = o.active(report.fail_on)
        for r in rules:
            if not r.applies_to(o.env):
                continue
            found = [v for v in active if v.rule == r.id]
            allowed = [v for v in o.suppressed if v.rule == r.id]
            infos = [v for v in o.info if v.rule == r.id]
            failure = "\n".join(
                f"{_where(v.kind, v.namespace, v.name)}: {v.message} (fix: {v.fix})" for v in found
            )
            out = "\n".join(
                f"allowed {_where(v.kind, v.namespace, v.name)}: {v.message} (reason: {v.suppressed})"
                for v in allowed
            )
            out += "".join(f"\ninfo {_where(v.kind, v.namespace, v.name)}: {v.message}" for v in infos)
            crash = "\n".join(
                f"{v.rule} {_where(v.kind, v.namespace, v.name)}: {v.message}"
                for v in o.engine_errors
                if v.crashed_rule == r.id
            )
            case(f"{r.id} {r.title}", f"{o.path}.{r.family}", failure or None, out or None, crash or None)
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        total_tests += cases
        total_failures += failures
        total_errors += errors
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", str(total_errors))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


FORMATS = {"text": to_text, "json": to_json, "junit": to_junit}  # and sarif: yuxi_k8s.validate.sarif
