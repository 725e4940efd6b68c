"""`yuxi-k8s cluster ...` as a user meets it: a status that tells the truth, one-line errors."""

from __future__ import annotations

import json
import os
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


# Runs `yuxi-k8s cluster up` as nobody. The interpreter starts as root and imports what the command
# needs, then drops to uid/gid 65534 for good (real, effective and saved ids, no groups) before the
# command runs: exec'ing the venv's script as nobody instead would fail to even read it when the
# clone lives under a folder others cannot enter (a `mktemp -d`, a 0700 home), which is no test of
# the message. The child refuses to go on if it is still root, so this can never start a cluster.
AS_NOBODY = """
import os, sys
from yuxi_k8s import cli
import yuxi_k8s.cluster.local.cluster  # what `cluster up` imports before it checks for root
cli.build_parser()  # every concern's commands module, imported now
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())
if 0 in ids[:4]:
    sys.exit("still root: refusing to run `cluster up`")
print(*ids[:4], ids[4], flush=True)
sys.exit(cli.main(["cluster", "up"]))
"""


def test_without_root_up_fails_with_one_readable_line() -> None:
    require(os.geteuid() == 0, "root, to run the CLI as another user")
    proc = subprocess.run(
        [sys.executable, "-c", AS_NOBODY], cwd="/", capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "65534 65534 65534 65534 []", proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "yuxi-k8s cluster: error: the local cluster needs root (it runs containerd, the kubelet and iptables)"
    ]
