"""The errors the validate concern raises on purpose, and its exit codes.

The library raises these; the command line (``validate/commands.py`` through
``yuxi_k8s.cli``) prints each as one line and exits with :attr:`exit_code`.
Nothing here knows about the command line.
"""

from __future__ import annotations

# Exit codes of `yuxi-k8s validate` (docs/validate.md, "Exit codes").
EXIT_CLEAN = 0  # everything was checked and nothing fails
EXIT_FINDINGS = 1  # a render failure, schema failure or violation
EXIT_USAGE = 2  # bad arguments or an unreadable --config
EXIT_INCOMPLETE = 3  # something was not checked: a rule crashed, or a tool or schema source is missing


class ValidateError(Exception):
    """The check cannot be done as asked; the message is one readable line."""

    exit_code = EXIT_INCOMPLETE


class ConfigError(ValidateError):
    """The policy configuration (``--config``) cannot be read or is invalid."""

    exit_code = EXIT_USAGE


class RenderError(ValidateError):
    """A kustomization does not render (``render.kustomize_build``); in a run it is a finding instead."""

    exit_code = EXIT_FINDINGS


class ToolError(ValidateError):
    """A pinned tool (kubectl's kustomize, kubeconform, go) is missing or failed in an unexpected way."""


class SchemaSourceError(ValidateError):
    """A pinned schema source (kubernetes-validate, a CRD module) cannot be had."""
