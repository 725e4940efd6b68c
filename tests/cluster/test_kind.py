"""kind: the cluster config a host gets, the VM shims, the engine's clean-up, and the kind cluster itself.

The first group needs nothing (tier ``static``): configs, the runtime shim and the ``ctr`` wrapper run
against fakes. The second runs on the session's cluster when it is kind
(``YUXI_K8S_CLUSTER_PROVIDER=kind``) and says so in the summary otherwise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.kube_fixtures import KubeCluster

from yuxi_k8s.cluster.kind import baseimage, vmshims
from yuxi_k8s.cluster.kind.config import CONTROL_PLANE_CPU, PATCHES_IN_NODE, ClusterConfig, OfflineImages
from yuxi_k8s.cluster.kind.engine import SNAPSHOT, HostNet
from yuxi_k8s.cluster.local import layout
from yuxi_k8s.cluster.providers import kind as kind_provider
from yuxi_k8s.pinned_tools import pinned_version

FULL = "CapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapBnd:\t000001fffeffffff\n"  # what these VMs have: bit 24 cleared


def _patches(config: ClusterConfig, kind: str) -> list[dict[str, object]]:
    docs = [yaml.safe_load(p) for p in config.render().get("kubeadmConfigPatches", [])]
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.static
def test_fail_cgroup_v1_is_set_only_on_cgroup_v1_hosts() -> None:
    v1 = ClusterConfig("c", "img", cgroup_v1=True, containerd_patches=[])
    v2 = ClusterConfig("c", "img", cgroup_v1=False, containerd_patches=[])
    assert _patches(v1, "KubeletConfiguration") == [{"kind": "KubeletConfiguration", "failCgroupV1": False}]
    assert _patches(v2, "KubeletConfiguration") == []
    assert "kubeadmConfigPatches" not in v2.render()


@pytest.mark.static
def test_vm_shims_follow_the_capability_bounding_set() -> None:
    assert vmshims.missing_capabilities(FULL) == []
    assert vmshims.missing_capabilities(NO_SYS_RESOURCE) == ["CAP_SYS_RESOURCE"]
    assert vmshims.containerd_patches(FULL) == [] and vmshims.dockerd_flags(FULL) == []
    (patch,) = vmshims.containerd_patches(NO_SYS_RESOURCE)
    assert "restrict_oom_score_adj = true" in patch
    assert vmshims.dockerd_flags(NO_SYS_RESOURCE) == ["--oom-score-adjust=0"]


@pytest.mark.static
def test_official_image_config_keeps_kinds_defaults() -> None:
    rendered = ClusterConfig("c", "kindest/node:v1", cgroup_v1=False, containerd_patches=[]).render()
    assert rendered["networking"]["disableDefaultCNI"] is False
    assert rendered["nodes"] == [{"role": "control-plane", "image": "kindest/node:v1"}]
    assert "containerdConfigPatches" not in rendered


@pytest.mark.static
def test_offline_config_takes_every_image_from_the_local_repository_and_no_kindnetd() -> None:
    offline = OfflineImages(etcd_tag="v3.6.16-abc", coredns_tag="def")
    config = ClusterConfig(
        "c", "localhost/yuxi-k8s/kind-node:v", offline, cgroup_v1=False, containerd_patches=[]
    )
    rendered = config.render()
    assert rendered["networking"]["disableDefaultCNI"] is True
    (cluster,) = _patches(config, "ClusterConfiguration")
    assert cluster == {
        "kind": "ClusterConfiguration",
        "imageRepository": "localhost/yuxi-k8s",
        "etcd": {"local": {"imageTag": "v3.6.16-abc"}},
        "dns": {"imageTag": "def"},
    }
    # the node image's static CNI range is the first /24 of the pod subnet kind is given
    pod_range = baseimage.cni_config()["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]  # type: ignore[index]
    assert pod_range.split(".")[:2] == rendered["networking"]["podSubnet"].split(".")[:2]


@pytest.mark.static
def test_control_plane_requests_are_lowered_through_mounted_kubeadm_patches(tmp_path: Path) -> None:
    config = ClusterConfig(
        "c", "img", patches_dir=tmp_path / "patches", cgroup_v1=False, containerd_patches=[]
    )
    config.write_patches()
    (node,) = config.render()["nodes"]
    assert node["extraMounts"] == [
        {"hostPath": str(tmp_path / "patches"), "containerPath": PATCHES_IN_NODE, "readOnly": True}
    ]
    assert _patches(config, "InitConfiguration") == [
        {"kind": "InitConfiguration", "patches": {"directory": PATCHES_IN_NODE}}
    ]
    files = sorted(p.name for p in (tmp_path / "patches").iterdir())
    assert files == sorted(f"{c}+strategic.yaml" for c in CONTROL_PLANE_CPU)
    apiserver = yaml.safe_load((tmp_path / "patches" / "kube-apiserver+strategic.yaml").read_text())
    assert apiserver["spec"]["containers"][0] == {
        "name": "kube-apiserver",
        "resources": {"requests": {"cpu": "50m"}},
    }
    # together far below kubeadm's 650m, so the dev overlay's worker (500m) fits beside the stack
    assert sum(int(cpu.removesuffix("m")) for cpu in CONTROL_PLANE_CPU.values()) < 200


def _fake_runc(tmp_path: Path) -> Path:
    runc = tmp_path / "runc"
    runc.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "args"}\n')
    runc.chmod(0o755)
    return runc


@pytest.mark.static
def test_runtime_shim_drops_what_the_host_cannot_grant_then_runs_runc(tmp_path: Path) -> None:
    shim = vmshims.write_runtime_shim(tmp_path / "shim", str(_fake_runc(tmp_path)), ["CAP_SYS_RESOURCE"])
    caps = {k: ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"] for k in ("bounding", "effective", "permitted")}
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": caps}}))
    args = ["--root", "/r", "--log", "/l", "create", "--bundle", str(bundle), "id1"]
    subprocess.run([str(shim), *args], check=True, timeout=30)
    spec = json.loads((bundle / "config.json").read_text())
    assert all(v == ["CAP_SYS_ADMIN"] for v in spec["process"]["capabilities"].values())
    assert (tmp_path / "args").read_text().split() == args

    process = tmp_path / "process.json"  # `docker exec` into a privileged container
    process.write_text(json.dumps({"capabilities": caps}))
    subprocess.run(
        [str(shim), "--root", "/r", "exec", "--process", str(process), "id1"], check=True, timeout=30
    )
    assert json.loads(process.read_text())["capabilities"]["bounding"] == ["CAP_SYS_ADMIN"]


@pytest.mark.static
def test_ctr_wrapper_answers_fetch_without_a_network_and_passes_the_rest(tmp_path: Path) -> None:
    real = tmp_path / "ctr"
    real.write_text(  # lists only preloaded/x:1; records any other call
        "#!/bin/sh\n"
        'case "$*" in *"images ls"*) for last; do :; done\n'
        '  [ "${last#name==}" = preloaded/x:1 ] && echo preloaded/x:1; exit 0;; esac\n'
        f'echo "$@" > {tmp_path / "passed"}\n'
    )
    real.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(baseimage.CTR_WRAPPER.replace("real=/usr/local/bin/ctr", f"real={real}"))
    wrapper.chmod(0o755)
    fetch = ["--namespace=k8s.io", "content", "fetch", "--platform=linux/amd64"]
    hit = subprocess.run([str(wrapper), *fetch, "preloaded/x:1"], capture_output=True, text=True, check=True)
    assert "is preloaded" in hit.stderr
    miss = subprocess.run(
        [str(wrapper), *fetch, "registry.k8s.io/etcd:3.7.0-0"], capture_output=True, text=True
    )
    assert miss.returncode == 0 and "not preloaded" in miss.stderr
    assert not (tmp_path / "passed").exists(), "a fetch reached the real ctr"
    subprocess.run([str(wrapper), "images", "import", "-"], check=True)
    assert (tmp_path / "passed").read_text().split() == ["images", "import", "-"]


@pytest.mark.static
def test_host_snapshot_names_what_a_dockerd_changed() -> None:
    before = HostNet(
        sysctls={"net/ipv4/ip_forward": "0"},
        forward_policy={"iptables": "ACCEPT"},
        docker_chains={"iptables filter": []},
        links=["eth0", "lo"],
        lib_modules=False,
    )
    after = HostNet(
        sysctls={"net/ipv4/ip_forward": "1"},
        forward_policy={"iptables": "DROP"},
        docker_chains={"iptables filter": ["DOCKER", "DOCKER-USER"]},
        links=["br-0123456789ab", "eth0", "lo", "yuxi-br0"],
        lib_modules=True,
        docker_cgroups=["/sys/fs/cgroup/memory/docker"],
    )
    assert before.differences(after) == [
        "sysctl net.ipv4.ip_forward=1 (was 0)",
        "iptables FORWARD policy DROP (was ACCEPT)",
        "iptables filter chains DOCKER, DOCKER-USER",
        "interfaces br-0123456789ab",  # the local cluster's bridge is not docker's to remove
        "/lib/modules (created by docker for kind's bind mount)",
        "cgroups /sys/fs/cgroup/memory/docker",
    ]
    assert before.differences(before) == []


@pytest.mark.static
def test_network_policy_gap_names_the_kernel_and_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = kind_provider.KindProvider()
    monkeypatch.setattr(kind_provider, "kernel_nft_queue", lambda: False)
    provider.offline = True
    gap = provider.network_policy_gap() or ""
    assert "CONFIG_NFT_QUEUE" in gap and "kindnetd" in gap and "registry" in gap
    provider.offline = False
    assert "CONFIG_NFT_QUEUE" in (provider.network_policy_gap() or "")
    monkeypatch.setattr(kind_provider, "kernel_nft_queue", lambda: True)
    assert provider.network_policy_gap() is None


@pytest.mark.static
def test_the_forks_workflow_is_the_readmes_cluster_command_with_kind() -> None:
    root = Path(__file__).resolve().parents[2]
    workflow = yaml.safe_load((root / ".github/workflows/kind.yaml").read_text())
    (job,) = workflow["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == ["sudo --preserve-env=PATH,HOME env YUXI_K8S_CLUSTER_PROVIDER=kind make test-cluster"]
    assert "`test-cluster`" in (root / "README.md").read_text()  # the README's tier command
    assert "\ntest-cluster:" in (root / "Makefile").read_text()


# --- on the session's cluster, when it is kind ---------------------------------------------------


@pytest.fixture
def kind_cluster(kube_cluster: KubeCluster) -> KubeCluster:
    if kube_cluster.provider != "kind":
        pytest.skip("the session's cluster is not kind (YUXI_K8S_CLUSTER_PROVIDER=kind runs these)")
    return kube_cluster


def _offline(cluster: KubeCluster) -> bool:
    return getattr(cluster._provider, "offline", None) is True


@pytest.mark.kind
def test_kind_default_storage_class_is_the_kits_provisioner(kind_cluster: KubeCluster) -> None:
    classes = json.loads(kind_cluster.kubectl("get", "storageclass", "-o", "json").stdout)["items"]
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    assert defaults == [layout.STORAGE_CLASS], f"default StorageClasses: {defaults}"
    (ours,) = (c for c in classes if c["metadata"]["name"] == layout.STORAGE_CLASS)
    assert ours["provisioner"] == layout.PROVISIONER_NAME


@pytest.mark.kind
def test_kind_node_runs_the_node_image_kubernetes(kind_cluster: KubeCluster) -> None:
    version = kind_cluster.kubectl(
        "get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.kubeletVersion}"
    )
    key = "KUBERNETES_VERSION" if _offline(kind_cluster) else "KIND_NODE_IMAGE"
    expected = pinned_version(key)
    assert version.stdout.strip() and version.stdout.strip() in expected


@pytest.mark.kind
def test_kind_offline_cluster_dns_has_no_way_off_the_machine(kind_cluster: KubeCluster) -> None:
    if not _offline(kind_cluster):
        pytest.skip("kind's official node image: CoreDNS forwards as kind configures it")
    corefile = kind_cluster.kubectl(
        "-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.Corefile}"
    ).stdout
    assert "kubernetes cluster.local" in corefile and "forward" not in corefile


@pytest.mark.kind
def test_kind_engine_leaves_the_hosts_forwarding_alone(kind_cluster: KubeCluster) -> None:
    """While the kit's own dockerd runs: ip_forward, the FORWARD policies and the chains are as before.

    kind's network bridge, the /lib/modules mount point and docker's cgroups exist while the cluster
    runs; stopping the engine removes them and fails naming anything left (DockerEngine.stop).
    """
    if not SNAPSHOT.exists():
        pytest.skip("the engine is the user's Docker, not one this kit started")
    before = HostNet(**json.loads(SNAPSHOT.read_text()))
    changed = [
        d
        for d in before.differences(HostNet.read())
        if not d.startswith(("interfaces br-", "/lib/modules", "cgroups "))
    ]
    assert changed == []
