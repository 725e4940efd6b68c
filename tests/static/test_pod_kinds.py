"""Issue 12, item 11: every kind that carries a pod template goes through the pod rules.

A ReplicationController, a bare PodTemplate and a custom kind with ``spec.template.spec``
running privileged, as root, with SYS_ADMIN, hostNetwork, hostPID and a hostPath of /
passed ``validate --env prod`` with 0 violations before.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from yuxi_k8s.validate.engine import evaluate, load_config

POD_SPEC: dict[str, Any] = {
    "hostNetwork": True,
    "hostPID": True,
    "containers": [
        {
            "name": "evil",
            "image": "registry.example.org/evil@sha256:" + "a" * 64,
            "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}},
        }
    ],
    "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
}
META = {"name": "evil", "namespace": "yuxi", "labels": {"app.kubernetes.io/name": "yuxi-know"}}
TEMPLATE = {"metadata": {"labels": {"app.kubernetes.io/name": "yuxi-know"}}, "spec": POD_SPEC}
OBJECTS = {
    "ReplicationController": {"apiVersion": "v1", "kind": "ReplicationController", "metadata": META,
                              "spec": {"replicas": 1, "template": TEMPLATE}},
    "PodTemplate": {"apiVersion": "v1", "kind": "PodTemplate", "metadata": META, "template": TEMPLATE},
    "custom kind": {"apiVersion": "example.org/v1", "kind": "Rollout", "metadata": META,
                    "spec": {"template": TEMPLATE}},
    "custom cron kind": {"apiVersion": "example.org/v1", "kind": "Schedule", "metadata": META,
                         "spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}},
}  # fmt: skip
EXPECTED_RULE_FAMILY = "YK-PSS-"


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_a_hostile_pod_in_any_kind_is_refused(kind: str) -> None:
    found = evaluate(f"fixture {kind}", "prod", [copy.deepcopy(OBJECTS[kind])], load_config(), strict=True)
    ids = {v.rule for v in found}
    pod_security = {i for i in ids if i.startswith(EXPECTED_RULE_FAMILY)}
    assert len(pod_security) >= 5, sorted(ids)  # privileged, root, capabilities, host namespaces, hostPath
