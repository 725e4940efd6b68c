"""A stopping process leaves the sandboxes alone; the provisioner ends idle ones (row 11).

Yuxi-Know 0.6.1 gives each conversation thread one sandbox, named by the thread
(``sandbox_id_for_thread``): every api replica and the worker that runs a tool for that
thread asks the provisioner for the same sandbox and touches it while using it
(``yuxi/agents/backends/sandbox/provider.py``). Each process remembers the sandboxes it
touched (``ProvisionerSandboxProvider._connections``) and its ``shutdown()``, called when
the api stops (``server/utils/lifespan.py``), deletes them all: a replica stopped by a
rollout or a scale-in deletes the sandbox another replica or the worker is running a
command in.

What ends a sandbox is the provisioner's idle reaper (``docker/sandbox_provisioner/app.py``:
``SANDBOX_IDLE_TIMEOUT_SECONDS``, 600 s by default, at least the command timeout + 30 s):
it deletes a sandbox nobody created, read or touched for that long, whichever process
used it. So here ``shutdown()`` only forgets this process's connections; a sandbox nobody
uses any more is deleted by the reaper, one still in use lives on.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("yuxi_k8s.app.sandboxes")

REQUIRED_ATTRIBUTES = ("_lock", "_connections", "_last_touch_at", "shutdown")


def missing_attributes(module: Any) -> list[str]:
    cls = getattr(module, "ProvisionerSandboxProvider", None)
    if cls is None:
        return ["ProvisionerSandboxProvider"]
    # _lock and the dicts are made in __init__: checked on the class's source names, not on an instance.
    names = set(cls.__init__.__code__.co_names) | set(vars(cls))
    return [f"ProvisionerSandboxProvider.{n}" for n in REQUIRED_ATTRIBUTES if n not in names]


def install(module: Any) -> None:
    """Patch the application's sandbox provider class: a stopping process deletes no sandbox."""

    def shutdown(self: Any) -> None:
        with self._lock:
            released = sorted(c.sandbox_id for c in self._connections.values())
            self._connections.clear()
            self._last_touch_at.clear()
        if released:
            log.info(
                "leaving %d sandbox(es) to the provisioner's idle reaper (other processes may use them): %s",
                len(released),
                ", ".join(released),
            )

    module.ProvisionerSandboxProvider.shutdown = shutdown
