"""Every image a render makes the cluster pull: for mirroring (`yuxi-k8s images list`) and for the
digest rules (YK-IMG-004/005).

Three sources: the containers of every pod template (init containers too), the images the
application starts at run time (``SANDBOX_IMAGE``), and the PostgreSQL image of a CloudNativePG
``Cluster`` (``spec.imageName``; without it the operator's built-in default, which the render
cannot name). Images the operators pull for themselves (their own Deployments, the Barman
Cloud plugin's sidecar) are not in an application render and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from yuxi_k8s.validate.model import Context, Resource, as_mapping, as_mappings

# Variables that name an image the application starts at run time (the contract's SANDBOX_IMAGE).
IMAGE_VARIABLES = ("SANDBOX_IMAGE",)


@dataclass(frozen=True)
class Pulled:
    """One image reference and where the render names it."""

    image: str
    resource: Resource
    where: str  # "container api", "initContainer db-upgrade", "env SANDBOX_IMAGE of container x", ...

    def used_by(self) -> str:
        return f"{self.resource} {self.where}"


def pulled_images(ctx: Context) -> list[Pulled]:
    """Each image reference of the render with its place, in render order."""
    found: list[Pulled] = []
    for workload in ctx.workloads:
        for c in workload.containers:
            image = c.spec.get("image")
            if isinstance(image, str) and image:
                found.append(Pulled(image, workload.resource, c.label()))
            for entry in as_mappings(c.spec.get("env")):
                value = entry.get("value")
                if entry.get("name") in IMAGE_VARIABLES and isinstance(value, str) and value:
                    found.append(Pulled(value, workload.resource, f"env {entry['name']} of {c.label()}"))
    for cluster in ctx.of_kind("Cluster"):
        if cluster.group != "postgresql.cnpg.io":
            continue
        image = as_mapping(cluster.obj.get("spec")).get("imageName")
        if isinstance(image, str) and image:
            found.append(Pulled(image, cluster, "spec.imageName"))
    return found


def image_list(ctx: Context) -> list[tuple[str, list[str]]]:
    """(image, [used by ...]) for each distinct image, sorted by image."""
    users: dict[str, list[str]] = {}
    for p in pulled_images(ctx):
        users.setdefault(p.image, []).append(p.used_by())
    return sorted(users.items())
