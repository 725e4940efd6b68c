"""A dynamic provisioner for the local cluster's default StorageClass.

Runs on the node as a host process. A claim of the class gets a directory under
the volumes root and a hostPath PersistentVolume bound to it, with exactly the
claim's access modes: every pod of a single-node cluster runs on the node that
holds the directory, so ReadWriteOnce, ReadWriteMany and ReadOnlyMany all hold.
A released volume (claim deleted, reclaim policy Delete) loses its directory
and its PersistentVolume. The directory is world-writable so non-root pods of
any uid can share it, as a network filesystem would let them.

    python -m yuxi_k8s.cluster.provisioner --kubeconfig K --root DIR --name NAME

Without ``--kubeconfig`` it uses the pod's service account (on kind it runs as a pod:
``yuxi_k8s.cluster.kind.storage``); it needs nothing but the ``kubernetes`` client.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("provisioner")
ANNOTATION = "pv.kubernetes.io/provisioned-by"
CLAIM_PROVISIONER = "volume.kubernetes.io/storage-provisioner"


class Provisioner:
    def __init__(self, api: client.CoreV1Api, storage: client.StorageV1Api, root: Path, name: str) -> None:
        self.api = api
        self.storage = storage
        self.root = root
        self.name = name

    def provision(self, pvc: Any, reclaim: str) -> None:
        pv_name = f"pvc-{pvc.metadata.uid}"
        path = self.root / pv_name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        size = (pvc.spec.resources.requests or {}).get("storage", "1Gi")
        pv = client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=pv_name, annotations={ANNOTATION: self.name}),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=pvc.spec.access_modes,
                persistent_volume_reclaim_policy=reclaim,
                storage_class_name=pvc.spec.storage_class_name,
                volume_mode=pvc.spec.volume_mode or "Filesystem",
                host_path=client.V1HostPathVolumeSource(path=str(path), type="Directory"),
                claim_ref=client.V1ObjectReference(
                    api_version="v1",
                    kind="PersistentVolumeClaim",
                    namespace=pvc.metadata.namespace,
                    name=pvc.metadata.name,
                    uid=pvc.metadata.uid,
                ),
            ),
        )
        try:
            self.api.create_persistent_volume(pv)
            log.info(
                "provisioned %s for %s/%s at %s", pv_name, pvc.metadata.namespace, pvc.metadata.name, path
            )
        except ApiException as exc:
            if exc.status != 409:
                raise

    def reclaim(self, pv: Any) -> None:
        path = Path(pv.spec.host_path.path)
        if path.parent == self.root:  # never remove anything outside the volumes root
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.api.delete_persistent_volume(pv.metadata.name)
            log.info("deleted %s and %s", pv.metadata.name, path)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def sync(self) -> None:
        # The client's models type every field Optional; the API server fills the ones read here.
        storage_classes: list[Any] = self.storage.list_storage_class().items
        classes = {sc.metadata.name: sc for sc in storage_classes}
        ours = {n for n, sc in classes.items() if sc.provisioner == self.name}
        claims: list[Any] = self.api.list_persistent_volume_claim_for_all_namespaces().items
        volumes: list[Any] = self.api.list_persistent_volume().items
        for pvc in claims:
            wanted = (pvc.metadata.annotations or {}).get(CLAIM_PROVISIONER) == self.name
            if (
                pvc.status.phase == "Pending"
                and not pvc.spec.volume_name
                and (wanted or pvc.spec.storage_class_name in ours)
            ):
                self.provision(pvc, classes[pvc.spec.storage_class_name].reclaim_policy or "Delete")
        for pv in volumes:
            mine = (pv.metadata.annotations or {}).get(ANNOTATION) == self.name
            if (
                mine
                and pv.status.phase in ("Released", "Failed")
                and (pv.spec.persistent_volume_reclaim_policy == "Delete")
            ):
                self.reclaim(pv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="default: the pod's service account (in-cluster)")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--name", required=True, help="provisioner name in the StorageClass")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.kubeconfig:
        config.load_kube_config(args.kubeconfig)
    else:
        config.load_incluster_config()
    args.root.mkdir(parents=True, exist_ok=True)
    prov = Provisioner(client.CoreV1Api(), client.StorageV1Api(), args.root, args.name)
    log.info("serving StorageClass provisioner %s under %s", args.name, args.root)
    while True:
        try:
            prov.sync()
        except Exception as exc:  # the API server restarting must not end the provisioner
            log.warning("sync failed, retrying: %s", exc)
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
