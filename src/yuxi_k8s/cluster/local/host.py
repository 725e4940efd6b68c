"""Host-level state of the local cluster: sysctls, the bridge, iptables, ipsets,
mounts and cgroups. Each ``setup_*`` has a ``remove_*`` that also works on what
a killed earlier run left behind (no pid files, no memory of what it made).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from yuxi_k8s import procfs
from yuxi_k8s.cluster.local import layout

# Values the cluster sets (ours) and values its components set on their own
# (kubelet, kube-proxy); all are saved first and put back by `down`.
SYSCTLS_SET = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
}
SYSCTLS_TOUCHED_BY_COMPONENTS = (
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
ISOLATE_CHAIN = "YUXI-ISOLATE"


def run(cmd: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc


# --- sysctls -------------------------------------------------------------------
def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def setup_sysctls() -> None:
    if not layout.SYSCTL_BACKUP.exists():  # keep the first backup: it holds the host's own values
        saved = {}
        for key in (*SYSCTLS_SET, *SYSCTLS_TOUCHED_BY_COMPONENTS):
            path = _sysctl_path(key)
            if path.exists():
                saved[key] = path.read_text().strip()
        layout.SYSCTL_BACKUP.parent.mkdir(parents=True, exist_ok=True)
        layout.SYSCTL_BACKUP.write_text(json.dumps(saved, indent=1))
    for key, value in SYSCTLS_SET.items():
        path = _sysctl_path(key)
        if not path.exists():
            raise RuntimeError(f"/proc/sys/{key} is missing: the kernel needs the br_netfilter module")
        path.write_text(value)


def restore_sysctls() -> None:
    if not layout.SYSCTL_BACKUP.exists():
        return
    for key, value in json.loads(layout.SYSCTL_BACKUP.read_text()).items():
        # Some keys cannot be written back (read-only in this VM): nothing more to do for them.
        with contextlib.suppress(OSError):
            _sysctl_path(key).write_text(value)
    layout.SYSCTL_BACKUP.unlink()


# --- bridge and isolation ----------------------------------------------------
def setup_network() -> None:
    """The node address on its own veth; the bridge (pods) with the service range routed onto it."""
    if run(["ip", "link", "show", layout.NODE_LINK], check=False).returncode != 0:
        run(["ip", "link", "add", layout.NODE_LINK, "type", "veth", "peer", "name", layout.NODE_LINK_PEER])
    run(["ip", "addr", "replace", f"{layout.NODE_IP}/32", "dev", layout.NODE_LINK])
    for link in (layout.NODE_LINK, layout.NODE_LINK_PEER):
        run(["ip", "link", "set", link, "up"])
    if run(["ip", "link", "show", layout.BRIDGE], check=False).returncode != 0:
        run(["ip", "link", "add", layout.BRIDGE, "type", "bridge"])
    run(["ip", "link", "set", layout.BRIDGE, "up"])
    run(["ip", "route", "replace", layout.SERVICE_CIDR, "dev", layout.BRIDGE, "src", layout.NODE_IP])
    # Pod traffic may go to pods, Services and this node, never out of the machine.
    run(["iptables", "-N", ISOLATE_CHAIN], check=False)
    run(["iptables", "-F", ISOLATE_CHAIN])
    run(["iptables", "-A", ISOLATE_CHAIN, "-o", layout.BRIDGE, "-j", "RETURN"])
    for cidr in (layout.CLUSTER_CIDR, f"{layout.NODE_IP}/32"):
        run(["iptables", "-A", ISOLATE_CHAIN, "-s", cidr, "-j", "REJECT", "-m", "comment",
             "--comment", "yuxi-k8s: cluster traffic stays on this machine"])  # fmt: skip
    if run(["iptables", "-C", "FORWARD", "-j", ISOLATE_CHAIN], check=False).returncode != 0:
        run(["iptables", "-I", "FORWARD", "1", "-j", ISOLATE_CHAIN])


def remove_interfaces() -> None:
    """The bridge and any veth still attached to it (their pod netns may be gone)."""
    out = run(["ip", "-o", "link", "show", "master", layout.BRIDGE], check=False).stdout
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        run(["ip", "link", "del", name], check=False)
    run(["ip", "link", "del", layout.BRIDGE], check=False)
    run(["ip", "link", "del", layout.NODE_LINK], check=False)  # takes its peer along


def _ours(chain: str) -> bool:
    return chain.startswith(layout.CHAIN_PREFIXES)


def remove_iptables() -> None:
    """Delete every rule that jumps to a cluster chain, then the chains, in every table."""
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        proc = run([save], check=False)
        if proc.returncode != 0:
            continue
        script: list[str] = []
        table = ""
        chains: list[str] = []
        deletes: list[str] = []
        for line in [*proc.stdout.splitlines(), "*end"]:
            if line.startswith("*"):
                if table and (chains or deletes):
                    script += [f"*{table}", *deletes, *(f"-F {c}" for c in chains)]
                    script += [*(f"-X {c}" for c in chains), "COMMIT"]
                table, chains, deletes = line[1:], [], []
            elif line.startswith(":"):
                chain = line[1:].split()[0]
                if _ours(chain):
                    chains.append(chain)
            elif line.startswith("-A "):
                parts = line.split()
                src, target = parts[1], parts[parts.index("-j") + 1] if "-j" in parts else ""
                if not _ours(src) and (_ours(target) or "yuxi-k8s" in line or "--match-set KUBE-" in line):
                    deletes.append("-D" + line[2:])
        if script:
            run([restore, "--noflush"], input="\n".join(script) + "\n", check=False)


def remove_ipsets() -> None:
    proc = run(["ipset", "list", "-n"], check=False)
    for name in proc.stdout.split():
        if name.startswith(layout.IPSET_PREFIXES):
            run(["ipset", "destroy", name], check=False)


# --- mounts ------------------------------------------------------------------
def _our_mounts() -> list[str]:
    roots = (str(layout.STATE), str(layout.RUNTIME))
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return points


def remove_mounts() -> None:
    for _ in range(5):  # nested and stacked mounts: unmount deepest first, repeat until none
        points = _our_mounts()
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            run(["umount", "-l", point], check=False)
    leftover = _our_mounts()
    if leftover:
        raise RuntimeError(f"could not unmount: {', '.join(leftover[:5])}")


# --- cgroups -----------------------------------------------------------------
def cgroup_hierarchies(*, unified: bool = False) -> list[Path]:
    """The cgroup v1 hierarchies (cpu, memory, pids, ..., the named systemd one), and with
    *unified* the cgroup2 one too (on this hybrid host runc mirrors its cgroups there)."""
    kinds = ("cgroup", "cgroup2") if unified else ("cgroup",)
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in kinds:
            found.append(Path(fields[1]))
    return found


def setup_cgroups() -> None:
    for hierarchy in cgroup_hierarchies():
        (hierarchy / layout.CGROUP_ROOT / "system").mkdir(parents=True, exist_ok=True)
    cpuset = layout.CGROUP_FS / "cpuset" / layout.CGROUP_ROOT
    if cpuset.exists():  # a new cpuset cgroup is empty until given the parent's cpus and mems
        for group in (cpuset, cpuset / "system"):
            for knob in ("cpuset.cpus", "cpuset.mems"):
                value = (group.parent / knob).read_text().strip()
                if not (group / knob).read_text().strip():
                    (group / knob).write_text(value)


def join_system_cgroup() -> None:
    """Move the calling process into <root>/system in every hierarchy (used before exec)."""
    pid = str(os.getpid())
    for hierarchy in cgroup_hierarchies():
        procs = hierarchy / layout.CGROUP_ROOT / "system" / "cgroup.procs"
        if procs.exists():
            procs.write_text(pid)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies(unified=True):
        root = hierarchy / layout.CGROUP_ROOT
        if root.exists():
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_cgroups(timeout: float = 15.0) -> None:
    """Kill every process left in the cluster's cgroups (pods, shims), then remove the cgroups."""
    deadline = time.monotonic() + timeout
    while (pids := _cgroup_pids()) and time.monotonic() < deadline:
        freezer = layout.CGROUP_FS / "freezer" / layout.CGROUP_ROOT
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if freezer.exists():
            for state in freezer.rglob("freezer.state"):  # frozen tasks cannot die
                with contextlib.suppress(OSError):
                    state.write_text("THAWED")
        time.sleep(0.2)
    for hierarchy in cgroup_hierarchies(unified=True):
        root = hierarchy / layout.CGROUP_ROOT
        if root.exists():
            for group in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    group.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()


