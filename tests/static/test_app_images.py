"""The application images' pure parts: where the source comes from and how bad input is refused,
the lockfile rewrite, image names and pins, the registry client's parsing, the CLI's error lines.

Nothing here builds an image (tests/cluster/test_app_images.py does); fake source trees are
made in tmp_path with the contract's marker files, and git runs on local repositories only.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from yuxi_k8s.app import contract, images, registry, source
from yuxi_k8s.app.commands import images_in
from yuxi_k8s.cli import main
from yuxi_k8s.cluster import oci
from yuxi_k8s.cluster.oci import BuiltImage, ImageError
from yuxi_k8s.pinned_tools import pinned_versions

MARKERS = contract.load().source["markers"]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, so every test sees what (if anything) it left behind."""
    root = tmp_path / "cache"
    monkeypatch.setenv("YUXI_K8S_CACHE", str(root))
    monkeypatch.delenv(source.ENV, raising=False)
    return root


def fake_tree(root: Path, version: str = "0.6.1") -> Path:
    """The contract's marker files and a backend/pyproject.toml stating *version*."""
    for marker in MARKERS:
        (root / marker).parent.mkdir(parents=True, exist_ok=True)
        (root / marker).write_text("# marker\n")
    (root / "backend/pyproject.toml").write_text(
        f'[project]\nname = "yuxi-workspace"\nversion = "{version}"\n'
    )
    return root


def tarball_of(tree: Path, out: Path, prefix: str = "yuxi-know-v0.6.1") -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(tree, arcname=prefix)
    return out


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


def cache_entries(cache: Path) -> list[str]:
    folder = cache / "app-source"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- source --------------------------------------------------------------------------
def test_a_checkout_folder_is_used_in_place(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "yuxi")
    src = source.resolve(str(tree))
    assert src.tree == tree.resolve() and src.version == "0.6.1"
    assert re.fullmatch(r"[0-9a-f]{64}", src.key)
    (tree / "web/package.json").write_text("changed\n")
    assert source.resolve(str(tree)).key != src.key, "the key must follow the content"


def test_a_tarball_unpacks_once_into_the_cache_keyed_by_its_digest(tmp_path: Path, cache: Path) -> None:
    archive = tarball_of(fake_tree(tmp_path / "t"), tmp_path / "yuxi.tar.gz")
    src = source.resolve(str(archive))
    assert src.key == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert src.tree.name == "yuxi-know-v0.6.1" and (src.tree / "backend/uv.lock").is_file()
    assert cache_entries(cache) == [f"tar-{src.key[:24]}"]
    marker = src.tree / "backend/uv.lock"
    marker.write_text("touched\n")  # a second resolve reuses the unpacked tree as it is
    assert source.resolve(str(archive)).tree == src.tree and marker.read_text() == "touched\n"


def test_the_environment_setting_is_used_when_no_argument_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = fake_tree(tmp_path / "yuxi")
    monkeypatch.setenv(source.ENV, str(tree))
    assert source.resolve().tree == tree.resolve()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing", r"no such file or folder"),
        (lambda p: p, r"is not a Yuxi-Know source tree \(missing backend/package/yuxi/config/app.py"),
        (lambda p: fake_tree(p / "old", "0.5.0"), r"is Yuxi-Know 0\.5\.0, but this kit deploys 0\.6\.1"),
        (lambda p: (p / "notes.txt", (p / "notes.txt").write_text("x"))[0], r"not a tarball"),
    ],
    ids=["missing path", "not a tree", "wrong version", "not a tarball"],
)
def test_bad_folders_and_paths_are_one_line(tmp_path: Path, make, expected: str) -> None:  # type: ignore[no-untyped-def]
    target = make(tmp_path)
    with pytest.raises(source.SourceError) as caught:
        source.resolve(str(target))
    assert re.search(expected, one_line(caught.value)), caught.value
    assert str(target) in str(caught.value), "the message names what the user gave"


