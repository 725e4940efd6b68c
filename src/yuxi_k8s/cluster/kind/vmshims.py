"""What kind needs only on kernels like the VMs this project is developed on. Nothing else lives here.

On a normal machine (a laptop, a hosted CI runner) none of this applies and none of it is used:
each shim is switched on by a check of the host, never by the machine's name.

1. **Capabilities missing from the bounding set** (here: ``CAP_SYS_RESOURCE``, for every process,
   root included). Docker asks runc for *all* known capabilities in a ``--privileged`` container
   (kind's nodes are privileged) and runc fails with ``unable to apply caps: operation not
   permitted``; ``--cap-drop`` is ignored together with ``--privileged``. The shim is a runtime
   registered in the engine's ``daemon.json`` as the default: it removes the capabilities the
   host cannot grant from the OCI spec (``create``/``run``) and from the process spec (``exec``),
   then runs runc. Kubernetes inside the node needs no such shim: containerd grants a privileged
   container the capabilities it has itself.
2. **No CAP_SYS_RESOURCE** also means no process may lower its ``oom_score_adj``. The node's
   containerd must run with ``restrict_oom_score_adj = true`` (a containerd patch in kind's config),
   else every pod fails with ``can't get final child's PID from pipe: EOF``; dockerd gets
   ``--oom-score-adjust=0`` for the same reason.

The cgroup v1 setting (``failCgroupV1: false``) is not a VM quirk but a host property any old
distribution has, so it lives with the cluster config (``yuxi_k8s.cluster.kind.config``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Linux capability numbers (linux/capability.h), as runc names them in an OCI spec.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
RUNTIME_NAME = "yuxi-dropcaps"


def bounding_set(status: str | None = None) -> int:
    """The capability bounding set of this process (``CapBnd`` of /proc/self/status)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise RuntimeError("no CapBnd line in /proc/self/status")


def missing_capabilities(status: str | None = None) -> list[str]:
    """The known capabilities this host cannot grant to anything (empty on a normal machine)."""
    bnd = bounding_set(status)
    return [name for bit, name in enumerate(CAPABILITIES) if not bnd & (1 << bit)]


def restrict_oom_score_adj(status: str | None = None) -> bool:
    """True when no process may lower its oom_score_adj, so containerd must not try."""
    return "CAP_SYS_RESOURCE" in missing_capabilities(status)


def containerd_patches(status: str | None = None) -> list[str]:
    """Patches of the node's containerd config (kind's ``containerdConfigPatches``) this host needs."""
    if not restrict_oom_score_adj(status):
        return []
    return ['[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n']


def dockerd_flags(status: str | None = None) -> list[str]:
    """Extra flags for a dockerd this kit starts itself."""
    return ["--oom-score-adjust=0"] if restrict_oom_score_adj(status) else []


# The runtime shim, run by containerd's runc shim in place of runc for every container and exec.
# Standard library only: it runs under the host's own python3, never the venv.
SHIM = r'''
"""runc, minus the capabilities this host's bounding set lacks (yuxi_k8s.cluster.kind.vmshims)."""
import json
import os
import sys

RUNC = {runc!r}
DROP = set({drop!r})
VALUE_FLAGS = {{"--root", "--log", "--log-format", "--criu", "--rootless"}}
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def strip(path):
    with open(path) as fh:
        spec = json.load(fh)
    process = spec.get("process", spec)  # config.json has a "process"; an exec's process.json is one
    caps = process.get("capabilities") or {{}}
    changed = False
    for key in CAP_SETS:
        if key in caps and caps[key] and DROP & set(caps[key]):
            caps[key] = [c for c in caps[key] if c not in DROP]
            changed = True
    if changed:
        tmp = path + ".yuxi-tmp"
        with open(tmp, "w") as fh:
            json.dump(spec, fh)
        os.replace(tmp, path)


def option(args, *names):
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def main(argv):
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUE_FLAGS:
            i += 2
            continue
        if not arg.startswith("-"):
            break
        i += 1
    command, rest = (argv[i], argv[i + 1:]) if i < len(argv) else (None, [])
    if command in ("create", "run"):
        bundle = option(rest, "--bundle", "-b") or os.getcwd()
        strip(os.path.join(bundle, "config.json"))
    elif command == "exec":
        process = option(rest, "--process", "-p")
        if process:
            strip(process)
    os.execv(RUNC, [RUNC, *argv])


main(sys.argv[1:])
'''


def host_python() -> str:
    """A python3 outside any venv (the shim must not depend on this checkout)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3"), getattr(sys, "_base_executable", None)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return sys.executable


def write_runtime_shim(path: Path, runc: str, drop: list[str]) -> Path:
    """Write the runc wrapper that drops *drop* and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{host_python()}\n" + SHIM.format(runc=runc, drop=sorted(drop)))
    path.chmod(0o755)
    return path


def daemon_config(shim_dir: Path, status: str | None = None) -> dict[str, object]:
    """The part of daemon.json this host needs: the shim as default runtime, or nothing."""
    drop = missing_capabilities(status)
    if not drop:
        return {}
    runc = shutil.which("runc") or "/usr/sbin/runc"
    shim = write_runtime_shim(shim_dir / "runc-dropcaps", runc, drop)
    return {"runtimes": {RUNTIME_NAME: {"path": str(shim)}}, "default-runtime": RUNTIME_NAME}
