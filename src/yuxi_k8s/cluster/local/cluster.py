"""Bring the local single-node cluster up, report on it, and take it down.

``up`` is idempotent: a healthy cluster is left alone; anything else (a partial
start, or the leftovers of a killed run: mounts, iptables chains, the bridge,
containerd shims) is cleaned first. Every step prints its duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import ssl
import struct
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from yuxi_k8s import apt, procfs
from yuxi_k8s.cluster import oci, system_images
from yuxi_k8s.cluster.kube import Kubectl, KubectlError, poll
from yuxi_k8s.cluster.local import addons, host, layout, pki, processes
from yuxi_k8s.paths import bin_dir

# Host processes in start order; `down` stops them in reverse.
COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kube-router",
    "provisioner",
)
BINARIES = (
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kube-router",
    "coredns",
)
DEBIAN_PACKAGES = {
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "ipset": "/usr/sbin/ipset",
    "conntrack": "/usr/sbin/conntrack",
    "busybox-static": "/bin/busybox",
    "gcc": "/usr/bin/gcc",
    "openssl": "/usr/bin/openssl",
}


class ClusterError(RuntimeError):
    """The cluster cannot be brought up or down; the message is one readable line."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    say(f"==> {title} ({time.monotonic() - start:.1f} s)")


@contextlib.contextmanager
def exclusive(timeout: float = 900) -> Iterator[None]:
    """One `up` or `down` at a time on this host (a test session and a user may race).

    The lock is an abstract unix socket: it leaves no file behind and is released
    when its holder dies, however it dies."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            lock.bind("\0yuxi-k8s-local-cluster")
            break
        except OSError:
            if time.monotonic() > deadline:
                lock.close()
                raise ClusterError("another `cluster up/down` has held the lock for too long") from None
            if not announced:
                say("==> waiting for another `cluster up/down` on this host to finish")
                announced = True
            time.sleep(1)
    try:
        yield
    finally:
        lock.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.3) -> None:
    try:
        # Any exception is "not ready yet": connection refused, 503, missing object...
        poll(what, check, timeout, interval, retry_on=(Exception,))
    except TimeoutError as exc:
        raise ClusterError(f"{exc}; logs in {layout.LOGS}") from None


def check_host() -> None:
    if platform.system() != "Linux":
        raise ClusterError(
            f"the local cluster needs Linux (this is {platform.system()}); use kind or existing"
        )
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (it runs containerd, the kubelet and iptables)")
    # ip, iptables, ipset and mount live in sbin; a caller's PATH may lack it (the
    # components inherit this PATH and call them too).
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d] or ["/usr/bin", "/bin"]
    os.environ["PATH"] = os.pathsep.join(
        path + [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path]
    )


def binary(name: str) -> str:
    path = bin_dir() / name
    if not path.exists():
        raise ClusterError(f"{name} is not built: run `make tools` (scripts/tools.sh all)")
    return str(path.resolve())


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    """kubectl with the local cluster's admin kubeconfig; any failure is a ClusterError."""
    try:
        proc = Kubectl(layout.KUBECONFIG).run(*args, input=input, check=False, timeout=60)
    except KubectlError as exc:  # no kubectl at all
        raise ClusterError(str(exc)) from None
    if check and proc.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def ensure_packages() -> None:
    try:
        apt.install(apt.missing(DEBIAN_PACKAGES))
    except apt.AptError as exc:
        raise ClusterError(str(exc)) from None


