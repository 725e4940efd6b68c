"""The Docker engine kind runs on: the user's own, or one this kit starts and stops itself.

- Where ``docker info`` already works (a laptop, a hosted CI runner), that engine is used as it
  is and never stopped.
- Else, on Linux as root (these machines: Docker's client but no engine), Debian's ``docker.io``
  is installed with apt-get when ``dockerd`` is missing (services kept from starting), and a
  private ``dockerd`` is started: its own socket and exec root under ``/run/yuxi-k8s-docker/``,
  its data root in the kit's cache (so the node image survives between runs), its own
  containerd, and **no iptables, no ip_forward, no masquerading, no default bridge**
  (``--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none``). A
  stock dockerd sets the FORWARD policy to DROP and turns ip_forward on, which breaks the forwarding
  of the local cluster's pods; kind needs neither (its API server is published on 127.0.0.1 by
  docker-proxy, and the single node needs no route off the machine).

Before the engine starts, the host's forwarding state is saved to ``host-before.json``
(ip_forward, IPv6 forwarding, the bridge netfilter sysctls, the FORWARD policies, the DOCKER*
chains, the network interfaces, whether ``/lib/modules`` exists: kind bind-mounts it and docker
creates a missing source). ``stop()`` puts every one of them back, then checks and fails naming
anything it could not restore. The VM-only flags come from :mod:`yuxi_k8s.cluster.kind.vmshims`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yuxi_k8s import apt, paths, procfs
from yuxi_k8s.cluster.kind import vmshims

RUNTIME = Path("/run/yuxi-k8s-docker")
SOCKET = RUNTIME / "docker.sock"
PIDFILE = RUNTIME / "dockerd.pid"
SNAPSHOT = RUNTIME / "host-before.json"
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)
# Interfaces a dockerd (or its containers) creates; only these are ever deleted, and only if new.
DOCKER_LINKS = re.compile(r"^(docker\d+|br-[0-9a-f]{12}|veth[0-9a-f]{7})$")
DEBIAN_PACKAGES = {"docker.io": "/usr/sbin/dockerd"}


class EngineError(RuntimeError):
    """The engine cannot be had or left the host changed; the message says what and what to do."""


def data_root() -> Path:
    return paths.cache_dir("kind", "docker")


def log_file() -> Path:
    return paths.cache_dir("kind", "dockerd.log")


def _run(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)


# --- the host's forwarding state ------------------------------------------------------------


@dataclass
class HostNet:
    sysctls: dict[str, str] = field(default_factory=dict)
    forward_policy: dict[str, str] = field(default_factory=dict)  # "iptables"/"ip6tables" -> ACCEPT|DROP
    docker_chains: dict[str, list[str]] = field(default_factory=dict)  # "<tool> <table>" -> chains
    links: list[str] = field(default_factory=list)
    lib_modules: bool = True
    docker_cgroups: list[str] = field(default_factory=list)  # /sys/fs/cgroup/<hierarchy>/docker folders

    @classmethod
    def read(cls) -> HostNet:
        state = cls()
        for key in SYSCTLS:
            path = Path("/proc/sys") / key
            if path.exists():
                state.sysctls[key] = path.read_text().strip()
        for tool in ("iptables", "ip6tables"):
            if shutil.which(f"{tool}-save") is None:
                continue
            for table in ("filter", "nat"):
                proc = _run([f"{tool}-save", "-t", table])
                chains = [ln[1:].split()[0] for ln in proc.stdout.splitlines() if ln.startswith(":")]
                state.docker_chains[f"{tool} {table}"] = sorted(c for c in chains if c.startswith("DOCKER"))
                if table == "filter":
                    for ln in proc.stdout.splitlines():
                        if ln.startswith(":FORWARD "):
                            state.forward_policy[tool] = ln.split()[1]
        state.links = sorted(os.listdir("/sys/class/net"))
        state.lib_modules = Path("/lib/modules").exists()
        state.docker_cgroups = _docker_cgroups()
        return state

    def differences(self, now: HostNet) -> list[str]:
        """What *now* has that this snapshot had otherwise (only what a dockerd can change)."""
        diffs = []
        for key, value in self.sysctls.items():
            if now.sysctls.get(key, value) != value:
                diffs.append(f"sysctl {key.replace('/', '.')}={now.sysctls[key]} (was {value})")
        for tool, policy in self.forward_policy.items():
            if now.forward_policy.get(tool, policy) != policy:
                diffs.append(f"{tool} FORWARD policy {now.forward_policy[tool]} (was {policy})")
        for key, chains in now.docker_chains.items():
            extra = sorted(set(chains) - set(self.docker_chains.get(key, [])))
            if extra:
                diffs.append(f"{key} chains {', '.join(extra)}")
        new_links = [ln for ln in now.links if ln not in self.links and DOCKER_LINKS.match(ln)]
        if new_links:
            diffs.append(f"interfaces {', '.join(new_links)}")
        if now.lib_modules and not self.lib_modules:
            diffs.append("/lib/modules (created by docker for kind's bind mount)")
        new_cgroups = [c for c in now.docker_cgroups if c not in self.docker_cgroups]
        if new_cgroups:
            diffs.append(f"cgroups {', '.join(new_cgroups)}")
        return diffs

    def restore(self) -> list[str]:
        """Put back what a dockerd changed since this snapshot; returns what is still different."""
        now = HostNet.read()
        for key, value in self.sysctls.items():
            if now.sysctls.get(key, value) != value:
                (Path("/proc/sys") / key).write_text(value)
        for tool, policy in self.forward_policy.items():
            if now.forward_policy.get(tool, policy) != policy:
                _run([tool, "-P", "FORWARD", policy])
        for key, chains in now.docker_chains.items():
            tool, table = key.split()
            extra = set(chains) - set(self.docker_chains.get(key, []))
            if extra:
                _drop_chains(tool, table, extra)
        for link in now.links:
            if link not in self.links and DOCKER_LINKS.match(link):
                _run(["ip", "link", "delete", link])
        if now.lib_modules and not self.lib_modules:
            with contextlib.suppress(OSError):  # only ever an empty mount point docker made
                Path("/lib/modules").rmdir()
        for cgroup in now.docker_cgroups:
            if cgroup not in self.docker_cgroups:  # empty once the containers are gone
                tree = [d for d in Path(cgroup).rglob("*") if d.is_dir()] + [Path(cgroup)]
                for folder in sorted(tree, key=lambda d: len(d.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        return self.differences(HostNet.read())


def _docker_cgroups() -> list[str]:
    """The ``docker`` cgroup folders dockerd makes (cgroupfs driver), one per hierarchy."""
    base = Path("/sys/fs/cgroup")
    found = [base / "docker"] if (base / "docker").is_dir() else []
    if base.is_dir():
        found += [p / "docker" for p in base.iterdir() if p.is_dir() and (p / "docker").is_dir()]
    return sorted(str(p) for p in found)


def _drop_chains(tool: str, table: str, chains: set[str]) -> None:
    """Delete every rule that jumps to one of *chains*, then flush and delete them."""
    rules = _run([f"{tool}-save", "-t", table]).stdout.splitlines()
    for rule in rules:
        parts = rule.split()
        if rule.startswith("-A ") and "-j" in parts and parts[parts.index("-j") + 1] in chains:
            _run([tool, "-t", table, "-D", *parts[1:]])
    for chain in chains:
        _run([tool, "-t", table, "-F", chain])
    for chain in chains:
        _run([tool, "-t", table, "-X", chain])


def ensure_packages(packages: dict[str, str]) -> None:
    """Install the missing packages (name -> a file it provides) with ``yuxi_k8s.apt``, starting no service.

    Debian's docker.io would start a stock dockerd (FORWARD policy DROP, ip_forward on) where an
    init system runs services; a ``policy-rc.d`` that says no is in place while apt-get runs.
    """
    need = apt.missing(packages)
    if not need:
        return
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy and os.geteuid() == 0:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        apt.install(need, recommends=False)
    except apt.AptError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


# --- the engine ---------------------------------------------------------------------------------


def _docker_info(env: dict[str, str], timeout: float = 20) -> bool:
    docker = shutil.which("docker", path=env.get("PATH"))
    if docker is None:
        return False
    try:
        return (
            _run([docker, "info", "--format", "{{.ServerVersion}}"], env=env, timeout=timeout).returncode == 0
        )
    except subprocess.TimeoutExpired:
        return False


def running_env() -> dict[str, str]:
    """The environment that reaches the engine running now: the user's Docker as configured, or the
    kit's own dockerd (its socket is not the default one). For ``kind`` and ``docker`` commands."""
    engine = DockerEngine()
    engine.available()  # notes when the running engine is the kit's
    return engine.env()


