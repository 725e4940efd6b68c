"""The application's dependencies on loopback, from the kit's own images' file trees (app-tier tests).

API::

    from yuxi_k8s.app import images, localdeps

    tree = images.image_tree(src, "milvus")
    with localdeps.milvus_server(tree) as uri:      # "http://127.0.0.1:<free port>"
        ...                                         # MILVUS_URI for the app's processes

The server is the milvus image's own entry point (``yuxi-milvus``: milvus-lite's gRPC
server, docs in src/yuxi_k8s/app/imagefiles/yuxi-milvus) run in its tree by
:func:`yuxi_k8s.app.localrun.chroot_runner`, so a test exercises what the e2e tier
deploys. Needs root on Linux, like the other chroot runs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from yuxi_k8s import procfs
from yuxi_k8s.app.localrun import chroot_runner, free_port
from yuxi_k8s.cluster.kube import poll

MILVUS_ENTRYPOINT = ("yuxi-milvus",)
PUBLISHED_MILVUS_LITE = ("milvus-lite", "server")  # without the kit's mends, to show what they mend


@contextlib.contextmanager
def milvus_server(
    tree: Path,
    data_dir: Path | None = None,
    *,
    entrypoint: Sequence[str] = MILVUS_ENTRYPOINT,
    timeout: float = 60,
) -> Iterator[str]:
    """milvus-lite's server from the milvus image *tree* on a free loopback port; yields its URI.

    *data_dir* (a path under /tmp, which the chroot shares with this host) keeps the data
    across servers, e.g. to start a second one on what the first wrote; by default a
    fresh folder removed afterwards. The server's output is in ``<data_dir>.log``.
    """
    runner = chroot_runner(tree)
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="yuxi-milvus-"))) / "data"
        port = free_port()
        log_path = data_dir.parent / f"{data_dir.name}.log"
        log = stack.enter_context(log_path.open("a"))
        args = [*entrypoint, "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
        proc = runner.popen(args, {}, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(procfs.stop_child, proc)

        def listening() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{' '.join(entrypoint)} exited ({proc.returncode}): {' | '.join(tail)}")
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex(("127.0.0.1", port)) == 0

        poll(f"{' '.join(entrypoint)} to listen on 127.0.0.1:{port}", listening, timeout, interval=0.2)
        yield f"http://127.0.0.1:{port}"
