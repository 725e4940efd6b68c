"""`yuxi-k8s cluster ...` as a user meets it: a status that tells the truth, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.kube_fixtures import KubeCluster
from tests.support import require

CLI = str(Path(sys.executable).parent / "yuxi-k8s")


def test_status_reports_the_running_local_cluster(kube_cluster: KubeCluster) -> None:
    if kube_cluster.provider != "local":
        pytest.skip("`yuxi-k8s cluster status` describes the local cluster; this session uses another")
    proc = subprocess.run([CLI, "cluster", "status", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["node_ready"] and report["dns"]
    assert report["processes"] and all(report["processes"].values()), report["processes"]
    assert report["kubeconfig"] == str(kube_cluster.kubeconfig)


def test_without_root_up_fails_with_one_readable_line() -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root and setpriv to drop privileges")
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CLI, "cluster", "up"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "yuxi-k8s cluster: error: the local cluster needs root (it runs containerd, the kubelet and iptables)"
    ]