def _read_pid() -> int | None:
    try:
        return int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


class DockerEngine:
    """A Docker engine for kind. ``env()`` is the environment every docker and kind call gets."""

    def __init__(self) -> None:
        self.own = False  # True when this kit runs the engine (then `stop` may stop it)
        self.started = False  # True when this object started it
        self._proc: subprocess.Popen[bytes] | None = None

    # The environment of docker/kind calls: the private socket and the client that matches it.
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.own:
            env["DOCKER_HOST"] = f"unix://{SOCKET}"
            env["PATH"] = f"{RUNTIME / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def docker(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = _run(["docker", *args], env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:2])} failed: {proc.stderr.strip()[-600:]}")
        return proc

    def available(self) -> bool:
        """An engine answers: the user's, or ours already running."""
        return self.users_engine_answers() or self._ours_running()

    @staticmethod
    def users_engine_answers() -> bool:
        """The user's Docker, as their environment configures it, answers ``docker info``."""
        return _docker_info(dict(os.environ), timeout=10)

    def _ours_running(self) -> bool:
        pid = _read_pid()
        if pid is None or not procfs.alive(pid) or not SOCKET.exists():
            return False
        self.own = True
        return _docker_info(self.env(), timeout=10)

    def start(self) -> None:
        """Make an engine answer; start ours only when there is no other."""
        if self.available():
            # the user's engine (used as it is, never stopped here), or an earlier run's kept
            # with --keep-cluster (reused, not ours to stop)
            return
        if platform.system() != "Linux" or os.geteuid() != 0:
            raise EngineError(
                "no Docker engine answers `docker info`: start Docker (or Podman's docker socket); "
                "this kit starts one by itself only as root on Linux"
            )
        self.stop_leftover()
        dockerd = self._install()
        RUNTIME.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(asdict(HostNet.read())))
        (RUNTIME / "bin").mkdir(exist_ok=True)
        client = (
            Path("/usr/bin/docker")
            if Path("/usr/bin/docker").exists()
            else Path(shutil.which("docker") or "")
        )
        link = RUNTIME / "bin" / "docker"
        link.unlink(missing_ok=True)
        link.symlink_to(client)
        config: dict[str, object] = {
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "2"},
        }
        config.update(vmshims.daemon_config(RUNTIME))
        (RUNTIME / "daemon.json").write_text(json.dumps(config, indent=2))
        data_root().mkdir(parents=True, exist_ok=True)
        cmd = [
            dockerd,
            f"--config-file={RUNTIME / 'daemon.json'}",
            f"--host=unix://{SOCKET}",
            f"--data-root={data_root()}",
            f"--exec-root={RUNTIME / 'exec'}",
            f"--pidfile={PIDFILE}",
            "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--bridge=none",
            *vmshims.dockerd_flags(),
        ]  # fmt: skip
        log = log_file().open("ab")
        log.write(f"\n==> {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        log.flush()
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.own = True
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if SOCKET.exists() and _docker_info(self.env(), timeout=5):
                self.started = True
                return
            time.sleep(0.5)
        tail = log_file().read_text(errors="replace").splitlines()[-15:]
        self.stop(force=True)
        raise EngineError("dockerd did not answer within 60 s; its log ends:\n" + "\n".join(tail))

    def _install(self) -> str:
        ensure_packages(DEBIAN_PACKAGES)
        found = shutil.which("dockerd")
        if not found:
            raise EngineError("apt-get installed docker.io but there is no dockerd on PATH")
        return found

    def stop_leftover(self) -> None:
        """Stop the kit's own dockerd in whatever state a run left it (running, or killed with its
        containers still alive) and restore the host; a no-op when it left no trace."""
        if _read_pid() is not None or SNAPSHOT.exists():
            self.own = True
            self.stop(force=True)

    def stop(self, force: bool = False) -> None:
        """Stop our engine (only ours, only if this object started it, unless *force*) and restore."""
        if not self.own or not (self.started or force):
            return
        if SOCKET.exists() and _docker_info(self.env(), timeout=5):
            # the kind network is the engine's; its bridge must not outlive the engine
            for net in self.docker("network", "ls", "--format", "{{.Name}}", check=False).stdout.split():
                if net not in ("bridge", "host", "none"):
                    self.docker("network", "rm", net, check=False)
        pid = _read_pid()
        if pid is not None:
            procfs.terminate([pid], timeout=30)
        if self._proc is not None:
            self._proc.wait(timeout=10)  # reap it
            self._proc = None
        self._kill_children()
        self._kill_containers()
        self._unmount()
        problems: list[str] = []
        if SNAPSHOT.exists():
            before = HostNet(**json.loads(SNAPSHOT.read_text()))
            problems = before.restore()
        shutil.rmtree(RUNTIME, ignore_errors=True)
        self.started = False
        if problems:
            raise EngineError("stopping dockerd left the host changed: " + "; ".join(problems))

    def _kill_children(self) -> None:
        """containerd and shims under our exec root outlive a killed dockerd: end them by pid."""
        marker = str(RUNTIME)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _kill_containers(self) -> None:
        """After a killed dockerd its containers (kind's node: systemd, kubelet, pods) live on in the
        ``docker`` cgroups it made; end them (the restore then removes those cgroups). Only ever
        reached for the kit's own engine, which runs only where no other Docker engine answers."""
        roots = [Path(p) for p in _docker_cgroups()]
        for _ in range(3):
            pids = {
                int(pid)
                for root in roots
                for procs in root.rglob("cgroup.procs")
                for pid in procs.read_text().split()
            }
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def _unmount(self) -> None:
        roots = (str(RUNTIME), str(data_root()))
        mounts = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(roots)), key=len, reverse=True):
            _run(["umount", "-l", mount])


__all__ = ["DockerEngine", "EngineError", "HostNet", "data_root", "ensure_packages"]
