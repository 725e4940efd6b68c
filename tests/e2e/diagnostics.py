"""What to keep when an e2e step fails: events, pod logs (current and previous), describes.

Everything goes under ``.run/e2e/<run-id>/diagnostics/<test>/<namespace>/``; a
short summary (pods that are not ready and why, the latest warning events, the
tail of failing containers' logs) is returned for the test report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.e2e.kube import Kube, is_ready
from yuxi_k8s.cluster.kube import KubectlError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _try(kube: Kube, *args: str, ns: str | None = None) -> str:
    try:
        proc = kube.run(*args, ns=ns, timeout=30, check=False)
        return proc.stdout + (f"\n[stderr]\n{proc.stderr}" if proc.stderr.strip() else "")
    except Exception as exc:  # diagnostics must never hide the original failure
        return f"[could not run kubectl {' '.join(args)}: {exc}]"


def collect(kube: Kube, namespaces: list[str], out: Path) -> str:
    """Save diagnostics of *namespaces* under *out*; return a summary for the test output."""
    lines = [f"diagnostics saved under {out}"]
    for ns in namespaces:
        base = out / _safe(ns)
        _write(
            base / "resources.txt",
            _try(kube, "get", "all,pvc,networkpolicy,configmap,secret,job", "-o", "wide", ns=ns),
        )
        _write(base / "events.txt", _try(kube, "get", "events", "--sort-by=.lastTimestamp", ns=ns))
        try:
            pods: list[dict[str, Any]] = kube.json("get", "pods", ns=ns)["items"]
        except (KubectlError, ValueError) as exc:
            lines.append(f"[{ns}] cannot list pods: {exc}")
            continue
        for kind in ("deployment", "statefulset", "job"):
            try:
                objs = kube.json("get", kind, ns=ns)["items"]
            except (KubectlError, ValueError):
                continue
            for obj in objs:
                name = obj["metadata"]["name"]
                st = obj.get("status", {})
                want = obj.get("spec", {}).get("replicas", 1)
                unhealthy = (
                    st.get("failed", 0) > 0 or not st.get("succeeded")
                    if kind == "job"
                    else st.get("readyReplicas", 0) < want
                )
                if unhealthy:
                    _write(
                        base / f"describe-{kind}-{_safe(name)}.txt", _try(kube, "describe", kind, name, ns=ns)
                    )
                    lines.append(f"[{ns}] {kind}/{name} not healthy: {summarise_status(st)}")
        for pod in pods:
            name = pod["metadata"]["name"]
            _write(base / f"describe-pod-{_safe(name)}.txt", _try(kube, "describe", "pod", name, ns=ns))
            _write(
                base / f"logs-{_safe(name)}.txt",
                _try(kube, "logs", name, "--all-containers", "--tail=2000", ns=ns),
            )
            restarted = any(
                c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", [])
            )
            if restarted:
                _write(
                    base / f"logs-previous-{_safe(name)}.txt",
                    _try(kube, "logs", name, "--all-containers", "--previous", "--tail=2000", ns=ns),
                )
            phase = pod.get("status", {}).get("phase")
            if phase != "Succeeded" and not is_ready(pod):
                lines.append(f"[{ns}] pod {name} {phase}: {container_reasons(pod)}")
                tail = _try(kube, "logs", name, "--all-containers", "--tail=15", ns=ns).strip()
                if tail:
                    lines.extend(f"    | {line}" for line in tail.splitlines()[-15:])
        warnings = _try(
            kube, "get", "events", "--field-selector=type=Warning", "--sort-by=.lastTimestamp", ns=ns
        )
        warning_lines = [
            line
            for line in warnings.strip().splitlines()[1:]
            if line.strip() and not line.startswith(("No resources found", "[stderr]"))
        ]
        if warning_lines:
            lines.append(f"[{ns}] latest warning events:")
            lines.extend(f"    {line}" for line in warning_lines[-10:])
    return "\n".join(lines)


def summarise_status(status: dict[str, Any]) -> str:
    keys = (
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "availableReplicas",
        "active",
        "succeeded",
        "failed",
    )
    return ", ".join(f"{k}={status[k]}" for k in keys if k in status) or "no status"


def container_reasons(pod: dict[str, Any]) -> str:
    reasons = []
    status = pod.get("status", {})
    for cs in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        state = cs.get("state", {})
        for key in ("waiting", "terminated"):
            if key in state:
                detail = state[key].get("reason", key)
                message = state[key].get("message", "")
                reasons.append(f"{cs['name']} {detail} {message}".strip())
        if cs.get("restartCount"):
            reasons.append(f"{cs['name']} restarts={cs['restartCount']}")
    for cond in status.get("conditions", []):
        if cond.get("status") != "True" and cond.get("message"):
            reasons.append(f"{cond['type']}: {cond['message']}")
    return "; ".join(reasons) or "no container status yet"