# --- health checks -----------------------------------------------------------
def _https_ok(url: str, ca: Path, cert: Path, key: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        return bool(resp.status == 200)


def dns_answers(name: str = f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}") -> bool:
    """One A query to the cluster DNS Service from the host; True when it returns an address."""
    query = struct.pack(">HHHHHH", 0x5975, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query, (layout.DNS_SERVICE_IP, 53))
        reply, _ = sock.recvfrom(512)
    rcode = reply[3] & 0x0F
    answers = struct.unpack(">H", reply[6:8])[0]
    return rcode == 0 and answers > 0


def node_ready() -> bool:
    out = kubectl("get", "node", layout.NODE_NAME, "-o", "json")
    conditions = json.loads(out)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- configuration files -----------------------------------------------------
def containerd_config(sandbox_image: str) -> str:
    return f"""\
version = 3
root = "{layout.CONTAINERD_ROOT}"
state = "{layout.CONTAINERD_STATE}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "{layout.CONTAINERD_SOCKET}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{layout.CONTAINERD_ROOT}/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj:
  # keep containers at or above containerd's own instead of failing in runc.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        # Debian's runc: crun refuses this host's hybrid cgroup layout.
        BinaryName = "{DEBIAN_PACKAGES["runc"]}"
        Root = "{layout.RUNC_ROOT}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = {json.dumps(list(layout.CNI_BIN_DIRS))}
    conf_dir = "{layout.CNI_CONF_DIR}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"""


def kubelet_config(p: pki.Pki) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(p.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(p.kubelet_server.cert),
        "tlsPrivateKeyFile": str(p.kubelet_server.key),
        "containerRuntimeEndpoint": f"unix://{layout.CONTAINERD_SOCKET}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{layout.CGROUP_ROOT}",
        # This host has cgroup v1 (hybrid); from 1.35 the kubelet refuses it unless told.
        "failCgroupV1": False,
        "clusterDomain": layout.CLUSTER_DOMAIN,
        "clusterDNS": [layout.DNS_SERVICE_IP],
        "resolvConf": str(layout.RESOLV_CONF),
        "failSwapOn": False,
        "maxOpenFiles": layout.NOFILE,
        "serializeImagePulls": False,
        # Images cannot be pulled again here: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "shutdownGracePeriod": "0s",
        "nodeStatusUpdateFrequency": "5s",
        "containerLogMaxSize": "10Mi",
        "podLogsDir": str(layout.POD_LOGS),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def kube_proxy_config() -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.CONFIG / "kube-proxy.kubeconfig")},
        "hostnameOverride": layout.NODE_NAME,
        # IPVS is not in this kernel; iptables (the nft backend) is.
        "mode": "iptables",
        "clusterCIDR": layout.CLUSTER_CIDR,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{layout.NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
        # 0 leaves the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def cni_config(pod_cidr: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "yuxi-k8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves the machine, so nothing needs translating
                "hairpinMode": True,  # a pod reaching itself through its own Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.CNI_DATA),
                },
            }
        ],
    }