def test_a_corrupt_tarball_is_one_line_and_leaves_nothing(tmp_path: Path, cache: Path) -> None:
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not gzip at all\n" * 10)
    with pytest.raises(source.SourceError) as caught:
        source.resolve(str(garbage))
    assert "not a readable tarball" in one_line(caught.value)
    good = tarball_of(fake_tree(tmp_path / "t"), tmp_path / "good.tar.gz").read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(source.SourceError) as caught:
        source.resolve(str(truncated))
    assert "not a readable tarball" in one_line(caught.value)
    assert cache_entries(cache) == [], "a failed unpack must leave nothing in the cache"


def test_a_tarball_of_another_version_is_refused_and_not_cached(tmp_path: Path, cache: Path) -> None:
    archive = tarball_of(fake_tree(tmp_path / "t", "0.6.2"), tmp_path / "yuxi-0.6.2.tar.gz")
    with pytest.raises(source.SourceError) as caught:
        source.resolve(str(archive))
    assert f"{archive} is Yuxi-Know 0.6.2, but this kit deploys 0.6.1" in one_line(caught.value)
    assert cache_entries(cache) == []


def test_a_tarball_with_unsafe_members_is_refused(tmp_path: Path, cache: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"owned\n"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(source.SourceError) as caught:
        source.resolve(str(archive))
    assert "not a readable tarball" in one_line(caught.value)
    assert not (tmp_path / "cache" / "outside.txt").exists() and cache_entries(cache) == []


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def test_a_git_url_is_cloned_at_the_pinned_tag(tmp_path: Path, cache: Path) -> None:
    repo = fake_tree(tmp_path / "repo")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "x")
    _git(repo, "tag", "v0.6.1")
    src = source.resolve(f"file://{repo}")
    assert src.version == "0.6.1" and (src.tree / "backend/server/main.py").is_file()
    assert len(cache_entries(cache)) == 1
    with pytest.raises(source.SourceError) as caught:
        source.resolve(f"file://{repo}#v9.9.9")
    assert "cannot clone v9.9.9 of file://" in one_line(caught.value)
    assert len(cache_entries(cache)) == 1, "a failed clone must leave nothing in the cache"


