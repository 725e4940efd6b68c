"""`yuxi-k8s validate PATH...`: render, schema-check and policy-check kustomizations."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from yuxi_k8s.cli import UserError
from yuxi_k8s.validate.errors import EXIT_USAGE, ValidateError
from yuxi_k8s.validate.rules import ENVS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="render, schema-check and policy-check kustomizations (offline)",
        description="Render each kustomization with the pinned kustomize, check every object with "
        "kubeconform -strict against the pinned Kubernetes and CRD schemas, then run the policy "
        "rules (docs/rules.md). Exit 0 clean, 1 on any render failure, schema failure or violation, "
        "2 on a usage error, 3 when the check is incomplete (a rule crashed, a tool or schema is missing).",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="kustomization directories (e.g. overlays/prod)")
    p.add_argument(
        "--format",
        choices=("text", "json", "junit", "sarif"),
        default="text",
        help="report format (sarif: findings on the source file of each object, for code scanning)",
    )
    p.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--env", choices=ENVS, help="environment rules to apply (default: inferred from the path)")
    p.add_argument("--config", metavar="FILE", help="policy settings merged over the defaults")
    p.add_argument(
        "--fail-on",
        choices=("warning", "error"),
        default="warning",
        help="lowest severity that fails the run (default: warning)",
    )
    p.add_argument("--no-schema", action="store_true", help="skip kubeconform (policy rules only)")
    p.add_argument(
        "--entry-points",
        action="store_true",
        help="also check the kit's own entry points (src/yuxi_k8s/validate/entry_points.txt; make validate)",
    )
    p.add_argument(
        "--kit-example",
        action="store_true",
        help="the kit checking its own example overlays: their placeholder images pass YK-IMG-006 "
        "(make validate; never for your overlays)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a rule that crashes stops the run with its traceback (for rule authors; the tests use it)",
    )
    p.add_argument(
        "--print-crd-paths",
        action="store_true",
        help="print the pinned upstream CRD files (to kubectl apply before a server-side dry-run) and exit",
    )
    p.add_argument("--rules-doc", action="store_true", help="print docs/rules.md generated from the registry")
    p.add_argument(
        "--prepare-schemas",
        action="store_true",
        help="prepare the pinned core and CRD schemas in the cache and exit (make validate runs it "
        "beside the kubeconform build)",
    )

    p.set_defaults(handler=handle)


def _write(text: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)


def handle(args: argparse.Namespace) -> int:
    """The validate concern's errors become the command line's one-line errors here."""
    try:
        return _handle(args)
    except ValidateError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from exc


def _handle(args: argparse.Namespace) -> int:
    if args.print_crd_paths:
        from yuxi_k8s.validate.crds import crd_paths

        _write("".join(f"{p}\n" for p in crd_paths()), args.output)
        return 0
    if args.prepare_schemas:
        from yuxi_k8s.validate.pipeline import prepare_schemas

        prepare_schemas()
        return 0
    if args.rules_doc:
        from yuxi_k8s.validate.docs import rules_markdown

        _write(rules_markdown(), args.output)
        return 0
    paths = list(args.paths)
    if args.entry_points:
        from yuxi_k8s.paths import NoCheckoutError
        from yuxi_k8s.validate.entry_points import checkout_entry_points

        try:
            paths += checkout_entry_points()
        except NoCheckoutError as exc:
            raise UserError(str(exc), exit_code=EXIT_USAGE) from exc
    if not paths:
        raise UserError("give at least one kustomization PATH (e.g. overlays/dev)", exit_code=EXIT_USAGE)

    from yuxi_k8s.validate import pipeline
    from yuxi_k8s.validate.engine import load_config
    from yuxi_k8s.validate.report import FORMATS, OverlayReport, progress_line

    config = load_config(args.config)
    if args.kit_example:
        from yuxi_k8s.validate.rules.images import KIT_EXAMPLE

        config[KIT_EXAMPLE] = True

    def progress(i: int, total: int, overlay: OverlayReport) -> None:
        if not args.quiet:
            print(progress_line(i, total, overlay, args.fail_on), file=sys.stderr, flush=True)

    report = pipeline.run(
        paths,
        env=args.env,
        config=config,
        fail_on=args.fail_on,
        schema_check=not args.no_schema,
        on_overlay=progress,
        strict=args.strict,
    )
    if args.format == "sarif":
        from yuxi_k8s.validate.sarif import to_sarif

        _write(to_sarif(report), args.output)
    else:
        _write(FORMATS[args.format](report), args.output)
    return report.exit_code
