"""The images the local cluster and its smoke tests run, built here from local binaries.

- ``pause``: the sandbox ("infra") container, a tiny static C program written here.
- ``coredns``: the CoreDNS binary that ``scripts/tools.sh coredns`` builds.
- ``busybox``: Debian's static busybox (package ``busybox-static``) with applet
  links: ``sh``, ``wget``, ``nc``, ``nslookup``, ``httpd`` for the smoke tests.

Each is FROM scratch, named ``localhost/yuxi-k8s/<name>:<hash of inputs>`` and
cached by :mod:`yuxi_k8s.cluster.oci`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from yuxi_k8s.cluster import oci
from yuxi_k8s.pinned_tools import require_tool

REPOSITORY = "localhost/yuxi-k8s"

# Sleeps until told to stop and reaps zombies: all a pod sandbox needs to do.
PAUSE_C = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (getpid() != 1) fprintf(stderr, "pause: warning: not running as pid 1\n");
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) pause();
}
"""

BUSYBOX_APPLETS = (
    "sh", "cat", "echo", "ls", "mkdir", "rm", "sleep", "test", "true", "false", "wget",
    "nc", "nslookup", "httpd", "hostname", "id", "env", "grep", "sed", "touch", "date", "ip", "timeout",
)  # fmt: skip


def pause_image() -> oci.BuiltImage:
    """The sandbox image: the pause program compiled statically with gcc."""
    with tempfile.TemporaryDirectory(prefix="yuxi-pause-") as tmp:
        work = Path(tmp)
        (work / "pause.c").write_text(PAUSE_C)
        root = work / "root"
        root.mkdir()
        gcc = shutil.which("gcc")
        if gcc is None:
            raise oci.ImageError("compiling pause needs gcc (apt-get install gcc libc6-dev)")
        proc = subprocess.run(
            [gcc, "-Os", "-static", "-s", "-o", str(root / "pause"), str(work / "pause.c")],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise oci.ImageError(f"compiling pause failed: {proc.stderr.strip()[-300:]}")
        # gcc output is reproducible for the same source and compiler; the tag follows the layer.
        return oci.build_from_directory(
            root, f"{REPOSITORY}/pause", entrypoint=["/pause"], user="65535:65535"
        )


def busybox_image() -> oci.BuiltImage:
    """Debian's static busybox with the applets the tests use, running as a non-root user."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise oci.ImageError("busybox-static is not installed (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory(prefix="yuxi-busybox-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\nuser:x:65532:65532::/tmp:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\nuser:x:65532:\n")
        (root / "tmp").mkdir(mode=0o1777)
        (root / "tmp").chmod(0o1777)
        return oci.build_from_directory(root, f"{REPOSITORY}/busybox", cmd=["/bin/sh"], user="65532:65532")


def coredns_image() -> oci.BuiltImage:
    """CoreDNS from the pinned build, nothing else in the image."""
    with tempfile.TemporaryDirectory(prefix="yuxi-coredns-") as tmp:
        root = Path(tmp)
        shutil.copy2(require_tool("coredns"), root / "coredns")
        return oci.build_from_directory(root, f"{REPOSITORY}/coredns", entrypoint=["/coredns"])


def all_images() -> dict[str, oci.BuiltImage]:
    return {"pause": pause_image(), "coredns": coredns_image(), "busybox": busybox_image()}