def test_a_url_that_cannot_be_cloned_is_one_line(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(source.SourceError) as caught:
        source.resolve(f"file://{tmp_path}/no-such-repo.git")
    assert "cannot clone v0.6.1 of file://" in one_line(caught.value)
    assert cache_entries(cache) == []


# --- lockfiles -------------------------------------------------------------------------
LOCK = """\
[[package]]
name = "accelerate"
version = "1.13.0"
source = { registry = "https://pypi.tuna.tsinghua.edu.cn/simple" }
sdist = { url = "https://pypi.tuna.tsinghua.edu.cn/packages/ca/14/787e/accelerate-1.13.0.tar.gz", hash = "sha256:d631b4e0f5b3de4aff2d7e9e6857d164810dfc3237d54d017f075122d057b236", size = 402835 }
wheels = [
    { url = "https://pypi.tuna.tsinghua.edu.cn/packages/7e/46/02ac/accelerate-1.13.0-py3-none-any.whl", hash = "sha256:cf1a3efb96c18f7b152eb0fa7490f3710b19c3f395699358f08decca2b8b62e0", size = 383744 },
]

[[package]]
name = "torch"
version = "2.8.0+cpu"
source = { registry = "https://download.pytorch.org/whl/cpu" }
wheels = [
    { url = "https://download.pytorch.org/whl/cpu/torch-2.8.0%2Bcpu-cp313-cp313-manylinux_2_28_x86_64.whl", hash = "sha256:0000000000000000000000000000000000000000000000000000000000000001" },
]
"""  # noqa: E501


def test_the_lock_rewrite_points_at_pypi_and_keeps_every_hash() -> None:
    rewritten, count = images.pypi_lock(LOCK)
    assert count == 3
    assert "tuna" not in rewritten
    assert 'registry = "https://pypi.org/simple"' in rewritten
    assert (
        "https://files.pythonhosted.org/packages/7e/46/02ac/accelerate-1.13.0-py3-none-any.whl" in rewritten
    )
    hashes = re.compile(r'hash = "(sha256:[0-9a-f]{64})", size = (\d+)|hash = "(sha256:[0-9a-f]{64})"')
    assert hashes.findall(rewritten) == hashes.findall(LOCK)
    assert "https://download.pytorch.org/whl/cpu" in rewritten, "torch's own index is left as it is"
    assert images.pypi_lock(rewritten) == (rewritten, 0), "idempotent"


def test_npm_mirror_urls_become_the_public_registry() -> None:
    lock = (
        "resolution: {integrity: sha512-abc, tarball: https://registry.npmmirror.com/vue/-/vue-3.5.29.tgz}\n"
    )
    rewritten, count = images.rewrite_mirrors(lock, images.NPM_MIRRORS)
    assert count == 1 and "https://registry.npmjs.org/vue/-/vue-3.5.29.tgz" in rewritten
    assert "sha512-abc" in rewritten


def test_the_web_build_turns_the_runs_api_on_and_keys_its_cache_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Row 17 of the per-process state: the chat page sends through the runs API only with this flag.
    assert images.WEB_BUILD_ENV == {"VITE_USE_RUNS_API": "true"}
    host = {"PATH": "/usr/bin", "VITE_USE_RUNS_API": "false", "VITE_API_URL": "http://elsewhere"}
    env = images.web_build_env(host)
    assert env == {
        "PATH": "/usr/bin",
        "CI": "1",
        "npm_config_registry": images.NPM_REGISTRY,
        "VITE_USE_RUNS_API": "true",
    }, "the host's own VITE_* never reach the build"
    key = images.web_dist_key("tree", "10.0.0", 20)
    assert len(key) == 20 and key == images.web_dist_key("tree", "10.0.0", 20)
    monkeypatch.setattr(images, "WEB_BUILD_ENV", {"VITE_USE_RUNS_API": "false"})
    assert images.web_dist_key("tree", "10.0.0", 20) != key, "a build without the flag is another build"


def test_the_pinned_web_reads_the_runs_flag_and_resumes_from_the_last_seq(pinned_tree: Path) -> None:
    web = pinned_tree / "web" / "src"
    chat = (web / "components" / "AgentChatComponent.vue").read_text(encoding="utf-8")
    assert "import.meta.env.VITE_USE_RUNS_API === 'true'" in chat, "the flag the web build sets moved"
    client = (web / "apis" / "agent_api.js").read_text(encoding="utf-8")
    assert "/api/chat/runs/${runId}/events?after_seq=" in client
    stream = (web / "composables" / "useAgentRunStream.js").read_text(encoding="utf-8")
    assert "startRunStream(threadId, runId, ts.runLastSeq)" in stream, "the reconnect from the last seq"


# --- names, pins, versions ----------------------------------------------------------------
def test_image_names_follow_the_registry_prefix_and_the_manifests() -> None:
    assert (
        images.reference(images.DEFAULT_REGISTRY, "api", "0.6.1") == "localhost/yuxi-k8s/yuxi-know-api:0.6.1"
    )
    assert images.reference("registry.example.com:5000/team/", "web", "0.6.1") == (
        "registry.example.com:5000/team/yuxi-know-web:0.6.1"
    )
    assert set(images.REPOSITORIES) == set(images.IMAGES) == set(images.MANIFEST_NAMES)
    for bad in ("", "UPPER/case", "host/with space", "host//double", "-leading/dash"):
        with pytest.raises(ImageError) as caught:
            images.check_registry(bad)
        assert "HOST[:PORT]/PREFIX" in one_line(caught.value)


def test_the_names_match_what_the_manifests_use() -> None:
    """The manifests name the app images by these short names (base/, components/worker)."""
    c = contract.load()
    for component in ("api", "web", "sandbox-provisioner"):
        assert c.image(component) == images.REPOSITORIES[component]
        assert c.image(component) in images.MANIFEST_NAMES[component]


def test_only_selects_known_images_in_build_order() -> None:
    assert images.select(None) == list(images.IMAGES)
    assert images.select(["minio", "api"]) == ["api", "minio"]
    with pytest.raises(ImageError) as caught:
        images.select(["api", "nginx"])
    assert "unknown image nginx (known: api, web," in one_line(caught.value)


def test_kustomize_pins_name_every_manifest_image_by_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    built = {"api": BuiltImage("r/yuxi-know-api:0.6.1", tmp_path, digest)}
    assert images.kustomize_pins(built, "reg.example/p") == [
        f"kustomize edit set image yuxi-know-api=reg.example/p/yuxi-know-api@{digest}",
    ]
    block = yaml.safe_load(images.kustomization_images(built, "reg.example/p"))
    pin = {"name": "yuxi-know-api", "newName": "reg.example/p/yuxi-know-api", "digest": digest}
    assert block == {"images": [pin]}


def test_debian_versions_become_tags() -> None:
    assert images.deb_version("5:8.0.2-3+deb13u3") == "8.0.2"
    assert images.deb_version("17.12-0+deb13u1") == "17.12"
    assert images.deb_version("17+278+deb13u1") == "17+278+deb13u1"


def test_pins_parse_freeze_and_constraints_lines() -> None:
    text = (
        "-e file:///app/package\nSQLAlchemy==2.0.48\npsycopg[binary]==3.3.3 ; python_version>'3'\n# c\nx>=1\n"
    )
    assert images.parse_pins(text) == {"sqlalchemy": "2.0.48", "psycopg": "3.3.3"}


def test_the_versions_the_builds_pin_are_set() -> None:
    pinned = pinned_versions()
    for key in ("UV_VERSION", "PNPM_VERSION", "IMAGE_NPM_VERSION", "MINIO_VERSION"):
        assert pinned.get(key), f"tools/versions.env has no {key}"
    assert re.fullmatch(r"v0\.0\.0-\d{14}-[0-9a-f]{12}", pinned["MINIO_VERSION"])
    constraints = images.parse_pins((images.IMAGE_FILES / "provisioner-constraints.txt").read_text())
    assert {"fastapi", "uvicorn", "kubernetes", "docker"} <= set(constraints)


def test_images_list_collects_every_container_and_cnpg_image() -> None:
    pod = {"spec": {"initContainers": [{"image": "init:1"}], "containers": [{"image": "main:1"}]}}
    objects = [
        {"kind": "Deployment", "spec": {"template": pod}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"image": "cron:1"}]}}}}}},
        {"kind": "Pod", "spec": {"containers": [{"image": "pod:1"}]}},
        {"kind": "Cluster", "apiVersion": "postgresql.cnpg.io/v1", "spec": {"imageName": "pg:16"}},
        {"kind": "ConfigMap", "data": {"image": "not-an-image"}},
    ]  # fmt: skip
    assert images_in(objects) == {"init:1", "main:1", "cron:1", "pod:1", "pg:16"}


