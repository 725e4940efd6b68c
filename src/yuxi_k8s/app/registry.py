"""Push an OCI image archive to a registry: a small client of the OCI distribution API (httpx).

    from yuxi_k8s.app import registry
    pushed = registry.push(archive, "registry.example.com/team/yuxi-know-api:0.6.1")
    pushed.digest, pushed.uploaded  # the manifest digest (as in the archive), the blobs sent

Each blob (config, layers) is checked with ``HEAD`` and, when missing, uploaded in one
piece (``POST`` for an upload location, then ``PUT ...?digest=``); then the manifest is
``PUT`` under the tag, byte for byte as it is in the archive, so the registry's digest
is the archive's. Credentials, when the registry asks (401 with ``WWW-Authenticate``):
``$YUXI_K8S_REGISTRY_USERNAME``/``$YUXI_K8S_REGISTRY_PASSWORD``, else the registry's
``auth`` entry in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``);
basic and bearer-token challenges are both answered. Credential helpers
(``credsStore``/``credHelpers``) are not called. Loopback registries (localhost,
127.0.0.0/8, ::1) are spoken to over plain HTTP, every other one over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
DOCKER_HUB = "registry-1.docker.io"
CHUNK = 1 << 20


class RegistryError(RuntimeError):
    """A push or pull failed; the message is one line naming the step."""


@dataclass(frozen=True)
class Reference:
    host: str  # host[:port] as used in URLs
    repository: str
    tag: str

    @property
    def base_url(self) -> str:
        return f"{scheme(self.host)}://{self.host}/v2/{self.repository}"


def parse_reference(ref: str) -> Reference:
    """``host[:port]/path/name:tag`` (``docker.io`` names map to Docker Hub, ``library/`` added)."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag or "@" in ref:
        raise RegistryError(f"{ref!r} is not NAME:TAG (a digest reference cannot be pushed to)")
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        first, rest = "docker.io", name
    if first in ("docker.io", "index.docker.io"):
        first = DOCKER_HUB
        if "/" not in rest:
            rest = f"library/{rest}"
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*", rest):
        raise RegistryError(f"{ref!r}: repository {rest!r} must be lowercase letters, digits and . _ - /")
    return Reference(first, rest, tag)


