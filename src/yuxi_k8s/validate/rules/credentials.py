"""No credentials in ConfigMaps, env literals, URLs or plaintext Secrets outside dev; pods restart when a
rotated Secret changes."""

from __future__ import annotations

import re
from collections.abc import Iterator

from yuxi_k8s.validate.model import Context
from yuxi_k8s.validate.rules import OUTSIDE_DEV, Finding, rule
from yuxi_k8s.validate.rules.references import references
from yuxi_k8s.validate.schemas import is_sops

FAMILY = "credentials"
# Names that hold a credential: the suffix decides (JWT_SECRET_KEY yes, TOKEN_TTL no).
CREDENTIAL_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|SECRET_KEY|TOKEN|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?"
    r"|(?:^|_)AUTH)$",
    re.IGNORECASE,
)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Well-known token shapes, whatever the variable is called.
TOKEN_VALUE = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,})"
)
# --password=hunter2 / --token hunter2 on a command line (not $(VAR)).
FLAG_SECRET = re.compile(
    r"--?(?:[a-z-]*-)?(?:password|passwd|token|secret|api-key|apikey)(?:=|\s+)(?!\$\(|\$\{)\S+",
    re.IGNORECASE,
)
# scheme://user:password@ where the password is not an env interpolation $(VAR) / ${VAR}.
URL_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:(?!\$\(|\$\{)[^/\s@]+@")


def is_credential_name(name: str) -> bool:
    return bool(CREDENTIAL_NAME.search(re.sub(r"[-.]", "_", name)))


@rule(
    "YK-CRED-001",
    family=FAMILY,
    title="No credentials in ConfigMaps",
    message="ConfigMaps are readable by anyone who can read the namespace's configuration and end "
    "up in logs and diffs; credentials belong in Secrets.",
    fix="Move the value to a Secret (ExternalSecret/SOPS outside dev) and reference it with secretKeyRef.",
)
def configmap_credentials(ctx: Context) -> Iterator[Finding]:
    for cm in ctx.of_kind("ConfigMap"):
        for key, value in (cm.obj.get("data") or {}).items():
            text = str(value or "")
            if text and is_credential_name(key):
                yield cm, f"key {key} holds a credential"
            elif PRIVATE_KEY.search(text):
                yield cm, f"key {key} holds a private key"
            elif TOKEN_VALUE.search(text):
                yield cm, f"key {key} holds an API token"


@rule(
    "YK-CRED-002",
    family=FAMILY,
    title="No credentials in env literals or arguments",
    message="An env `value` is stored in the pod spec in plain text, visible to every reader "
    "of the workload.",
    fix="Use `valueFrom.secretKeyRef` for the variable (and `$(VAR)` in command/args).",
)
def env_credentials(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        for env in c.spec.get("env") or []:
            value = str(env.get("value") or "")
            # `neo4j/$(NEO4J_PASSWORD)` composes a Secret-backed variable: not a literal.
            literal = re.sub(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", "", value)
            if literal.strip("/:@ ") != value.strip("/:@ ") and not TOKEN_VALUE.search(literal):
                continue
            if value and (is_credential_name(str(env.get("name", ""))) or TOKEN_VALUE.search(value)):
                yield c.workload.resource, f"{c.label()} env {env['name']} is a literal credential"
        for field in ("command", "args"):
            items = list(map(str, c.spec.get(field) or []))
            line = " ".join(items)
            match = FLAG_SECRET.search(line) or TOKEN_VALUE.search(line)
            if match:
                # Where it is, never what: reports end up in CI logs and code-scanning alerts.
                at = _item_at(items, match.start())
                yield c.workload.resource, f"{c.label()} {field}[{at}] passes a literal credential"


def _item_at(items: list[str], offset: int) -> int:
    """The index of the list item in which *offset* of ``" ".join(items)`` falls."""
    end = 0
    for i, item in enumerate(items):
        end += len(item) + 1
        if offset < end:
            return i
    return len(items) - 1


@rule(
    "YK-CRED-003",
    family=FAMILY,
    title="No passwords inside URLs",
    message="A URL of the form scheme://user:password@host outside a Secret leaks the password.",
    fix="Keep the URL without credentials and pass the password from a Secret "
    "(or build the URL from $(VAR) references to Secret-backed env vars).",
)
def url_credentials(ctx: Context) -> Iterator[Finding]:
    for cm in ctx.of_kind("ConfigMap"):
        for key, value in (cm.obj.get("data") or {}).items():
            if URL_USERINFO.search(str(value or "")):
                yield cm, f"key {key} contains a URL with a password"
    for c in ctx.containers():
        texts = [(f"env {e.get('name')}", e.get("value")) for e in c.spec.get("env") or []]
        texts += [("command", " ".join(map(str, c.spec.get("command") or [])))]
        texts += [("args", " ".join(map(str, c.spec.get("args") or [])))]
        for where, text in texts:
            if text and URL_USERINFO.search(str(text)):
                yield c.workload.resource, f"{c.label()} {where} contains a URL with a password"


@rule(
    "YK-CRED-004",
    family=FAMILY,
    title="No plaintext Secrets outside dev",
    message="A Secret rendered from git in staging or prod means the credential sits in git in plain text.",
    fix="Deliver it with an ExternalSecret (components/external-secrets) or encrypt it with SOPS.",
    envs=OUTSIDE_DEV,
)
def plaintext_secrets(ctx: Context) -> Iterator[Finding]:
    for secret in ctx.of_kind("Secret"):
        if is_sops(secret.obj) or secret.obj.get("type") == "kubernetes.io/service-account-token":
            continue
        if any(secret.obj.get("data") or {}) or any(secret.obj.get("stringData") or {}):
            yield secret, "Secret with plaintext values in the render"


# Credential rotation. A Secret of the render made by a kustomize generator gets a new name (hash
# suffix) when its content changes, so the pods that reference it roll on the next apply. A Secret
# written by a controller (External Secrets from the secret store, CloudNativePG's `<cluster>-app`)
# keeps its name, and the kubelet never re-reads environment variables: a rotated password reaches
# running pods only when something restarts them, here Stakater Reloader (components/secret-rotation).
# Reloader's annotations that restart a workload when a Secret it references changes.
RELOAD_ALL = ("reloader.stakater.com/auto", "secret.reloader.stakater.com/auto")
RELOAD_NAMED = "secret.reloader.stakater.com/reload"


@rule(
    "YK-CRED-005",
    family=FAMILY,
    title="Pods restart when a rotated Secret changes",
    message="A Secret written by a controller (an ExternalSecret's target, CloudNativePG's generated "
    "`<cluster>-app`) changes in place when the credential is rotated in the store, but the pods keep "
    "the old value in their environment until they restart: the app then fails to log in once the old "
    "password is revoked.",
    fix='Annotate the workload `secret.reloader.stakater.com/auto: "true"` (components/secret-rotation does '
    "so for every Deployment) and run Stakater Reloader; or list the Secrets in "
    "`secret.reloader.stakater.com/reload`.",
    envs=OUTSIDE_DEV,
)
def restarts_on_rotation(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        if not w.long_running:
            continue
        annotations = w.resource.annotations
        if any(str(annotations.get(a, "")).lower() == "true" for a in RELOAD_ALL):
            continue
        named = {n.strip() for n in str(annotations.get(RELOAD_NAMED, "")).split(",") if n.strip()}
        in_place = sorted(
            {
                ref.name
                for ref in references(w)
                if ref.kind == "Secret" and ctx.find("Secret", w.namespace, ref.name) is None
            }
            - named
        )
        if in_place:
            yield (
                w.resource,
                f"reads Secret(s) {', '.join(in_place)}, changed in place on rotation, and never restarts",
            )