# --- registry client -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "host", "repository", "tag"),
    [
        ("localhost:5000/yuxi-k8s/yuxi-know-api:0.6.1", "localhost:5000", "yuxi-k8s/yuxi-know-api", "0.6.1"),
        ("127.0.0.1:41234/a/b:v0.0.0-2026", "127.0.0.1:41234", "a/b", "v0.0.0-2026"),
        ("registry.example.com/team/web:1", "registry.example.com", "team/web", "1"),
        ("docker.io/library/redis:7", "registry-1.docker.io", "library/redis", "7"),
        ("redis:7", "registry-1.docker.io", "library/redis", "7"),
        ("team/app:1", "registry-1.docker.io", "team/app", "1"),
    ],
)
def test_references_parse(ref: str, host: str, repository: str, tag: str) -> None:
    assert registry.parse_reference(ref) == registry.Reference(host, repository, tag)


def test_bad_references_are_one_line() -> None:
    for bad in ("no-tag", "host/Repo:1", "host/app@sha256:" + "0" * 64):
        with pytest.raises(registry.RegistryError) as caught:
            registry.parse_reference(bad)
        one_line(caught.value)


def test_only_loopback_registries_are_plain_http() -> None:
    assert registry.scheme("localhost:5000") == "http"
    assert registry.scheme("127.0.0.1:5000") == "http"
    assert registry.scheme("[::1]:5000") == "http"
    assert registry.scheme("10.0.0.1:5000") == "https"
    assert registry.scheme("registry.example.com") == "https"