# --- the cluster -------------------------------------------------------------
class LocalCluster:
    """The single-node cluster on this host (root, Linux)."""

    def __init__(self) -> None:
        self.kubeconfig = layout.KUBECONFIG

    # status ---------------------------------------------------------------
    def healthy(self) -> bool:
        if not all(processes.running(c) for c in COMPONENTS):
            return False
        try:
            return node_ready() and dns_answers()
        except Exception:
            return False

    def status(self) -> dict[str, Any]:
        running = any(processes.running(c) for c in COMPONENTS)
        report: dict[str, Any] = {
            "kubeconfig": str(self.kubeconfig),
            # When nothing runs, what a killed run left on the host (the next `up` cleans it).
            "leftovers": [] if running else host.leftovers((*BINARIES, "yuxi_k8s.cluster.provisioner")),
            "logs": str(layout.LOGS),
            "processes": {c: processes.running(c) for c in COMPONENTS if c in processes.recorded()},
        }
        try:
            report["node_ready"] = node_ready()
        except Exception:
            report["node_ready"] = False
        try:
            report["dns"] = dns_answers()
        except Exception:
            report["dns"] = False
        return report

    # up -------------------------------------------------------------------
    def up(self) -> None:
        check_host()
        with exclusive():
            self._up()

    def _up(self) -> None:
        started = time.monotonic()
        if layout.KUBECONFIG.exists() and self.healthy():
            say(f"==> cluster already up (kubeconfig {self.kubeconfig})")
            return
        with step("checked Debian packages and binaries"):
            ensure_packages()
            bins = {name: binary(name) for name in BINARIES}
        with step("cleaned state of any earlier run"):
            self._clean()
        with step("built or reused local images (pause, CoreDNS, busybox)"):
            built = system_images.all_images()
        with step("host set-up: sysctls, bridge, cgroups, certificates"):
            for d in (
                layout.STATE,
                layout.CONFIG,
                layout.LOGS,
                layout.PIDS,
                layout.CNI_CONF_DIR,
                layout.VOLUMES,
            ):
                d.mkdir(parents=True, exist_ok=True)
            host.setup_sysctls()
            host.setup_network()
            host.setup_cgroups()
            certs = pki.create_all(layout.PKI, layout.CONFIG)
            layout.RESOLV_CONF.write_text("# no upstream resolvers: cluster DNS answers cluster names only\n")
        with step("etcd and containerd running"):
            self._start_etcd(bins, certs)
            self._start_containerd(bins, built["pause"].name)
            wait_for(
                "etcd",
                lambda: _https_ok(
                    f"https://127.0.0.1:{layout.ETCD_CLIENT_PORT}/health",
                    certs.ca.cert,
                    certs.etcd_client.cert,
                    certs.etcd_client.key,
                ),
                60,
            )
            wait_for("containerd", layout.CONTAINERD_SOCKET.exists, 60)
        with step("API server ready"):
            self._start_apiserver(bins, certs)
            with step("  images imported into containerd"):
                for image in built.values():
                    oci.load_into_containerd(image.archive, ctr=bins["ctr"])
            admin = pki.KeyPair(layout.PKI / "admin-client.crt", layout.PKI / "admin-client.key")
            wait_for(
                "kube-apiserver /readyz",
                lambda: _https_ok(f"{layout.API_SERVER}/readyz", certs.ca.cert, admin.cert, admin.key),
                120,
            )
        with step("controller-manager, scheduler, kubelet, kube-proxy started; add-ons applied"):
            self._start_controllers(bins, certs)
            self._start_node(bins, certs)
            self._apply([*addons.rbac(), addons.storage_class(), *addons.coredns(built["coredns"].name)])
        with step("node registered with a pod CIDR; CNI configured"):
            pod_cidr = ""

            def has_cidr() -> bool:
                nonlocal pod_cidr
                pod_cidr = kubectl("get", "node", layout.NODE_NAME, "-o", "jsonpath={.spec.podCIDR}").strip()
                return bool(pod_cidr)

            wait_for("the node to register and get a pod CIDR", has_cidr, 120)
            (layout.CNI_CONF_DIR / "10-yuxi-k8s.conflist").write_text(
                json.dumps(cni_config(pod_cidr), indent=1)
            )
            self._start_addon_processes(bins)
        with step("node Ready"):
            wait_for(f"node {layout.NODE_NAME} Ready", node_ready, 120)
        with step("default ServiceAccount exists and CoreDNS answers"):
            wait_for(
                "the default ServiceAccount",
                lambda: bool(kubectl("get", "serviceaccount", "default", "-o", "name", check=False)),
                60,
            )
            wait_for("CoreDNS to answer kubernetes.default", dns_answers, 120, interval=1)
        say(f"==> cluster up in {time.monotonic() - started:.1f} s; export KUBECONFIG={self.kubeconfig}")

    def _start_etcd(self, bins: dict[str, str], p: pki.Pki) -> None:
        url = f"https://127.0.0.1:{layout.ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{layout.ETCD_PEER_PORT}"
        processes.start(
            "etcd",
            [
                bins["etcd"], "--name", layout.NODE_NAME, "--data-dir", str(layout.ETCD_DATA),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{layout.NODE_NAME}={peer}", "--initial-cluster-state", "new",
                "--listen-metrics-urls", "http://127.0.0.1:2381",
                "--cert-file", str(p.etcd_server.cert), "--key-file", str(p.etcd_server.key),
                "--client-cert-auth", "--trusted-ca-file", str(p.ca.cert),
                # A throwaway test cluster: skipping fsync makes start-up and writes fast on slow disks.
                "--unsafe-no-fsync", "--snapshot-count", "10000",
            ],
        )  # fmt: skip

    def _start_containerd(self, bins: dict[str, str], sandbox_image: str) -> None:
        config = layout.CONFIG / "containerd.toml"
        config.write_text(containerd_config(sandbox_image))
        # The shim is found on PATH; the cached tool folder holds containerd-shim-runc-v2.
        path = f"{Path(bins['containerd-shim-runc-v2']).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        processes.start("containerd", [bins["containerd"], "--config", str(config)], env={"PATH": path})

    def _start_apiserver(self, bins: dict[str, str], p: pki.Pki) -> None:
        processes.start(
            "kube-apiserver",
            [
                bins["kube-apiserver"],
                f"--advertise-address={layout.NODE_IP}", f"--bind-address={layout.NODE_IP}",
                f"--secure-port={layout.API_PORT}",
                f"--etcd-servers=https://127.0.0.1:{layout.ETCD_CLIENT_PORT}",
                f"--etcd-cafile={p.ca.cert}", f"--etcd-certfile={p.etcd_client.cert}",
                f"--etcd-keyfile={p.etcd_client.key}",
                f"--client-ca-file={p.ca.cert}",
                f"--tls-cert-file={p.apiserver.cert}", f"--tls-private-key-file={p.apiserver.key}",
                f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
                f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
                f"--kubelet-certificate-authority={p.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-issuer=https://kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                f"--service-account-key-file={p.service_account.cert}",
                f"--service-account-signing-key-file={p.service_account.key}",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction,PodSecurity",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )  # fmt: skip

    def _start_controllers(self, bins: dict[str, str], p: pki.Pki) -> None:
        cm_kc = str(layout.CONFIG / "controller-manager.kubeconfig")
        processes.start(
            "kube-controller-manager",
            [
                bins["kube-controller-manager"],
                f"--kubeconfig={cm_kc}", f"--authentication-kubeconfig={cm_kc}",
                f"--authorization-kubeconfig={cm_kc}",
                "--bind-address=127.0.0.1", "--leader-elect=false",
                "--allocate-node-cidrs=true", f"--cluster-cidr={layout.CLUSTER_CIDR}",
                "--node-cidr-mask-size=24",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                f"--root-ca-file={p.ca.cert}",
                f"--service-account-private-key-file={p.service_account.key}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={p.ca.cert}", f"--cluster-signing-key-file={p.ca.key}",
            ],
        )  # fmt: skip
        sched_kc = str(layout.CONFIG / "scheduler.kubeconfig")
        processes.start(
            "kube-scheduler",
            [
                bins["kube-scheduler"],
                f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1", "--leader-elect=false",
            ],
        )  # fmt: skip

    def _start_node(self, bins: dict[str, str], p: pki.Pki) -> None:
        kubelet_yaml = layout.CONFIG / "kubelet.yaml"
        kubelet_yaml.write_text(yaml.safe_dump(kubelet_config(p)))
        processes.start(
            "kubelet",
            [
                bins["kubelet"], f"--config={kubelet_yaml}",
                f"--kubeconfig={layout.CONFIG / 'kubelet.kubeconfig'}",
                f"--root-dir={layout.KUBELET_ROOT}",
                f"--node-ip={layout.NODE_IP}", f"--hostname-override={layout.NODE_NAME}",
            ],
        )  # fmt: skip
        proxy_yaml = layout.CONFIG / "kube-proxy.yaml"
        proxy_yaml.write_text(yaml.safe_dump(kube_proxy_config()))
        processes.start("kube-proxy", [bins["kube-proxy"], f"--config={proxy_yaml}"])

    def _start_addon_processes(self, bins: dict[str, str]) -> None:
        processes.start(
            "kube-router",
            [
                bins["kube-router"],
                f"--kubeconfig={layout.CONFIG / 'kube-router.kubeconfig'}",
                f"--hostname-override={layout.NODE_NAME}",
                # NetworkPolicy only: the bridge routes pods and kube-proxy serves Services.
                "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                "--metrics-port=0", "--health-port=0",  # no listener on outside interfaces
            ],
        )  # fmt: skip
        processes.start(
            "provisioner",
            [
                sys.executable, "-m", "yuxi_k8s.cluster.provisioner",
                f"--kubeconfig={layout.CONFIG / 'provisioner.kubeconfig'}",
                f"--root={layout.VOLUMES}", f"--name={layout.PROVISIONER_NAME}",
            ],
        )  # fmt: skip

    def _apply(self, manifests: list[dict[str, Any]]) -> None:
        body = yaml.safe_dump_all(manifests)
        wait_for("kube-system namespace", lambda: bool(kubectl("get", "ns", "kube-system", "-o", "name")), 60)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=body)

    # down -----------------------------------------------------------------
    def down(self) -> None:
        check_host()
        with exclusive():
            self._down()

    def _down(self) -> None:
        started = time.monotonic()
        if layout.LOGS.exists():
            shutil.rmtree(layout.LAST_LOGS, ignore_errors=True)
            shutil.copytree(layout.LOGS, layout.LAST_LOGS, dirs_exist_ok=True)
        self._clean(verbose=True)
        left = host.leftovers((*BINARIES, "yuxi_k8s.cluster.provisioner"))
        if left:
            raise ClusterError(f"cluster down left {len(left)} things behind: {'; '.join(left[:8])}")
        say("==> nothing left: no mount, interface, chain, ipset, cgroup, folder or process of the cluster")
        say(f"==> cluster down in {time.monotonic() - started:.1f} s (last logs kept in {layout.LAST_LOGS})")

    def _clean(self, verbose: bool = False) -> None:
        """Remove every trace of a cluster, running or left by a killed run."""

        def note(msg: str) -> None:
            if verbose:
                say(f"==> {msg}")

        # The node side first, so the kubelet does not restart what is being removed.
        # (group, grace in seconds): the API server drains its watches for longer than
        # is useful when everything is being removed anyway.
        for group, grace in (
            (["kubelet", "kube-proxy", "kube-router", "provisioner"], 5.0),
            (["kube-scheduler", "kube-controller-manager", "kube-apiserver"], 2.0),
            (["containerd", "etcd"], 5.0),
        ):
            t0 = time.monotonic()
            slow = processes.stop_all(group, timeout=grace)
            note(
                f"stopped {', '.join(group)} ({time.monotonic() - t0:.1f} s{'; SIGKILLed ' if slow else ''}"
                f"{', '.join(slow)})"
            )
        # Processes of an earlier run whose pid files are gone (or that escaped our cgroups).
        strays = host.find_processes_using(
            (str(layout.STATE), str(layout.RUNTIME)), (*BINARIES, "yuxi_k8s.cluster.provisioner")
        )
        procfs.terminate(strays, timeout=1)  # leftovers (shims): the cgroup sweep below finishes them
        note(f"stopped the cluster's processes ({len(strays)} strays)")
        host.remove_cgroups()
        note("killed the pods and removed the cgroups")
        host.remove_mounts()
        note("unmounted")
        host.remove_iptables()
        host.remove_ipsets()
        host.remove_interfaces()
        note("removed iptables chains, ipsets, the bridge and its veths")
        host.restore_sysctls()
        _remove_stale_shim_sockets()
        host.remove_fixed_path_leftovers()
        for d in (layout.RUNTIME, layout.STATE):
            shutil.rmtree(d, ignore_errors=True)
        note(f"removed {layout.STATE} and {layout.RUNTIME}")


def _remove_stale_shim_sockets() -> None:
    """containerd shims put their sockets in /run/containerd/s whatever the config says."""
    sockets_dir = Path("/run/containerd/s")
    if not sockets_dir.exists():
        return
    listening = {
        line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:] if "/" in line
    }
    for entry in sockets_dir.iterdir():
        if str(entry) not in listening:
            entry.unlink(missing_ok=True)
    for d in (sockets_dir, sockets_dir.parent):
        with contextlib.suppress(OSError):
            d.rmdir()
