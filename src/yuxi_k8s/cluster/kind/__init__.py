"""kind, also where no registry can be reached: the engine, the node image, the cluster config.

- :mod:`.engine`: the Docker engine (the user's, or a private dockerd started and stopped here).
- :mod:`.vmshims`: what only kernels like this project's VMs need (isolated, switched on by checks).
- :mod:`.baseimage` / :mod:`.nodeimage`: kind's base and node images built locally from Debian
  packages, kind's own files and the pinned Kubernetes (no registry).
- :mod:`.config`: the kind cluster config (subnets, cgroup v1, containerd and kubeadm patches).
- :mod:`.storage`: the kit's hostpath provisioner as a pod, the default ReadWriteMany StorageClass.
"""

from __future__ import annotations

REPOSITORY = "localhost/yuxi-k8s"