def test_challenges_parse() -> None:
    header = 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="x"'
    assert registry.parse_challenge(header) == (
        "bearer",
        {"realm": "https://auth.example.com/token", "service": "registry.example.com", "scope": "x"},
    )
    assert registry.parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})


def test_credentials_come_from_the_environment_then_the_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YUXI_K8S_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("YUXI_K8S_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry.credentials("reg.example") is None
    auth = base64.b64encode(b"alice:s3cret:with:colons").decode()
    hub = {"username": "bob", "password": "pw"}
    auths = {"https://reg.example": {"auth": auth}, "https://index.docker.io/v1/": hub}
    (tmp_path / "config.json").write_text(json.dumps({"auths": auths}))
    assert registry.credentials("reg.example") == ("alice", "s3cret:with:colons")
    assert registry.credentials("registry-1.docker.io") == ("bob", "pw")
    monkeypatch.setenv("YUXI_K8S_REGISTRY_USERNAME", "env")
    monkeypatch.setenv("YUXI_K8S_REGISTRY_PASSWORD", "pw2")
    assert registry.credentials("reg.example") == ("env", "pw2")


def test_the_archive_reader_finds_the_manifest_and_its_blobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oci, "IMAGES_DIR", tmp_path / "images")
    monkeypatch.setattr(oci, "LAYERS_DIR", tmp_path / "layers")
    (tmp_path / "stage/bin").mkdir(parents=True)
    (tmp_path / "stage/bin/tool").write_text("x")
    image = oci.build_from_directory(tmp_path / "stage", "localhost/test/tool", tag="1")
    content = registry.read_archive(image.archive)
    assert content.digest == image.digest == "sha256:" + hashlib.sha256(content.manifest).hexdigest()
    manifest = json.loads(content.manifest)
    assert content.blobs == [manifest["config"]["digest"], manifest["layers"][0]["digest"]]
    broken = tmp_path / "broken.tar"
    broken.write_bytes(gzip.compress(b"nope"))
    with pytest.raises(registry.RegistryError) as caught:
        registry.read_archive(broken)
    assert "not an OCI image archive" in one_line(caught.value)


# --- CLI -----------------------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["images", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [("--only", "api,nope"), ("--registry", "Not/Valid"), ("--source", str(tmp_path / "missing"))]
    for args in cases:
        code, out, err = run_cli(capsys, "build", *args)
        assert code == 1 and out == "", (args, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("yuxi-k8s images: error: "), err
        if os.geteuid() != 0:
            assert "needs root" in err
    if os.geteuid() == 0:
        expected = ("unknown image nope", "HOST[:PORT]/PREFIX", "no such file or folder")
        for args, words in zip(cases, expected, strict=True):
            assert words in run_cli(capsys, "build", *args)[2]


def test_an_archive_names_its_image_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_into_containerd skips an import when containerd already holds this name at this digest."""
    from yuxi_k8s.cluster import oci

    monkeypatch.setattr(oci, "IMAGES_DIR", tmp_path / "images")
    monkeypatch.setattr(oci, "LAYERS_DIR", tmp_path / "layers")
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello").write_text("hi\n")
    built = oci.build_from_directory(root, "localhost/yuxi-k8s/test", tag="t1")
    assert oci.archive_reference(built.archive) == ("localhost/yuxi-k8s/test:t1", built.digest)
    assert oci.archive_reference(tmp_path / "missing.tar") is None
