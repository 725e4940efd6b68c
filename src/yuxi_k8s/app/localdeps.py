"""The application's dependencies on loopback, started from the kit's own images' file trees.

For the db-tier tests and benchmarks that run the application's code against a real
dependency without a cluster (:mod:`yuxi_k8s.app.localrun` runs the application itself)::

    from yuxi_k8s.app import images, localdeps, source

    tree = images.image_tree(source.resolve(), "neo4j")
    with localdeps.neo4j_server(tree) as (uri, user, password):
        ...  # bolt://127.0.0.1:PORT, neo4j, a fresh password

Each server runs the image's own entry point as the image's user, ``chroot`` into the tree
in a private mount namespace (the host's ``/tmp`` and a ``/proc``), on a free loopback port,
with its data in a fresh folder under ``/tmp`` that is removed when the block ends. Needs
root on Linux (``unshare``, ``chroot``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from yuxi_k8s import procfs
from yuxi_k8s.app.images import NEO4J_COMMAND, NEO4J_JVM_MEMORY, NEO4J_UID
from yuxi_k8s.app.localrun import LocalRunError, free_port
from yuxi_k8s.cluster.oci import DEFAULT_PATH

NEO4J_USER = "neo4j"
NEO4J_READY = "neo4j: ready"  # the launcher's line once Bolt listens


def _chrooted(tree: Path, user: str) -> list[str]:
    """The command prefix that runs what follows in *tree* as *user* (``uid:gid``)."""
    missing = [tool for tool in ("unshare", "chroot", "mount") if shutil.which(tool) is None]
    if missing:
        raise LocalRunError(f"running an image tree needs {', '.join(missing)} (util-linux)")
    if os.geteuid() != 0:
        raise LocalRunError("running an image tree needs root (unshare, mount, chroot)")
    script = (
        'set -e; t="$1"; u="$2"; shift 2; '
        'mount --bind /tmp "$t/tmp"; '
        'mount -t proc proc "$t/proc"; '
        'exec chroot --userspec="$u" "$t" "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", str(tree), user]


def neo4j_command(tree: Path) -> list[str]:
    """The neo4j image's entry point, run in *tree* (``images.image_tree(src, "neo4j")``) as its user."""
    launcher = tree / "opt/neo4j/launcher/Launcher.class"
    if not launcher.is_file():
        raise LocalRunError(f"{tree} is not a neo4j image tree ({launcher} missing)")
    return [*_chrooted(tree, f"{NEO4J_UID}:{NEO4J_UID}"), *NEO4J_COMMAND]


def _tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def neo4j_server(tree: Path, *, timeout: float = 240) -> Iterator[tuple[str, str, str]]:
    """The neo4j image's launcher on a free loopback port: ``(bolt URI, user, password)``.

    *tree* is ``images.image_tree(src, "neo4j")``. Its log is ``neo4j.log`` beside the data
    folder while it runs; a server that exits or does not answer within *timeout* seconds
    is a :class:`LocalRunError` with the log's last lines.
    """
    from yuxi_k8s.cluster.kube import poll

    command = neo4j_command(tree)
    port = free_port()
    password = secrets.token_urlsafe(18)
    work = Path(tempfile.mkdtemp(prefix="yuxi-neo4j-", dir="/tmp"))
    work.chmod(0o755)  # the server's user passes through to its data
    data = work / "data"
    data.mkdir()
    os.chown(data, NEO4J_UID, NEO4J_UID)
    log = work / "neo4j.log"
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "JDK_JAVA_OPTIONS": NEO4J_JVM_MEMORY,
        "NEO4J_AUTH": f"{NEO4J_USER}/{password}",
        "NEO4J_server_bolt_listen__address": f"127.0.0.1:{port}",
        "NEO4J_DATA": str(data),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise LocalRunError(f"neo4j exited ({proc.returncode}):\n{_tail(log)}")
            return NEO4J_READY in log.read_text(errors="replace") and _listening(port)

        try:
            poll(f"neo4j on 127.0.0.1:{port}", ready, timeout, interval=0.5)
        except TimeoutError as exc:
            raise LocalRunError(f"{exc}:\n{_tail(log)}") from None
        yield f"bolt://127.0.0.1:{port}", NEO4J_USER, password
    finally:
        procfs.stop_child(proc, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["NEO4J_READY", "NEO4J_USER", "neo4j_command", "neo4j_server"]
