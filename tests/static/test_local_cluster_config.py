"""The local cluster's configuration, as pure data: what each builder writes and that the pieces
agree with each other and with the address plan (cluster/local/layout.py). No root, no cluster."""

from __future__ import annotations

import base64
import ipaddress
import os
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from yuxi_k8s.cluster.local import addons, layout, pki, processes
from yuxi_k8s.cluster.local.cluster import (
    DEBIAN_PACKAGES,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)

PKI = pki.load(Path("/pki"))


@pytest.fixture(scope="module")
def containerd() -> dict:
    return tomllib.loads(containerd_config("localhost/yuxi-k8s/pause:3.10"))


def test_the_address_plan_does_not_overlap() -> None:
    pods, services = ipaddress.ip_network(layout.CLUSTER_CIDR), ipaddress.ip_network(layout.SERVICE_CIDR)
    node = ipaddress.ip_address(layout.NODE_IP)
    assert not pods.overlaps(services)
    assert node not in pods and node not in services and node.is_private
    assert ipaddress.ip_address(layout.KUBERNETES_SERVICE_IP) == services.network_address + 1
    assert ipaddress.ip_address(layout.DNS_SERVICE_IP) in services
    assert f"https://{layout.NODE_IP}:{layout.API_PORT}" == layout.API_SERVER


