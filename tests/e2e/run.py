"""This run's identity and what the failure hook needs, in one plain module.

Kept out of conftest.py: pytest imports a conftest under its own name, so a test
module importing it would get a second copy with another random run id.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from tests.e2e.kube import ROOT

RUN_ID = os.environ.get("YUXI_E2E_RUN_ID") or f"{time.strftime('%m%d%H%M')}{secrets.token_hex(2)}"
RUN_DIR = ROOT / ".run" / "e2e" / RUN_ID

# The cluster and the namespaces of the run, session-wide: a module fixture that fails
# in set-up runs before any function fixture, and its namespace still needs diagnostics.
ACTIVE: dict[str, Any] = {"kube": None, "namespaces": []}


def register_namespace(name: str) -> None:
    """Namespaces made without make_namespace (e.g. by a rendered overlay) also get diagnostics."""
    if name not in ACTIVE["namespaces"]:
        ACTIVE["namespaces"].append(name)


def forget_namespace(name: str) -> None:
    if name in ACTIVE["namespaces"]:
        ACTIVE["namespaces"].remove(name)
