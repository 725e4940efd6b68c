"""What the image build downloads is checked before it is used (issue 20, item 15).

Each test replays one way an unchecked file got into an image: a tampered npm or pnpm tarball, a uv
fetched without its hashes (or left in the cache from before they were checked), debootstrap going
on without Debian's keyring, the provisioner's packages installed without hashes. No network: the
downloads are stood in for by files made here.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.static.test_web_assets import npm_style_tarball
from yuxi_k8s import apt, paths
from yuxi_k8s.app import images
from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.oci import ImageError
from yuxi_k8s.pinned_tools import pinned_versions

UV_REQUIREMENTS = paths.REPO_ROOT / "tools" / "uv" / "requirements.txt"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("YUXI_K8S_CACHE", str(root))
    return root


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fake_npm_pack(monkeypatch: pytest.MonkeyPatch, served: bytes) -> list[tuple[str, ...]]:
    """``npm pack`` that writes *served* as the tarball; returns the calls it saw."""
    calls: list[tuple[str, ...]] = []

    def npm(*args: str, cwd: Path | None = None, what: str) -> str:
        calls.append(args)
        spec = args[1]
        name, version = spec.rsplit("@", 1)
        packed = f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        Path(args[args.index("--pack-destination") + 1], packed).write_bytes(served)
        return ""

    monkeypatch.setattr(images, "_npm", npm)
    return calls


# --- one check for every pinned download -------------------------------------------------
def test_a_download_that_differs_from_its_pin_is_deleted_and_named(tmp_path: Path) -> None:
    good = tmp_path / "npm-10.9.9.tgz"
    good.write_bytes(b"as published")
    images.verify_download(good, integrity(b"as published"))
    assert good.exists()
    good.write_bytes(b"as served by someone else")
    with pytest.raises(ImageError) as refused:
        images.verify_download(good, integrity(b"as published"))
    message = str(refused.value)
    assert "npm-10.9.9.tgz" in message and integrity(b"as published") in message
    assert integrity(b"as served by someone else") in message, "the actual digest is named"
    assert not good.exists(), "a bad download must not stay where the next build finds it"


def test_a_pin_of_unknown_form_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.tgz").write_bytes(b"x")
    with pytest.raises(ImageError, match="is not sha256-<base64> or sha512-<base64>"):
        images.verify_download(tmp_path / "x.tgz", "md5-abc")


def test_a_tampered_npm_tarball_never_reaches_the_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    fake_npm_pack(monkeypatch, b"tampered")
    with pytest.raises(ImageError, match=r"npm-10\.9\.9\.tgz: downloaded file does not match its pin"):
        images.npm_tarball("10.9.9", integrity(b"published"))
    kept = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert kept == [], f"nothing of a refused download may stay: {kept}"


def test_an_npm_tarball_cached_before_it_was_checked_is_fetched_again(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    # What the cache held before pins: the same version's folder, stamped, with unchecked content.
    earlier = cache / "tools" / "npm-10.9.9"
    earlier.mkdir(parents=True)
    (earlier / ".stamp").touch()
    (earlier / "npm-10.9.9.tgz").write_bytes(b"whatever came then")
    calls = fake_npm_pack(monkeypatch, b"published")
    tarball = images.npm_tarball("10.9.9", integrity(b"published"))
    assert tarball.read_bytes() == b"published" and len(calls) == 1
    assert images.npm_tarball("10.9.9", integrity(b"published")) == tarball and len(calls) == 1, (
        "a checked tarball is fetched once"
    )


def test_pnpm_runs_from_its_checked_tarball(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    script = b"#!/usr/bin/env node\n"
    files = {"package/bin/pnpm.cjs": script, "package/package.json": b"{}"}
    served = npm_style_tarball(tmp_path / "pnpm.tgz", files).read_bytes()
    fake_npm_pack(monkeypatch, served)
    pnpm = images.pnpm_binary("10.11.0", integrity(served))
    assert pnpm.read_bytes() == script and os.access(pnpm, os.X_OK)
    with pytest.raises(ImageError, match=r"pnpm-10\.11\.0\.tgz: downloaded file does not match"):
        images.pnpm_binary("10.11.0", integrity(b"another pnpm"))


def test_the_npm_and_pnpm_pins_are_the_registrys_sha512() -> None:
    versions = pinned_versions()
    for key in ("PNPM_INTEGRITY", "IMAGE_NPM_INTEGRITY"):
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", versions.get(key, "")), (
            f"{key} in tools/versions.env"
        )


# --- uv -------------------------------------------------------------------------------
def test_the_image_builds_take_uv_from_the_hash_checked_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(images.rootfs, "run", lambda cmd, what, **kw: ran.append(list(cmd)) or "")
    monkeypatch.setattr(images, "require_tool", lambda name: Path("/cache/tools/uv-x/uv"))
    assert images.uv_binary() == Path("/cache/tools/uv-x/uv")
    assert ran == [[str(paths.REPO_ROOT / "scripts" / "tools.sh"), "uv"]]
    pins = UV_REQUIREMENTS.read_text()
    assert f"uv=={pinned_versions()['UV_VERSION']} " in pins and "--hash=sha256:" in pins


def test_a_uv_fetched_before_its_hashes_were_checked_is_not_used(tmp_path: Path, cache: Path) -> None:
    # scripts/tools.sh in a copy of the checkout, so its bin/ link is the copy's.
    checkout = tmp_path / "checkout"
    for name in ("scripts/tools.sh", "tools/versions.env", "tools/uv/requirements.txt"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(paths.REPO_ROOT / name, checkout / name)
    version = pinned_versions()["UV_VERSION"]
    key = hashlib.sha256(UV_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    for folder in (f"uv-{version}", f"uv-{version}-{key}"):  # unchecked (before), checked
        (cache / "tools" / folder).mkdir(parents=True)
        (cache / "tools" / folder / "uv").write_text(folder)
        (cache / "tools" / folder / ".stamp").touch()
    env = {**os.environ, "YUXI_K8S_CACHE": str(cache)}
    subprocess.run([str(checkout / "scripts/tools.sh"), "uv"], env=env, check=True, capture_output=True)
    assert (checkout / "bin" / "uv").read_text() == f"uv-{version}-{key}"


# --- debootstrap ----------------------------------------------------------------------
def test_debootstrap_checks_the_release_signature_against_debians_keyring(tmp_path: Path) -> None:
    cmd = oci.debootstrap_command(
        "trixie", tmp_path / "rootfs", oci.DEBIAN_MIRROR, ["tzdata"], oci.DEBIAN_KEYRING, tmp_path / "debs"
    )
    assert cmd[:2] == ["debootstrap", "--variant=minbase"]
    assert "--keyring=/usr/share/keyrings/debian-archive-keyring.gpg" in cmd
    assert "--force-check-gpg" in cmd, "a keyring that cannot be read must stop debootstrap, not warn"
    assert "--no-check-gpg" not in cmd
    assert cmd[-3:] == ["trixie", str(tmp_path / "rootfs"), oci.DEBIAN_MIRROR]


def test_debootstrap_does_not_start_without_the_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(oci, "ROOTFS_DIR", tmp_path / "rootfs")
    monkeypatch.setattr(oci, "DEBIAN_KEYRING", tmp_path / "no-keyring.gpg")
    monkeypatch.setattr(oci.os, "geteuid", lambda: 0)
    monkeypatch.setattr(oci.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(oci, "_run", lambda cmd, what, env=None: ran.append(list(cmd)))

    def no_apt(packages: list[str], **kw: object) -> None:
        assert packages == ["debian-archive-keyring"], "the missing keyring is installed first"
        raise apt.AptError("missing debian-archive-keyring, and this machine has no apt-get")

    monkeypatch.setattr(oci.apt, "install", no_apt)
    with pytest.raises(ImageError, match="debian-archive-keyring"):
        oci.debootstrap_rootfs("trixie", ["tzdata"])
    assert ran == [], "debootstrap must not run unchecked"


def test_a_missing_keyring_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as missing:
        oci.debian_keyring(tmp_path / "debian-archive-keyring.gpg")
    assert str(missing.value) == (
        f"{tmp_path / 'debian-archive-keyring.gpg'} is missing: debootstrap would not check the Debian "
        "archive's signature (apt-get install debian-archive-keyring)"
    )


# --- Python packages of the images ----------------------------------------------------------
def unhashed_pins(text: str) -> list[str]:
    """The ``name==version`` requirements of a pip requirements file that carry no --hash."""
    joined = text.replace("\\\n", " ")
    lines = [line.split("#", 1)[0].strip() for line in joined.splitlines()]
    return [line.split()[0] for line in lines if "==" in line and "--hash=sha256:" not in line]


@pytest.mark.parametrize("name", ["provisioner-constraints.txt", "milvus-constraints.txt"])
def test_every_pin_of_the_python_images_carries_its_hashes(name: str) -> None:
    text = (images.IMAGE_FILES / name).read_text()
    assert images.parse_pins(text), f"{name} pins nothing"
    assert unhashed_pins(text) == [], f"{name}: pins without --hash"


def test_the_provisioner_installs_only_hash_checked_files() -> None:
    (pinned, _), (upstream, _) = images.provisioner_installs("uv", "/app/.venv/bin/python", "/tmp/p")
    assert "--require-hashes" in pinned and pinned[-2:] == ["-r", "/tmp/p/constraints.txt"]
    # upstream's minimum versions cannot carry hashes: that install may only find them installed.
    assert {"--offline", "--no-cache"} <= set(upstream) and "/tmp/p/requirements.txt" in upstream
    assert "--index-url" not in upstream


def test_maven_fails_on_a_checksum_that_does_not_match() -> None:
    """Maven's default checksum policy only warns: the neo4j jars are copied strictly."""
    command = images.maven_copy_command("mvn", Path("/w/pom.xml"), Path("/cache/maven"), Path("/w/lib"))
    assert "--strict-checksums" in command
    assert "-c" not in command and "--lax-checksums" not in command
    assert command[-1] == "-DoutputDirectory=/w/lib"
