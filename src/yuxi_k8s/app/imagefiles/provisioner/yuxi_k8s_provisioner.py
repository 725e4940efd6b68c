"""The sandbox-provisioner image's entry point: upstream's server with the kit's kubernetes backend.

Runs as ``uvicorn yuxi_k8s_provisioner:app`` from ``/app``, beside upstream's ``app.py``, which
it imports unchanged (Yuxi-Know 0.6.1, ``docker/sandbox_provisioner/app.py``). Copied alone into
the image (``images.py``, stage ``provisioner-kit``): it imports nothing of the kit.

With ``PROVISIONER_BACKEND=kubernetes`` it swaps upstream's backend for one that differs in two
ways (every other backend is upstream's, untouched):

- **ClusterIP, not NodePort.** Upstream makes a NodePort Service per sandbox and hands out
  ``http://<node>:<port>``; every node then serves the sandbox's unauthenticated API, so any pod
  that reaches a node address reaches it, whatever the NetworkPolicies say about pods. Here the
  Service is ClusterIP and the URL ``http://sandbox-<id>.<namespace>.svc:<port>``: only the
  policies of the sandboxes' namespace decide who connects.
- **A limit per user** (``YUXI_K8S_SANDBOXES_PER_USER``, default 3; 0 turns it off): the
  namespace's ResourceQuota counts every user together, so one user could take every sandbox.
  A create beyond the limit is refused (upstream answers a ValueError with 400) before any pod
  is made. Counted from the pods' ``user-id`` annotation, under the backend's lock (one replica).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import app as upstream  # upstream's server module, /app/app.py

logger = logging.getLogger("yuxi_k8s_provisioner")

PER_USER_ENV = "YUXI_K8S_SANDBOXES_PER_USER"
DEFAULT_PER_USER = 3


def per_user_limit(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    raw = environ.get(PER_USER_ENV, str(DEFAULT_PER_USER)).strip()
    try:
        limit = int(raw)
    except ValueError:
        raise SystemExit(f"{PER_USER_ENV}={raw!r} is not a whole number") from None
    if limit < 0:
        raise SystemExit(f"{PER_USER_ENV}={limit} is negative (0 turns the limit off)")
    return limit


def service_url(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc:{port}"


def live_sandboxes_of(pods: list[Any], user_id: str) -> list[str]:
    """The sandbox ids of *user_id*'s pods that still run or are about to (not ending)."""
    ids = []
    for pod in pods:
        meta = pod.metadata
        if meta.deletion_timestamp is not None:
            continue
        if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
            continue
        if (meta.annotations or {}).get("user-id") == user_id:
            ids.append((meta.labels or {}).get("sandbox-id", meta.name))
    return ids


class ClusterIPBackend(upstream.KubernetesProvisionerBackend):  # type: ignore[misc,name-defined]
    def __init__(self, per_user: int) -> None:
        super().__init__()
        # create() holds the lock while it counts and then calls upstream's create, which
        # takes it again.
        self._lock = threading.RLock()
        self._per_user = per_user

    def _build_service_spec(self, sandbox_id: str) -> Any:
        service = super()._build_service_spec(sandbox_id)
        service.spec.type = "ClusterIP"
        return service

    def discover(self, sandbox_id: str) -> Any:
        from kubernetes.client.rest import ApiException

        name = self._service_name(sandbox_id)
        try:
            pod = self._core_api.read_namespaced_pod(
                name=self._pod_name(sandbox_id), namespace=self._namespace
            )
            self._core_api.read_namespaced_service(name=name, namespace=self._namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return upstream.SandboxRecord(
            sandbox_id=sandbox_id,
            sandbox_url=service_url(name, self._namespace, self._container_port),
            status=(pod.status.phase if pod and pod.status else "Unknown"),
        )

    def create(self, sandbox_id: str, thread_id: str, user_id: str) -> Any:
        with self._lock:
            if self._per_user and self.discover(sandbox_id) is None:
                pods = self._core_api.list_namespaced_pod(
                    namespace=self._namespace, label_selector="app=yuxi-sandbox"
                ).items
                held = live_sandboxes_of(pods, user_id)
                if len(held) >= self._per_user:
                    logger.warning("refused sandbox %s: user %s holds %s", sandbox_id, user_id, held)
                    raise ValueError(
                        f"user {user_id} already has {len(held)} sandboxes ({PER_USER_ENV}="
                        f"{self._per_user}); one ends when idle for SANDBOX_IDLE_TIMEOUT_SECONDS"
                    )
            return super().create(sandbox_id, thread_id, user_id)


if upstream.backend_name == "kubernetes":
    upstream.backend_impl = ClusterIPBackend(per_user_limit())
    # The routes and the lifespan read these module globals at call time.
    upstream.idle_reaper = upstream.SandboxIdleReaper(upstream.backend_impl)
    logger.info("kubernetes backend: ClusterIP Services, %s sandboxes per user", per_user_limit() or "any")

app = upstream.app