def find_processes_using(paths: tuple[str, ...], programs: tuple[str, ...]) -> list[int]:
    """Pids of *programs* (by argv[0] base name, or a python -m module) whose command line
    names one of *paths*: the cluster's processes from an earlier run whose pid files are gone.
    A client that merely mentions the kubeconfig (kubectl, pytest) is never matched."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        cmdline = " ".join(argv)
        program = Path(argv[0]).name
        ours = program in programs or any(f"-m {p}" in cmdline for p in programs if "." in p)
        if ours and any(re.search(rf"(^|[\s=]){re.escape(p)}(/|\s|$)", cmdline) for p in paths):
            found.append(int(entry.name))
    return found


def _rmdir_up(path: Path, stop: Path) -> None:
    """Remove *path* and its parents up to (not including) *stop* while they are empty."""
    while path != stop and path.is_dir():
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def remove_fixed_path_leftovers() -> None:
    """The cluster's entries in folders whose paths the kubelet and libcni fix themselves."""
    plugins = layout.KUBELET_DEVICE_PLUGINS
    (plugins / "kubelet.sock").unlink(missing_ok=True)
    _rmdir_up(plugins, Path("/var/lib"))
    links = layout.CONTAINER_LOG_LINKS
    if links.is_dir():
        for link in links.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(layout.STATE)):
                link.unlink()
        _rmdir_up(links, Path("/var/log"))
    _rmdir_up(layout.DEFAULT_POD_LOGS, Path("/var/log"))
    results = layout.CNI_RESULTS
    if results.is_dir():
        ours = [r for r in results.iterdir() if r.name.startswith("yuxi-k8s-")]
        for result in ours:
            container_id = result.name.removeprefix("yuxi-k8s-").rsplit("-", 1)[0]
            (results / f"cni-loopback-{container_id}-lo").unlink(missing_ok=True)
            result.unlink(missing_ok=True)
        _rmdir_up(results, Path("/var/lib"))


