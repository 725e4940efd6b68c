"""Certificates and kubeconfigs of the local cluster, made with the openssl CLI.

One CA signs everything: serving certificates for etcd, the API server and the
kubelet, and a client certificate per component (its user name is the CN, its
groups the O fields, as the API server's x509 authenticator reads them).
Keys are ECDSA P-256: fast to generate and accepted by every component.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from yuxi_k8s.cluster.local import layout

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-300:]}")


def make_ca(pki: Path) -> KeyPair:
    pair = KeyPair(pki / "ca.crt", pki / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-nodes", *EC, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-subj", "/CN=yuxi-k8s-ca", "-days", "3650",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def issue(
    ca: KeyPair,
    name: str,
    cn: str,
    *,
    groups: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    server: bool = False,
) -> KeyPair:
    """A leaf certificate signed by *ca*, written to <pki>/<name>.crt/.key."""
    pki = ca.cert.parent
    pair = KeyPair(pki / f"{name}.crt", pki / f"{name}.key")
    subject = "".join(f"/O={g}" for g in groups) + f"/CN={cn}"
    usages = "serverAuth,clientAuth" if server else "clientAuth"
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usages}",
    ]
    sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    with tempfile.TemporaryDirectory(prefix="yuxi-pki-") as tmp:
        csr = Path(tmp) / "req.csr"
        extfile = Path(tmp) / "ext.cnf"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", "-nodes", *EC, "-keyout", str(pair.key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-set_serial", str(secrets.randbits(63)), "-days", "825", "-extfile", str(extfile),
            "-out", str(pair.cert),
        )  # fmt: skip
    pair.key.chmod(0o600)
    return pair


def make_service_account_key(pki: Path) -> KeyPair:
    """The key pair that signs and verifies ServiceAccount tokens (cert field = public key)."""
    pair = KeyPair(pki / "sa.pub", pki / "sa.key")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(pair.key))
    _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    pair.key.chmod(0o600)
    return pair


def write_kubeconfig(path: Path, ca: KeyPair, client: KeyPair, user: str, server: str) -> Path:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "yuxi-k8s", "cluster": {"server": server, "certificate-authority-data": b64(ca.cert)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)},
            }
        ],
        "contexts": [{"name": "yuxi-k8s", "context": {"cluster": "yuxi-k8s", "user": user}}],
        "current-context": "yuxi-k8s",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    service_account: KeyPair
    etcd_server: KeyPair
    etcd_client: KeyPair
    apiserver: KeyPair
    apiserver_kubelet_client: KeyPair
    kubelet_server: KeyPair


# (file name, CN, groups) of every client that gets a kubeconfig.
KUBECONFIG_CLIENTS = {
    "admin": ("yuxi-k8s-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kubelet": (f"system:node:{layout.NODE_NAME}", ("system:nodes",)),
    "kube-proxy": ("system:kube-proxy", ()),
    "kube-router": ("yuxi-k8s:kube-router", ()),
    "provisioner": ("yuxi-k8s:provisioner", ()),
}


def create_all(pki: Path, config_dir: Path) -> Pki:
    """Every certificate and kubeconfig the cluster needs; the admin kubeconfig at layout.KUBECONFIG."""
    pki.mkdir(parents=True, exist_ok=True)
    ca = make_ca(pki)
    api_names = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
        "localhost",
        layout.NODE_NAME,
    )
    result = Pki(
        ca=ca,
        service_account=make_service_account_key(pki),
        etcd_server=issue(ca, "etcd-server", "etcd", dns=("localhost",), ips=("127.0.0.1",), server=True),
        etcd_client=issue(ca, "apiserver-etcd-client", "kube-apiserver-etcd-client"),
        apiserver=issue(
            ca,
            "apiserver",
            "kube-apiserver",
            dns=api_names,
            ips=(layout.NODE_IP, layout.KUBERNETES_SERVICE_IP, "127.0.0.1"),
            server=True,
        ),
        apiserver_kubelet_client=issue(
            ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", groups=("system:masters",)
        ),
        kubelet_server=issue(
            ca,
            "kubelet-server",
            layout.NODE_NAME,
            dns=(layout.NODE_NAME,),
            ips=(layout.NODE_IP,),
            server=True,
        ),
    )
    for name, (cn, groups) in KUBECONFIG_CLIENTS.items():
        client = issue(ca, f"{name}-client", cn, groups=groups)
        path = layout.KUBECONFIG if name == "admin" else config_dir / f"{name}.kubeconfig"
        write_kubeconfig(path, ca, client, cn, layout.API_SERVER)
    return result


def load(pki: Path) -> Pki:
    def pair(name: str) -> KeyPair:
        return KeyPair(pki / f"{name}.crt", pki / f"{name}.key")

    return Pki(
        ca=pair("ca"),
        service_account=KeyPair(pki / "sa.pub", pki / "sa.key"),
        etcd_server=pair("etcd-server"),
        etcd_client=pair("apiserver-etcd-client"),
        apiserver=pair("apiserver"),
        apiserver_kubelet_client=pair("apiserver-kubelet-client"),
        kubelet_server=pair("kubelet-server"),
    )
