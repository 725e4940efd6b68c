"""No placeholder values left in staging and prod."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from yuxi_k8s.validate.model import Context
from yuxi_k8s.validate.rules import OUTSIDE_DEV, Finding, rule

FAMILY = "placeholders"
PLACEHOLDER = re.compile(
    r"your[-_]|change[-_]?me|placeholder|replace[-_]?me|example\.(?:com|org|net)\b|xxx|\bTODO\b|\bFIXME\b|<insert",
    re.IGNORECASE,
)
SKIP_KEYS = {"managedFields", "kubectl.kubernetes.io/last-applied-configuration"}


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in SKIP_KEYS:
                yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _decoded(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return value


@rule(
    "YK-PLH-001",
    family=FAMILY,
    title="No placeholder values",
    message="Placeholders (`your-...`, `changeme`, `PLACEHOLDER`, `TODO`, `example.com`, `xxx`) left in "
    "staging or prod configuration point at nothing or are guessable credentials.",
    fix="Replace the placeholder with the environment's real value (credentials through a Secret).",
    envs=OUTSIDE_DEV,
)
def placeholders(ctx: Context) -> Iterator[Finding]:
    for res in ctx.resources:
        obj = res.obj
        if res.kind == "Secret":
            obj = {**obj, "data": {k: _decoded(str(v)) for k, v in (obj.get("data") or {}).items()}}
        for path, text in _strings(obj):
            match = PLACEHOLDER.search(text)
            if match:
                yield res, f"{path} contains placeholder {match.group(0)!r}"
