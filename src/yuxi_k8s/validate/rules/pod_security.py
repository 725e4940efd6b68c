"""Pod Security Standards "restricted", in full (baseline plus restricted extras)."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Container, Context, Workload
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "pod-security"

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
APPARMOR_TYPES = {"RuntimeDefault", "Localhost"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _each(ctx: Context) -> Iterator[tuple[Workload, Container]]:
    for w in ctx.workloads:
        for c in w.containers:
            yield w, c


@rule(
    "YK-PSS-001",
    family=FAMILY,
    title="No privileged containers",
    message="A privileged container has every capability and full access to the node's devices.",
    fix="Remove `securityContext.privileged: true` (or set it to false).",
)
def privileged(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        if c.security.get("privileged"):
            yield w.resource, f"{c.label()} sets privileged: true"


@rule(
    "YK-PSS-002",
    family=FAMILY,
    title="allowPrivilegeEscalation is false",
    message="Restricted pods must forbid privilege escalation (setuid binaries, no_new_privs).",
    fix="Set `securityContext.allowPrivilegeEscalation: false` on every container.",
)
def privilege_escalation(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        if c.security.get("allowPrivilegeEscalation") is not False:
            yield w.resource, f"{c.label()} does not set allowPrivilegeEscalation: false"


@rule(
    "YK-PSS-003",
    family=FAMILY,
    title="Run as non-root",
    message="Restricted pods must run as a non-root user: runAsNonRoot true and no runAsUser 0.",
    fix="Set `securityContext.runAsNonRoot: true` (pod or container) and a non-zero `runAsUser`.",
)
def run_as_non_root(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        pod, sc = w.pod_security, c.security
        non_root = sc.get("runAsNonRoot", pod.get("runAsNonRoot"))
        if non_root is not True:
            yield w.resource, f"{c.label()} does not set runAsNonRoot: true"
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            yield w.resource, f"{c.label()} runs as uid 0"


@rule(
    "YK-PSS-004",
    family=FAMILY,
    title="Capabilities drop ALL",
    message="Restricted pods must drop every Linux capability.",
    fix='Set `securityContext.capabilities.drop: ["ALL"]` on every container.',
)
def drop_all(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        if "ALL" not in ((c.security.get("capabilities") or {}).get("drop") or []):
            yield w.resource, f"{c.label()} does not drop ALL capabilities"


@rule(
    "YK-PSS-005",
    family=FAMILY,
    title="Only NET_BIND_SERVICE may be added",
    message="Restricted pods may add back only NET_BIND_SERVICE.",
    fix="Remove every entry of `securityContext.capabilities.add` other than NET_BIND_SERVICE.",
)
def added_capabilities(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        extra = [
            cap
            for cap in (c.security.get("capabilities") or {}).get("add") or []
            if cap not in ("NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE")
        ]
        if extra:
            yield w.resource, f"{c.label()} adds capabilities {', '.join(map(str, extra))}"


@rule(
    "YK-PSS-006",
    family=FAMILY,
    title="Seccomp profile RuntimeDefault or Localhost",
    message="Restricted pods must run under a seccomp profile (RuntimeDefault or Localhost).",
    fix="Set `securityContext.seccompProfile.type: RuntimeDefault` on the pod (or every container).",
)
def seccomp(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        # PSS: a value set at pod level must be allowed even when every container overrides it.
        pod_type = (w.pod_security.get("seccompProfile") or {}).get("type")
        if pod_type is not None and pod_type not in ("RuntimeDefault", "Localhost"):
            yield w.resource, f"pod has seccomp profile {pod_type}"
    for w, c in _each(ctx):
        profile = c.security.get("seccompProfile") or w.pod_security.get("seccompProfile") or {}
        if profile.get("type") not in ("RuntimeDefault", "Localhost"):
            yield w.resource, f"{c.label()} has seccomp profile {profile.get('type') or 'unset'}"


@rule(
    "YK-PSS-007",
    family=FAMILY,
    title="No host namespaces or host processes",
    message="Sharing the node's network, PID or IPC namespace, or running a Windows HostProcess "
    "container, breaks pod isolation.",
    fix="Remove `hostNetwork`, `hostPID`, `hostIPC` and `windowsOptions.hostProcess` from the pod spec.",
)
def host_namespaces(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        used = [k for k in ("hostNetwork", "hostPID", "hostIPC") if w.pod_spec.get(k)]
        if (w.pod_security.get("windowsOptions") or {}).get("hostProcess"):
            used.append("windowsOptions.hostProcess")
        used += [
            f"{c.label()} windowsOptions.hostProcess"
            for c in w.containers
            if (c.security.get("windowsOptions") or {}).get("hostProcess")
        ]
        if used:
            yield w.resource, f"pod uses {', '.join(used)}"


@rule(
    "YK-PSS-008",
    family=FAMILY,
    title="No host ports",
    message="A hostPort binds a port on the node, bypassing Services and NetworkPolicies.",
    fix="Remove `hostPort` from the container ports; expose the port through a Service.",
)
def host_ports(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        for port in c.ports:
            if port.get("hostPort"):
                yield w.resource, f"{c.label()} binds hostPort {port['hostPort']}"


@rule(
    "YK-PSS-009",
    family=FAMILY,
    title="No hostPath volumes",
    message="hostPath volumes expose the node's file system to the pod.",
    fix="Use an emptyDir, a PersistentVolumeClaim, a ConfigMap or a Secret instead of hostPath.",
)
def host_path(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for vol in w.volumes:
            if "hostPath" in vol:
                yield w.resource, f"volume {vol.get('name')} is a hostPath ({vol['hostPath'].get('path')})"


@rule(
    "YK-PSS-010",
    family=FAMILY,
    title="Only restricted volume types",
    message="Restricted pods may use only configMap, csi, downwardAPI, emptyDir, ephemeral, image, "
    "persistentVolumeClaim, projected and secret volumes.",
    fix="Replace the volume with one of the allowed types (usually a PersistentVolumeClaim).",
)
def volume_types(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for vol in w.volumes:
            kinds = [k for k in vol if k != "name" and k != "hostPath" and k not in RESTRICTED_VOLUME_TYPES]
            if kinds:
                yield w.resource, f"volume {vol.get('name')} has type {kinds[0]}"


@rule(
    "YK-PSS-011",
    family=FAMILY,
    title="Default /proc mount",
    message="An Unmasked /proc mount exposes kernel interfaces the runtime normally hides.",
    fix="Remove `securityContext.procMount` (or set it to Default).",
)
def proc_mount(ctx: Context) -> Iterator[Finding]:
    for w, c in _each(ctx):
        if c.security.get("procMount", "Default") != "Default":
            yield w.resource, f"{c.label()} sets procMount {c.security['procMount']}"


@rule(
    "YK-PSS-012",
    family=FAMILY,
    title="Only safe sysctls",
    message="Sysctls outside the namespaced safe set can affect the whole node.",
    fix="Remove the sysctl from `securityContext.sysctls` or use one of the safe set.",
)
def sysctls(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        for item in w.pod_security.get("sysctls") or []:
            if item.get("name") not in SAFE_SYSCTLS:
                yield w.resource, f"pod sets unsafe sysctl {item.get('name')}"


@rule(
    "YK-PSS-013",
    family=FAMILY,
    title="AppArmor not disabled",
    message="An AppArmor profile may only be RuntimeDefault or Localhost, never Unconfined.",
    fix="Remove the Unconfined AppArmor profile (field `appArmorProfile` or the beta annotation).",
)
def apparmor(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        profiles = [("pod", w.pod_security.get("appArmorProfile") or {})]
        profiles += [(c.label(), c.security.get("appArmorProfile") or {}) for c in w.containers]
        for where, profile in profiles:
            if profile and profile.get("type") not in APPARMOR_TYPES:
                yield w.resource, f"{where} has AppArmor profile {profile.get('type')}"
        for key, value in (w.pod_meta.get("annotations") or {}).items():
            if key.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or str(value).startswith("localhost/")
            ):
                yield w.resource, f"annotation {key} is {value}"


@rule(
    "YK-PSS-014",
    family=FAMILY,
    title="SELinux options restricted",
    message="SELinux type must be a container type and user/role must stay unset.",
    fix="Remove `seLinuxOptions.user`/`role`; use type container_t (or leave seLinuxOptions out).",
)
def selinux(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        options = [("pod", w.pod_security.get("seLinuxOptions") or {})]
        options += [(c.label(), c.security.get("seLinuxOptions") or {}) for c in w.containers]
        for where, opts in options:
            if opts.get("type", "") not in SELINUX_TYPES:
                yield w.resource, f"{where} sets SELinux type {opts['type']}"
            for key in ("user", "role"):
                if opts.get(key):
                    yield w.resource, f"{where} sets SELinux {key} {opts[key]}"
