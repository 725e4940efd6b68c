"""Sync one thread's skills over and over in a process of the real application (runs in the app's env).

Starts the way ``yuxi-k8s-app`` starts the worker (``runtime.start``) in database mode, or
leaves the application alone when CONFIG_MODE=file, then answers one JSON command per line:

    {"op": "sync", "thread": t, "sets": [[slug, ...], ...], "rounds": N}
        -> the app's own sync_thread_visible_skills, N rounds cycling through the sets:
           {"errors": n, "first": "the first error", "rounds": N}
    {"op": "quit"}
"""

import json
import os
import sys
import traceback
from typing import Any


def main() -> None:
    sys.path.insert(0, os.getcwd())
    if os.environ.get("CONFIG_MODE") == "database":
        from yuxi_k8s.app.integration import runtime

        runtime.start(with_tasks=False)
    # What a sandbox tool call runs (yuxi/agents/backends/sandbox/backend.py imports it by name).
    from yuxi.agents.backends.sandbox.backend import sync_thread_visible_skills

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        out: dict[str, Any] = {"op": cmd["op"]}
        if cmd["op"] == "quit":
            print(json.dumps(out), flush=True)
            return
        if cmd["op"] != "sync":
            out["error"] = f"unknown op {cmd['op']}"
        else:
            errors: list[str] = []
            sets = cmd["sets"]
            for i in range(cmd["rounds"]):
                try:
                    sync_thread_visible_skills(cmd["thread"], sets[i % len(sets)])
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) == 1:
                        out["trace"] = traceback.format_exc()[-1500:]
            out.update(errors=len(errors), first=errors[0] if errors else "", rounds=cmd["rounds"])
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