def test_containerd_config_is_valid_toml_with_the_cluster_paths(containerd: dict) -> None:
    assert containerd["version"] == 3
    assert (containerd["root"], containerd["state"]) == (
        str(layout.CONTAINERD_ROOT),
        str(layout.CONTAINERD_STATE),
    )
    assert containerd["grpc"]["address"] == str(layout.CONTAINERD_SOCKET)
    cri = containerd["plugins"]
    assert cri["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "localhost/yuxi-k8s/pause:3.10"
    runtime = cri["io.containerd.cri.v1.runtime"]
    assert runtime["cni"] == {"bin_dirs": list(layout.CNI_BIN_DIRS), "conf_dir": str(layout.CNI_CONF_DIR)}
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert (
        runc["options"]["BinaryName"] == DEBIAN_PACKAGES["runc"]
    )  # the Debian runc ensure_packages installs
    assert runc["options"]["Root"] == str(layout.RUNC_ROOT)
    assert runtime["restrict_oom_score_adj"] is True


def test_kubelet_agrees_with_containerd_and_the_address_plan(containerd: dict) -> None:
    kubelet = kubelet_config(PKI)
    assert kubelet["kind"] == "KubeletConfiguration"
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{containerd['grpc']['address']}"
    # Both sides must drive cgroups the same way: cgroupfs here, not systemd.
    runc = containerd["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert kubelet["cgroupDriver"] == "cgroupfs" and runc["options"]["SystemdCgroup"] is False
    assert kubelet["cgroupRoot"] == f"/{layout.CGROUP_ROOT}"
    assert (
        kubelet["clusterDNS"] == [layout.DNS_SERVICE_IP] and kubelet["clusterDomain"] == layout.CLUSTER_DOMAIN
    )
    assert kubelet["address"] == layout.NODE_IP and kubelet["readOnlyPort"] == 0
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}
    assert kubelet["authentication"]["x509"]["clientCAFile"] == str(PKI.ca.cert)
    assert (kubelet["tlsCertFile"], kubelet["tlsPrivateKeyFile"]) == (
        str(PKI.kubelet_server.cert),
        str(PKI.kubelet_server.key),
    )
    assert kubelet["maxOpenFiles"] == layout.NOFILE
    assert kubelet["imageGCHighThresholdPercent"] == 100  # local images cannot be pulled again
    assert kubelet["resolvConf"] == str(layout.RESOLV_CONF) and kubelet["podLogsDir"] == str(layout.POD_LOGS)


def test_kube_proxy_config() -> None:
    proxy = kube_proxy_config()
    assert proxy["clusterCIDR"] == layout.CLUSTER_CIDR and proxy["mode"] == "iptables"
    assert proxy["hostnameOverride"] == layout.NODE_NAME
    assert proxy["nodePortAddresses"] == [f"{layout.NODE_IP}/32"]
    assert proxy["clientConnection"]["kubeconfig"] == str(layout.CONFIG / "kube-proxy.kubeconfig")
    assert proxy["conntrack"]["maxPerCore"] == 0  # leaves the host's conntrack sysctls alone


def test_cni_config_uses_the_node_pod_cidr() -> None:
    node_cidr = "10.244.3.0/24"
    assert ipaddress.ip_network(node_cidr).subnet_of(ipaddress.ip_network(layout.CLUSTER_CIDR))  # type: ignore[arg-type]
    cni = cni_config(node_cidr)
    [bridge] = cni["plugins"]
    assert bridge["type"] == "bridge" and bridge["bridge"] == layout.BRIDGE
    assert bridge["ipam"]["ranges"] == [[{"subnet": node_cidr}]]
    assert bridge["ipam"]["dataDir"] == str(layout.CNI_DATA)
    assert bridge["hairpinMode"] is True and bridge["ipMasq"] is False


def test_coredns_serves_the_dns_service_ip_and_resolves_cluster_names_only() -> None:
    objects = addons.coredns("localhost/yuxi-k8s/coredns:1")
    by_kind = {o["kind"]: o for o in objects if o["kind"] in ("Service", "Deployment", "ConfigMap")}
    assert by_kind["Service"]["spec"]["clusterIP"] == layout.DNS_SERVICE_IP
    template_labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        by_kind["Service"]["spec"]["selector"],
        by_kind["Deployment"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= template_labels.items()
    corefile = by_kind["ConfigMap"]["data"]["Corefile"]
    assert f"kubernetes {layout.CLUSTER_DOMAIN} " in corefile and "forward" not in corefile
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/yuxi-k8s/coredns:1" and container["imagePullPolicy"] == "Never"


def test_every_binding_names_a_role_of_its_own() -> None:
    objects = [*addons.rbac(), *addons.coredns("x")]
    roles = {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"}
    bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert bindings and all(b["roleRef"]["name"] in roles for b in bindings)
    users = {s["name"] for b in bindings for s in b["subjects"]}
    clients = {cn for cn, _ in pki.KUBECONFIG_CLIENTS.values()}
    assert {"yuxi-k8s:kube-router", "yuxi-k8s:provisioner"} <= users & clients


def test_the_default_storage_class() -> None:
    sc = addons.storage_class()
    assert sc["provisioner"] == layout.PROVISIONER_NAME and sc["metadata"]["name"] == layout.STORAGE_CLASS
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_pki_layout_and_kubeconfig(tmp_path: Path) -> None:
    loaded = pki.load(tmp_path)
    assert loaded.ca == pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.service_account == pki.KeyPair(tmp_path / "sa.pub", tmp_path / "sa.key")
    assert pki.KUBECONFIG_CLIENTS["kubelet"] == (f"system:node:{layout.NODE_NAME}", ("system:nodes",))
    for path, body in ((loaded.ca.cert, b"CA"), (tmp_path / "c.crt", b"CERT"), (tmp_path / "c.key", b"KEY")):
        path.write_bytes(body)
    out = pki.write_kubeconfig(
        tmp_path / "conf" / "x.kubeconfig", loaded.ca, pki.KeyPair(tmp_path / "c.crt", tmp_path / "c.key"),
        "someone", layout.API_SERVER,
    )  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = yaml.safe_load(out.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == layout.API_SERVER
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    user = config["users"][0]
    assert user["name"] == "someone" and base64.b64decode(user["user"]["client-key-data"]) == b"KEY"
    assert config["current-context"] == "yuxi-k8s"


@pytest.fixture
def pid_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(layout, "PIDS", tmp_path)
    return tmp_path


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[str]]:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_pid_file_counts_only_while_its_program_runs(pid_dir: Path, sleeper: subprocess.Popen[str]) -> None:
    (pid_dir / "etcd.pid").write_text(f"{sleeper.pid} {sys.executable}\n")
    (pid_dir / "kubelet.pid").write_text(f"{sleeper.pid} /usr/bin/kubelet\n")  # a reused pid: not ours
    (pid_dir / "gone.pid").write_text("999999999 /usr/bin/gone\n")
    assert processes.recorded() == ["etcd", "gone", "kubelet"]
    assert processes.running("etcd") and not processes.running("kubelet") and not processes.running("gone")


def test_stop_all_kills_what_ignores_sigterm(pid_dir: Path, sleeper: subprocess.Popen[str]) -> None:
    (pid_dir / "stubborn.pid").write_text(f"{sleeper.pid} {sys.executable}\n")
    assert processes.stop_all(["stubborn", "absent"], timeout=0.3) == ["stubborn"]
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert not any(pid_dir.iterdir()) and not os.path.exists(pid_dir / "stubborn.pid")
