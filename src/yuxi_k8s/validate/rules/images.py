"""Images pinned: a real tag or a digest, never `latest`; in prod by digest."""

from __future__ import annotations

import re
from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource
from yuxi_k8s.validate.pulled import pulled_images
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "images"


def without_registry(repo: str) -> str:
    """The repository path of *repo* without its registry host (which an overlay's IMAGE_REGISTRY
    may replace after `images:`)."""
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repo


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    repo, _, digest = image.partition("@")
    last = repo.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        repo, _, tag = repo.rpartition(":")
    return repo, tag or None, digest or None


# Registry hosts that never serve images: the reserved names of RFC 2606/6761 (the kit's
# placeholder is registry.example.invalid) and this machine.
RESERVED_HOST = re.compile(r"(^|\.)(invalid|example|test|localhost)$|(^|\.)example\.(com|net|org)$")


def registry_host(image: str) -> str | None:
    """The registry host of an image reference, None for Docker Hub's short names."""
    first, sep, _ = split_image(image)[0].partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.rsplit(":", 1)[0] if ":" in first else first
    return None


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
    images = [split_image(p.image) for p in pulled_images(ctx)]
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
        # The registry host does not count: IMAGE_REGISTRY (overlays/<env>/registry.replacements.yaml)
        # replaces it after `images:`; the path, tag and digest are what the entry pins.
        if not any(
            without_registry(r) == without_registry(repo)
            and (tag is None or t == str(tag))
            and (digest is None or d == digest)
            for r, t, d in images
        ):
            want = f"{repo}{':' + str(tag) if tag else ''}{'@' + digest if digest else ''}"
            yield where, f"images entry {entry['name']} (-> {want}) changes no container of the render"


# The kit's placeholder digest (sha256:000...): a digest in the right place that pins nothing real.
PLACEHOLDER_DIGEST = re.compile(r"^sha256:0{64}$")


def unpinned(ctx: Context) -> Iterator[Finding]:
    """Images pulled without a digest, or with the placeholder one."""
    for p in pulled_images(ctx):
        _, _, digest = split_image(p.image)
        if not digest:
            yield p.resource, f"{p.where}: {p.image} has no digest"
        elif PLACEHOLDER_DIGEST.match(digest):
            yield p.resource, f"{p.where}: {p.image} has the placeholder digest"


DIGEST_MESSAGE = (
    "A tag can be moved or re-pushed: pods started on different days, or on nodes with different caches, "
    "run different code, and a compromised registry can swap what a tag names. A digest names exactly one "
    "image. Every image the deploy pulls counts: the containers, the images the app starts (SANDBOX_IMAGE) "
    "and CloudNativePG's PostgreSQL image (spec.imageName)."
)
DIGEST_FIX = (
    "Pin each image as `name:tag@sha256:...`: `kustomize edit set image NAME=REPO:TAG@sha256:DIGEST` in "
    "the overlay (the lines `yuxi-k8s images build` prints), SANDBOX_IMAGE in app/site.ConfigMap.yaml; "
    "`crane digest IMAGE` or `docker buildx imagetools inspect IMAGE` shows a mirrored image's digest."
)


@rule(
    "YK-IMG-004",
    family=FAMILY,
    title="Images pinned by digest (prod)",
    message=DIGEST_MESSAGE,
    fix=DIGEST_FIX,
    envs=("prod",),
)
def digests_prod(ctx: Context) -> Iterator[Finding]:
    yield from unpinned(ctx)


@rule(
    "YK-IMG-005",
    family=FAMILY,
    title="Images pinned by digest (staging)",
    message=DIGEST_MESSAGE + " In staging this is a warning: a tag there is how a new build is tried first.",
    fix=DIGEST_FIX,
    severity="warning",
    envs=("staging",),
)
def digests_staging(ctx: Context) -> Iterator[Finding]:
    yield from unpinned(ctx)


# The policy setting `yuxi-k8s validate --kit-example` turns on: only for the kit's own example
# overlays (make validate, the static tests), whose placeholders are there on purpose.
KIT_EXAMPLE = "kit_example_placeholders"


@rule(
    "YK-IMG-006",
    family=FAMILY,
    title="No placeholder image reaches staging or prod",
    message="The kit ships staging and prod with placeholder images (registry.example.invalid, "
    "sha256:000...) so that they render; no cluster can pull them. Unlike the rules that name the "
    "same images (YK-APP-009, YK-IMG-004), this one cannot be allowed by annotation: the allowance "
    "patches the kit's example carries do not let a forgotten placeholder through. Only "
    "`yuxi-k8s validate --kit-example` (the kit checking its own example) skips it.",
    fix="Set IMAGE_REGISTRY in app/site.ConfigMap.yaml to your registry, pin each image's digest in "
    "the overlay's `images:` and SANDBOX_IMAGE (docs/deploy.md, Before the first deploy, 1), then delete "
    "the allowance patches at the top of the overlay's kustomization.yaml.",
    envs=("staging", "prod"),
    suppressible=False,
)
def no_placeholders(ctx: Context) -> Iterator[Finding]:
    if ctx.setting(KIT_EXAMPLE, False):
        return
    for p in pulled_images(ctx):
        host = registry_host(p.image)
        _, _, digest = split_image(p.image)
        if host and RESERVED_HOST.search(host):
            yield p.resource, f"{p.where}: {p.image} is on the placeholder registry {host}"
        elif digest and PLACEHOLDER_DIGEST.match(digest):
            yield p.resource, f"{p.where}: {p.image} has the placeholder digest"
