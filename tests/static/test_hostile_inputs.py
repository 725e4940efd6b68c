"""Hostile input to `yuxi-k8s validate`: remote resources it would fetch, a YAML alias bomb, and
credentials its reports would print (issue 20, items 10-12)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support import require_schemas, require_tools
from yuxi_k8s.cli import main
from yuxi_k8s.validate.render import Rendered, render_one

T = TypeVar("T")
CLEAN = Path(__file__).parent / "clean"
# A 342-byte "billion laughs": nine levels of nine aliases, 9**9 strings once expanded.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
SECRET = "hunter2-Zq8Xw4Lp0Rt"


@pytest.fixture(autouse=True)
def tools() -> None:
    require_tools("kubectl")


@dataclass
class SilentServer:
    """A loopback server that accepts connections and never answers: a GET to it waits forever."""

    sock: socket.socket
    connected: threading.Event = field(default_factory=threading.Event)
    held: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed at teardown
            self.held.append(conn)
            self.connected.set()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = SilentServer(sock)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); closing the held connections ends any GET
    sock.close()
    for conn in server.held:
        conn.close()
    thread.join()


def watching(server: SilentServer, call: Callable[[], T]) -> T:
    """*call*'s result, polling *server* meanwhile: fail at once if the validator connects to it (it
    would then wait forever; the fixture's teardown closes the connection, which ends that wait)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(call)
        while not future.done():
            if server.connected.wait(0.05):
                pytest.fail(f"the validator connected to {server.url} to fetch a remote resource")
        return future.result()
    finally:
        pool.shutdown(wait=False)


def render_watching(path: Path, server: SilentServer) -> Rendered:
    return watching(server, lambda: render_one(str(path)))


def kustomization(folder: Path, *resources: str, **fields: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"resources": list(resources), **fields}
    (folder / "kustomization.yaml").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "entry",
    [
        "{url}/app.yaml",
        "{url}/org/repo//base?ref=v1",
        "git@127.0.0.1:org/repo.git//base",
        "github.com/org/repo//base?ref=main",
    ],
)
def test_remote_resource_in_a_nested_layer_is_refused_without_fetching(
    tmp_path: Path, silent_server: SilentServer, entry: str
) -> None:
    remote = entry.format(url=silent_server.url)
    shutil.copytree(CLEAN, tmp_path / "prod" / "base")
    kustomization(tmp_path / "prod" / "extra", remote)
    kustomization(tmp_path / "prod", "base", "extra")
    rendered = render_watching(tmp_path / "prod", silent_server)
    assert rendered.error is not None and "refused" in rendered.error and remote in rendered.error
    assert not rendered.objects


def test_remote_file_of_a_generator_is_refused_without_fetching(
    tmp_path: Path, silent_server: SilentServer
) -> None:
    shutil.copytree(CLEAN, tmp_path / "prod")
    kustomization(
        tmp_path / "prod",
        "app.yaml",
        configMapGenerator=[{"name": "x", "files": [f"conf={silent_server.url}/x.conf"]}],
    )
    rendered = render_watching(tmp_path / "prod", silent_server)
    assert rendered.error is not None and "configMapGenerator" in rendered.error


def test_remote_resource_exits_1_in_one_line(
    tmp_path: Path, silent_server: SilentServer, capsys: pytest.CaptureFixture[str]
) -> None:
    require_schemas()
    shutil.copytree(CLEAN, tmp_path / "prod")
    kustomization(tmp_path / "prod", "app.yaml", f"{silent_server.url}/more.yaml")
    assert watching(silent_server, lambda: main(["validate", "-q", str(tmp_path / "prod")])) == 1
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if "RENDER" in ln]
    assert "refused" in line and not silent_server.connected.is_set()


def test_alias_bomb_as_a_plain_manifest_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    data = ALIAS_BOMB.replace("\n", "\n  ")
    bomb.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n  {data}")
    assert len(bomb.read_bytes()) < 1024
    rendered = render_one(str(bomb))
    assert rendered.error is not None and "aliases" in rendered.error
    assert not rendered.objects


def test_alias_bomb_in_a_kustomization_is_refused(tmp_path: Path) -> None:
    shutil.copytree(CLEAN, tmp_path / "prod")
    (tmp_path / "prod" / "kustomization.yaml").write_text(f"resources: [app.yaml]\n{ALIAS_BOMB}")
    rendered = render_one(str(tmp_path / "prod"))
    assert rendered.error is not None and "aliases" in rendered.error


def test_a_few_aliases_are_read(tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: &labels {x: y, z: w}\n"
        "  annotations: *labels\ndata: {k: v}\n"
    )
    rendered = render_one(str(manifest))
    assert rendered.error is None
    assert rendered.objects[0]["metadata"]["annotations"] == {"x": "y", "z": "w"}


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_reports_say_where_a_credential_is_never_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    require_schemas()
    overlay = tmp_path / "prod"
    shutil.copytree(CLEAN, overlay)
    app = overlay / "app.yaml"
    image = "image: ghcr.io/xerrors/yuxi-know-api:0.6.0@"
    text = app.read_text()
    at = text.index(image)
    indent = text[text.rindex("\n", 0, at) + 1 : at]
    app.write_text(text[:at] + f'args: ["--verbose", "--password={SECRET}"]\n{indent}' + text[at:])
    assert main(["validate", "-q", "--format", fmt, str(overlay)]) == 1
    out = capsys.readouterr().out
    assert "YK-CRED-002" in out
    assert SECRET[:4] not in out, f"the {fmt} report shows part of the credential"
    assert "args[1]" in out
