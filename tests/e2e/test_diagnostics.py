"""The failure hook's collector, on a workload that really fails (a crash-looping container)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e import diagnostics
from tests.e2e.kube import Kube, client_pod
from yuxi_k8s.cluster.kube import poll


def test_diagnostics_keep_events_describes_and_current_and_previous_logs(
    kube: Kube, app_images: dict[str, str], run_dir: Path, make_namespace: Callable[..., str]
) -> None:
    ns = make_namespace("diag")
    # First run crashes; the restarted container (the emptyDir /tmp survives restarts) stays
    # up but never ready: stable "previous" logs, and a pod that is not ready.
    script = (
        "import os, time\n"
        "if not os.path.exists('/tmp/ran'):\n"
        "    open('/tmp/ran', 'w').close(); print('crasher: giving up', flush=True); raise SystemExit(3)\n"
        "print('crasher: second run, never ready', flush=True); time.sleep(3600)\n"
    )
    template = client_pod("crasher", app_images["api"], ["python3", "-c", script])
    template["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 2}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "crasher"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "crasher"}},
            "template": {
                "metadata": {"labels": {"app": "crasher"}},
                "spec": {**template["spec"], "restartPolicy": "Always"},
            },
        },
    }
    kube.apply([deployment], ns=ns)

    def restarted() -> bool:
        pods = kube.pods(ns, "app=crasher")
        statuses = [c for p in pods for c in p["status"].get("containerStatuses", [])]
        return any(c.get("restartCount", 0) >= 1 and "running" in c.get("state", {}) for c in statuses)

    poll("the crashing container to restart", restarted, 120)
    out = run_dir / "diagnostics-selftest"
    summary = diagnostics.collect(kube, [ns], out)
    files = {p.name for p in (out / ns).iterdir()}
    pod = kube.pods(ns, "app=crasher")[0]["metadata"]["name"]
    assert {"events.txt", "resources.txt", f"describe-pod-{pod}.txt", f"logs-{pod}.txt"} <= files, files
    assert f"logs-previous-{pod}.txt" in files and "describe-deployment-crasher.txt" in files, files
    assert "crasher: giving up" in (out / ns / f"logs-previous-{pod}.txt").read_text()
    assert f"pod {pod}" in summary and "restarts=" in summary and "deployment/crasher not healthy" in summary
    assert "crasher: second run, never ready" in summary  # the tail of the failing container's log
