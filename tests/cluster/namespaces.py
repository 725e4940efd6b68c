"""A throwaway namespace of the cluster smoke tests (the ``namespace`` fixture in conftest.py gives
one per test). Kept out of conftest.py so the tests can import it: test modules never import a
conftest."""

from __future__ import annotations

import json
from typing import Any

import yaml
from tests.kube_fixtures import KubeCluster


class Namespace:
    """One throwaway namespace and the kubectl calls the tests make in it."""

    def __init__(self, cluster: KubeCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.cluster.kubectl("-n", self.name, *args, **kw)

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json").stdout)

    def exec(self, pod: str, *cmd: str, timeout: float = 30) -> Any:
        return self.kubectl("exec", pod, "--", *cmd, check=False, timeout=timeout)

    def wait_pod_ready(self, pod: str, timeout: float = 120) -> None:
        self.kubectl(
            "wait", f"pod/{pod}", "--for=condition=Ready", f"--timeout={int(timeout)}s", timeout=timeout + 10
        )
