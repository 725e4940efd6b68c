"""The kit's web nginx (base/config/nginx) on loopback, in front of app processes on loopback.

The nginx binary and mime types come from the web image's file tree (chroot, as
the app's processes do); the configuration is the kit's own file with only what
ties it to a pod changed: the listen ports, the paths it writes, and
``proxy_pass`` to an upstream of the given app processes (round robin, as the
api Service spreads connections).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from yuxi_k8s import paths
from yuxi_k8s.app.localrun import free_port
from yuxi_k8s.cluster.kube import poll

KIT_CONFIG = paths.repo_root() / "base/config/nginx"
INCLUDE_DIR = "/etc/nginx/yuxi/"


def render(work: Path, port: int, upstreams: list[str]) -> Path:
    """The kit's nginx.conf for loopback, with its included files, under *work*."""
    work.mkdir(parents=True, exist_ok=True)
    conf = (KIT_CONFIG / "nginx.conf").read_text()
    for name in ("api-proxy-pass.conf", "minio-proxy-pass.conf", "real-ip.conf"):
        shutil.copy(KIT_CONFIG / name, work / name)
    (work / "api-proxy-pass.conf").write_text("proxy_pass http://yuxi_k8s_api/api/;\n")
    (work / "minio-proxy-pass.conf").write_text("proxy_pass http://127.0.0.1:9;\n")
    servers = "".join(f"        server {u};\n" for u in upstreams)
    conf = conf.replace("/tmp/", f"{work}/")  # what nginx writes (before: work is under /tmp too)
    conf = conf.replace(INCLUDE_DIR, f"{work}/")
    conf = re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", conf)
    conf = re.sub(r"listen 9000;", f"listen 127.0.0.1:{free_port()};", conf)
    conf = conf.replace("http {", "http {\n    upstream yuxi_k8s_api {\n" + servers + "    }\n", 1)
    conf = "user root;\n" + conf  # the chroot has no account for nginx's workers; loopback only
    target = work / "nginx.conf"
    target.write_text(conf)
    return target


class KitNginx:
    """nginx from *tree* serving the kit's config on a free loopback port."""

    def __init__(self, tree: Path, work: Path, upstreams: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = render(work, self.port, upstreams)
        self.log = work / "nginx.log"
        self._log = self.log.open("w")
        script = (
            'set -e; t="$1"; shift; mount --bind /tmp "$t/tmp"; mount -t proc proc "$t/proc"; '
            'exec chroot "$t" "$@"'
        )
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
        command += [str(tree), "/usr/sbin/nginx", "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        poll(f"nginx on {self.url}", ready, timeout, interval=0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