def scheme(host: str) -> str:
    """http for loopback registries, https for every other."""
    if host.startswith("["):  # [v6]:port
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return "http"
    try:
        return "http" if ipaddress.ip_address(name).is_loopback else "https"
    except ValueError:
        return "https"


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for *host* from the environment or the Docker config file, else None."""
    user = os.environ.get("YUXI_K8S_REGISTRY_USERNAME")
    password = os.environ.get("YUXI_K8S_REGISTRY_PASSWORD")
    if user and password:
        return user, password
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((config_dir / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "docker.io", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            decoded = base64.b64decode(entry["auth"]).decode()
            user, _, password = decoded.partition(":")
            return user, password
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    kind, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return kind.lower(), params


class _Session:
    """One registry, one repository; answers 401 challenges once per scope."""

    def __init__(self, ref: Reference, timeout: float) -> None:
        self.ref = ref
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True)
        self.auth: str | None = None

    def close(self) -> None:
        self.client.close()

    def _authenticate(self, response: httpx.Response) -> None:
        kind, params = parse_challenge(response.headers.get("www-authenticate", ""))
        creds = credentials(self.ref.host)
        if kind == "basic":
            if creds is None:
                raise RegistryError(f"{self.ref.host} wants a login: set YUXI_K8S_REGISTRY_USERNAME/PASSWORD")
            self.auth = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return
        if kind != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.ref.host} answered 401 without a usable challenge")
        query = {"scope": f"repository:{self.ref.repository}:pull,push"}
        if "service" in params:
            query["service"] = params["service"]
        token_response = self.client.get(params["realm"], params=query, auth=creds)
        if token_response.status_code != 200:
            hint = (
                ""
                if creds
                else " (no credentials found: YUXI_K8S_REGISTRY_USERNAME/PASSWORD or docker login)"
            )
            raise RegistryError(f"token from {params['realm']}: HTTP {token_response.status_code}{hint}")
        body = token_response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token from {params['realm']}: no token in the answer")
        self.auth = f"Bearer {token}"

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
    ) -> httpx.Response:
        """One request; a 401 is answered (credentials, token) and retried unless the body was a stream."""
        retry = not isinstance(content, Iterator)
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self.auth:
                sent["Authorization"] = self.auth
            try:
                response = self.client.request(method, url, headers=sent, content=content)
            except httpx.HTTPError as exc:
                raise RegistryError(f"{method} {url}: {exc}") from None
            if response.status_code == 401 and attempt == 1 and retry:
                self._authenticate(response)
                continue
            break
        return response


def _expect(response: httpx.Response, codes: tuple[int, ...], what: str) -> httpx.Response:
    if response.status_code not in codes:
        detail = " ".join(response.text.split())[:200]
        raise RegistryError(f"{what}: HTTP {response.status_code} {detail}")
    return response


@dataclass(frozen=True)
class _Archive:
    manifest: bytes
    digest: str
    blobs: list[str]  # config first, then layers, as "sha256:<hex>"


def read_archive(archive: Path) -> _Archive:
    """The manifest (bytes as stored) and the blob digests of a one-image OCI archive."""
    try:
        with tarfile.open(archive) as tar:
            index = json.load(_member(tar, "index.json"))
            descriptor = index["manifests"][0]
            manifest_bytes = _member(tar, f"blobs/sha256/{descriptor['digest'].split(':', 1)[1]}").read()
    except (OSError, tarfile.TarError, KeyError, IndexError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise RegistryError(f"{archive}: not an OCI image archive ({detail})") from None
    digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    if digest != descriptor["digest"]:
        raise RegistryError(f"{archive}: manifest digest mismatch")
    manifest = json.loads(manifest_bytes)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return _Archive(manifest_bytes, digest, list(dict.fromkeys(blobs)))


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    fh = tar.extractfile(name)
    if fh is None:
        raise KeyError(name)
    return fh


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


@dataclass(frozen=True)
class Pushed:
    digest: str  # of the manifest, as the registry stored it
    uploaded: list[str]  # blobs sent
    present: list[str]  # blobs the registry already had


def push(archive: Path, ref: str, *, timeout: float = 600.0) -> Pushed:
    """Push the image in *archive* as *ref* (NAME:TAG): the blobs the registry lacks, then the manifest."""
    target = parse_reference(ref)
    content = read_archive(archive)
    session = _Session(target, timeout)
    uploaded: list[str] = []
    present: list[str] = []
    try:
        with tarfile.open(archive) as tar:
            for blob in content.blobs:
                url = f"{target.base_url}/blobs/{blob}"
                if session.request("HEAD", url).status_code == 200:
                    present.append(blob)
                    continue
                uploaded.append(blob)
                info = tar.getmember(f"blobs/sha256/{blob.split(':', 1)[1]}")
                start = _expect(
                    session.request("POST", f"{target.base_url}/blobs/uploads/"),
                    (202,),
                    f"start upload of {blob}",
                )
                location = httpx.URL(target.base_url).join(start.headers["location"])
                upload = location.copy_merge_params({"digest": blob})
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(info.size)}
                body = _chunks(_member(tar, info.name))
                _expect(
                    session.request("PUT", str(upload), headers=headers, content=body),
                    (201, 204),
                    f"upload {blob} ({info.size} bytes)",
                )
        response = _expect(
            session.request(
                "PUT",
                f"{target.base_url}/manifests/{target.tag}",
                headers={"Content-Type": OCI_MANIFEST},
                content=content.manifest,
            ),
            (201, 204),
            f"put manifest {target.tag}",
        )
    finally:
        session.close()
    stored = response.headers.get("docker-content-digest", content.digest)
    if stored != content.digest:
        raise RegistryError(f"the registry stored {stored}, the archive's manifest is {content.digest}")
    return Pushed(content.digest, uploaded, present)


def manifest_digest(ref: str, *, timeout: float = 60.0) -> str:
    """The digest of the manifest *ref* names in its registry (sha256 of the bytes served)."""
    target = parse_reference(ref)
    session = _Session(target, timeout)
    try:
        response = _expect(
            session.request("GET", f"{target.base_url}/manifests/{target.tag}", headers={"Accept": ACCEPT}),
            (200,),
            f"get manifest {ref}",
        )
    finally:
        session.close()
    return "sha256:" + hashlib.sha256(response.content).hexdigest()


__all__ = [
    "Pushed",
    "Reference",
    "RegistryError",
    "credentials",
    "manifest_digest",
    "parse_challenge",
    "parse_reference",
    "push",
    "read_archive",
]
