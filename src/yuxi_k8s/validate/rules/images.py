"""Images pinned: a real tag or a digest, never `latest`."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context
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
