"""`python -m yuxi_k8s.validate PATH...`: the same command as `yuxi-k8s validate`, through the same
``yuxi_k8s.cli.main`` (one-line errors, Ctrl-C, exit codes), but importing only the validate
concern (no database drivers or migrations), which roughly halves start-up time; `make validate`
uses it."""

from __future__ import annotations

import sys

from yuxi_k8s.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["validate", *sys.argv[1:]], modules=("yuxi_k8s.validate.commands",)))
