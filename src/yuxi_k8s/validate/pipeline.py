"""render -> schema -> policy over several kustomizations, as one run."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from yuxi_k8s.validate import crds, schemas
from yuxi_k8s.validate.engine import evaluate, infer_env
from yuxi_k8s.validate.render import render_all
from yuxi_k8s.validate.report import OverlayReport, Report

__all__ = ["Report", "prepare_schemas", "run"]


def prepare_schemas() -> None:
    """Build (or find cached) the core and CRD schema folders, side by side (the CRDs' first build
    waits mostly on `go mod download`, the core one on converting JSON)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(schemas.kubernetes_schema_dir), pool.submit(crds.schema_dir)]:
            done.result()


def run(
    paths: list[str],
    *,
    env: str | None = None,
    config: dict[str, Any],
    fail_on: str = "warning",
    schema_check: bool = True,
    on_overlay: Callable[[int, int, OverlayReport], None] | None = None,
    strict: bool = False,
) -> Report:
    """Render every path, schema-check all objects at once, then run the rules per path.

    *strict* makes a crashing rule raise (``engine.RuleCrash``) instead of being reported.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(prepare_schemas) if schema_check else None
        rendered = render_all(paths)
        if prepared is not None:
            prepared.result()
    reports = [OverlayReport(r.path, env or infer_env(r.path), len(r.objects), r.error) for r in rendered]
    if schema_check:
        results = schemas.check({r.path: r.objects for r in rendered if r.error is None})
        by_path = {o.path: o for o in reports}
        for res in results:
            by_path[res.overlay].schema.append(res)
    for i, (r, o) in enumerate(zip(rendered, reports, strict=True), 1):
        if r.error is None:
            o.violations = evaluate(
                r.path, o.env, r.objects, config, r.kustomization, r.layers, strict=strict
            )
        if on_overlay:
            on_overlay(i, len(reports), o)
    return Report(reports, fail_on)
