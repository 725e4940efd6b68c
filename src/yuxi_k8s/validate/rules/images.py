"""Images pinned: a real tag or a digest, never `latest`."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "images"


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    repo, _, digest = image.partition("@")
    last = repo.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        repo, _, tag = repo.rpartition(":")
    return repo, tag or None, digest or None


@rule(
    "YK-IMG-001",
    family=FAMILY,
    title="No latest tag",
    message="`latest` moves: two pods of the same Deployment can run different code.",
    fix="Pin a released version tag (or a digest) for the image.",
)
def latest_tag(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        _, tag, digest = split_image(str(c.spec.get("image", "")))
        if tag == "latest" and not digest:
            yield c.workload.resource, f"{c.label()} uses {c.spec.get('image')}"


@rule(
    "YK-IMG-002",
    family=FAMILY,
    title="Image tag present",
    message="An image without tag or digest means `latest`.",
    fix="Add a version tag (`:1.2.3`) or a digest (`@sha256:...`) to the image.",
)
def missing_tag(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        image = str(c.spec.get("image", ""))
        _, tag, digest = split_image(image)
        if not tag and not digest:
            yield c.workload.resource, f"{c.label()} image {image or '(empty)'} has no tag or digest"


@rule(
    "YK-IMG-003",
    family=FAMILY,
    title="Kustomization image pins take effect",
    message="An `images:` entry of the validated kustomization that changes no container is a pin that "
    "does not pin: typically the base already renamed the image, so the overlay's tag is silently ignored "
    "and the environment runs another version than the one written.",
    fix="Match the image name as it reaches this kustomization (after the base's own `images:`), or pin "
    "images in one place only.",
)
def image_pins(ctx: Context) -> Iterator[Finding]:
    entries = (ctx.kustomization or {}).get("images") or []
    images = [split_image(str(c.spec.get("image", ""))) for c in ctx.containers()]
    where = Resource(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "metadata": {"name": ctx.overlay},
        }
    )
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        repo = entry.get("newName") or entry["name"]
        tag, digest = entry.get("newTag"), entry.get("digest")
        if not any(
            r == repo and (tag is None or t == str(tag)) and (digest is None or d == digest)
            for r, t, d in images
        ):
            want = f"{repo}{':' + str(tag) if tag else ''}{'@' + digest if digest else ''}"
            yield where, f"images entry {entry['name']} (-> {want}) changes no container of the render"
