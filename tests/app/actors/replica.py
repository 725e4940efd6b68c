"""One replica of the real application's settings, driven over stdin/stdout (runs in the app's env).

Starts the way ``yuxi-k8s-app`` starts database mode (``runtime.start``), or file
mode when CONFIG_MODE=file, then answers one JSON command per line:

    {"op": "get", "fields": ["default_model"]}           -> {"values": {...}}
    {"op": "set", "values": {"default_model": "x"}}      -> config.update(values); config.save()
    {"op": "wait", "field": f, "value": v, "timeout": 5} -> {"ok": bool, "after_s": t}
    {"op": "wait_custom", "id": "p", "present": true}    -> {"ok": bool, "after_s": t}
    {"op": "add_custom", "id": "p", "data": {...}}       -> {"ok": bool}  (the app's own method)
    {"op": "delete_custom", "id": "p"}                   -> {"ok": bool}
    {"op": "providers"}                                   -> {"custom": [...], "status": {...}}
    {"op": "hammer", "field": f, "shared": k, "n": N}    -> N saves of f (and of the shared key k)
    {"op": "quit"}
"""

import json
import os
import sys
import time
import traceback
from typing import Any


def main() -> None:
    sys.path.insert(0, os.getcwd())
    database = os.environ.get("CONFIG_MODE") == "database"
    if database:
        from yuxi_k8s.app.integration import runtime

        runtime.start(with_tasks=False)
    from yuxi.config import config

    print(json.dumps({"ready": True, "mode": "database" if database else "file"}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        out: dict[str, Any] = {"op": op}
        try:
            if op == "get":
                out["values"] = {f: getattr(config, f) for f in cmd["fields"]}
            elif op == "set":
                config.update(cmd["values"])
                config.save()
                out["ok"] = True
            elif op == "wait":
                t0 = time.monotonic()
                deadline = t0 + cmd.get("timeout", 5)
                while getattr(config, cmd["field"]) != cmd["value"] and time.monotonic() < deadline:
                    time.sleep(0.0005)
                out["ok"] = getattr(config, cmd["field"]) == cmd["value"]
                out["after_s"] = time.monotonic() - t0
            elif op == "wait_custom":
                t0 = time.monotonic()
                deadline = t0 + cmd.get("timeout", 5)
                while (cmd["id"] in config.model_names) != cmd["present"] and time.monotonic() < deadline:
                    time.sleep(0.0005)
                out["ok"] = (cmd["id"] in config.model_names) == cmd["present"]
                out["after_s"] = time.monotonic() - t0
            elif op == "add_custom":
                out["ok"] = config.add_custom_provider(cmd["id"], dict(cmd["data"]))
            elif op == "delete_custom":
                out["ok"] = config.delete_custom_provider(cmd["id"])
            elif op == "providers":
                out["custom"] = sorted(k for k, v in config.model_names.items() if v.custom)
                out["status"] = dict(config.model_provider_status)
                out["available"] = list(config.valuable_model_provider)
            elif op == "hammer":
                for i in range(cmd["n"]):
                    config.update({cmd["field"]: 1000 + i, cmd["shared"]: f"{cmd['field']}-{i}"})
                    config.save()
                out["ok"] = True
            elif op == "quit":
                print(json.dumps(out), flush=True)
                return
            else:
                out["error"] = f"unknown op {op}"
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["trace"] = traceback.format_exc()[-2000:]
        print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