def leftovers(programs: tuple[str, ...]) -> list[str]:
    """Everything of a cluster still on this host; empty after a complete `down`."""
    found: list[str] = []
    found += [f"mount {m}" for m in _our_mounts()]
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for name in (line.split(":")[1].strip().split("@")[0] for line in links.splitlines()):
        if name in (layout.BRIDGE, layout.NODE_LINK, layout.NODE_LINK_PEER):
            found.append(f"interface {name}")
    for save in ("iptables-save", "ip6tables-save"):
        for line in run([save], check=False).stdout.splitlines():
            if line.startswith(":") and _ours(line[1:].split()[0]):
                found.append(f"{save.removesuffix('-save')} chain {line[1:].split()[0]}")
    found += [
        f"ipset {n}"
        for n in run(["ipset", "list", "-n"], check=False).stdout.split()
        if n.startswith(layout.IPSET_PREFIXES)
    ]
    found += [f"cgroup {h / layout.CGROUP_ROOT}" for h in cgroup_hierarchies(unified=True)
              if (h / layout.CGROUP_ROOT).exists()]  # fmt: skip
    for path in (
        layout.STATE,
        layout.RUNTIME,
        layout.KUBELET_DEVICE_PLUGINS,
        layout.CONTAINER_LOG_LINKS,
        layout.DEFAULT_POD_LOGS,
        Path("/run/containerd/s"),
    ):
        if path.exists():
            found.append(f"path {path}")
    if layout.CNI_RESULTS.is_dir():
        found += [f"path {r}" for r in layout.CNI_RESULTS.glob("yuxi-k8s-*")]
    found += [
        f"process {pid}"
        for pid in find_processes_using((str(layout.STATE), str(layout.RUNTIME)), programs)
        if procfs.alive(pid)
    ]
    return found
