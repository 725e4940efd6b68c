"""The application's contract held to every render (src/yuxi_k8s/app/contracts/<version>.yaml).

A container is the application's when its image is one the contract names (``yuxi-know-api``
for the api, the worker and the kit's CLI; ``yuxi-know-sandbox-provisioner``), and it runs one
of the contract's components when its command is that component's (behind the kit's
``yuxi-k8s-app`` wrapper or not). The variables a container sets are its ``env`` and the keys
of the ConfigMaps and Secrets its ``envFrom`` names, as far as the render shows them. Every
fact about the application comes from :mod:`yuxi_k8s.app.contract`; nothing here names a
variable the contract does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yuxi_k8s.app import contract as app_contract
from yuxi_k8s.validate.model import Container, Context, Workload, map_matches
from yuxi_k8s.validate.pulled import IMAGE_VARIABLES  # images the application starts at run time
from yuxi_k8s.validate.rules import OUTSIDE_DEV, Finding, rule
from yuxi_k8s.validate.rules.images import RESERVED_HOST, registry_host, split_image
from yuxi_k8s.validate.rules.references import available_keys

FAMILY = "application"
# The kit's commands that run the application's own command after them (in the api image).
WRAPPERS = ("yuxi-k8s-app",)
VAR_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# A URL whose scheme is a variable (`$(REDIS_SCHEME)://...`: redis or rediss, a setting): parsed as
# any URL, its credentials being what YK-APP-003 checks.
SCHEME_REF = re.compile(r"^\$\([A-Za-z_][A-Za-z0-9_]*\)(?=://)")
# Variables every replica must agree on, where the contract of the version reads them.
SHARED_ACROSS_REPLICAS = ("JWT_SECRET_KEY", "YUXI_ENV", "YUXI_INSTANCE_ID")
SANDBOX_PROVIDER, SANDBOX_URL = "SANDBOX_PROVIDER", "SANDBOX_PROVISIONER_URL"
CHECKPOINTER = "LANGGRAPH_CHECKPOINTER_BACKEND"


def load_contract() -> app_contract.Contract:
    """The contract of the version the kit deploys (tests replace this to try other versions)."""
    return app_contract.load()


@dataclass(frozen=True)
class Source:
    """Where one variable of a container comes from."""

    kind: str  # value | secret | configmap | field | resource | secret-keys (envFrom, keys only)
    value: str | None = None  # the literal (value, or the ConfigMap's resolved value)
    ref: tuple[str, str] | None = None  # (object, key) of a Secret or ConfigMap
    optional: bool = False
    position: int = -1  # index in `env`; -1 for envFrom (defined before every `env` entry)

    def signature(self) -> object:
        return self.value if self.value is not None else (self.kind, self.ref)


@dataclass
class AppContainer:
    container: Container
    group: str
    component: str | None  # the contract component it runs; None: the app's image running something else
    env: dict[str, Source] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)  # envFrom sources whose keys are unknown

    @property
    def workload(self) -> Workload:
        return self.container.workload

    def label(self) -> str:
        return self.container.label()

    def value(self, name: str, contract: app_contract.Contract) -> str | None:
        """The variable's literal value, else the contract's default; None when neither is known."""
        src = self.env.get(name)
        if src is not None:
            return src.value
        var = contract.env_group(self.group).get(name)
        return var.default if var else None


def _image_components(contract: app_contract.Contract) -> dict[str, list[tuple[str, dict]]]:
    """Image name -> [(component, its contract entry)] for components that read a group's env."""
    out: dict[str, list[tuple[str, dict]]] = {}
    for name, comp in contract.components.items():
        if isinstance(comp, dict) and comp.get("reads_env_of") and comp.get("image"):
            out.setdefault(str(comp["image"]), []).append((name, comp))
    return out


def _runs(command: list[str], component_command: list[str]) -> bool:
    if command and command[0] in WRAPPERS:
        command = command[1:]
    return len(command) >= 2 and command[:2] == [str(c) for c in component_command[:2]]


def _resolve_env(ctx: Context, app: AppContainer) -> None:
    spec, ns = app.container.spec, app.workload.namespace
    for src in spec.get("envFrom") or []:
        if not isinstance(src, dict):
            continue
        prefix = str(src.get("prefix") or "")
        for kind, field_ in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field_ not in src:
                continue
            ref = src.get(field_) or {}
            name, optional = str(ref.get("name", "")), bool(ref.get("optional"))
            obj = ctx.find(kind, ns, name)
            if kind == "ConfigMap" and obj is not None:
                for key, value in (obj.obj.get("data") or {}).items():
                    app.env[prefix + str(key)] = Source("configmap", str(value), (name, str(key)), optional)
                continue
            keys = available_keys(ctx, "Secret", ns, name) if kind == "Secret" else False
            if isinstance(keys, set):
                for key in keys:
                    app.env[prefix + str(key)] = Source("secret-keys", None, (name, str(key)), optional)
            else:
                app.unresolved.append(f"{kind}/{name}")
    for i, entry in enumerate(spec.get("env") or []):
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        value_from = entry.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            ref = value_from.get("secretKeyRef") or {}
            pair = (str(ref.get("name", "")), str(ref.get("key", "")))
            source = Source("secret", None, pair, bool(ref.get("optional")), i)
        elif "configMapKeyRef" in value_from:
            ref = value_from.get("configMapKeyRef") or {}
            pair = (str(ref.get("name", "")), str(ref.get("key", "")))
            cm = ctx.find("ConfigMap", ns, pair[0])
            known = (cm.obj.get("data") or {}).get(pair[1]) if cm is not None else None
            value = None if known is None else str(known)
            source = Source("configmap", value, pair, bool(ref.get("optional")), i)
        elif "fieldRef" in value_from:
            source = Source("field", None, None, False, i)
        elif "resourceFieldRef" in value_from:
            source = Source("resource", None, None, False, i)
        else:
            source = Source("value", str(entry.get("value") or ""), None, False, i)
        app.env[str(entry["name"])] = source


def app_containers(ctx: Context, contract: app_contract.Contract) -> list[AppContainer]:
    """The render's containers of the application's images, with their resolved variables."""
    by_image = _image_components(contract)
    found = []
    for c in ctx.containers():
        repo, _, _ = split_image(str(c.spec.get("image", "")))
        candidates = by_image.get(repo.rsplit("/", 1)[-1])
        if not candidates:
            continue
        command = [str(x) for x in (c.spec.get("command") or [])]
        component = next(
            (name for name, comp in candidates if _runs(command, comp.get("command") or [])), None
        )
        entry = dict(candidates).get(component or "", candidates[0][1])
        group = str(entry["reads_env_of"])
        app = AppContainer(c, group, component)
        _resolve_env(ctx, app)
        found.append(app)
    return found


def _running(ctx: Context, contract: app_contract.Contract, group: str) -> list[AppContainer]:
    return [a for a in app_containers(ctx, contract) if a.component and a.group == group]


@rule(
    "YK-APP-001",
    family=FAMILY,
    title="The app reads every variable it is given",
    message="A variable set on the application's containers that the deployed version never reads "
    "(and the kit does not declare) configures nothing: usually a setting of another version "
    "(DATABASE_URL, REDIS_PORT) that leaves the real one unset.",
    fix="Remove it, set the variable the contract names instead (src/yuxi_k8s/app/contracts/), or, "
    "when the kit reads it, declare it with its reason in src/yuxi_k8s/app/kit-env.yaml.",
)
def unread_variables(ctx: Context) -> Iterator[Finding]:
    contract, kit = load_contract(), app_contract.kit_env()
    for app in app_containers(ctx, contract):
        for name in sorted(app.env):
            declared = kit.get(name)
            if contract.reads(app.group, name) or (declared is not None and declared.allowed_in(app.group)):
                continue
            src = app.env[name]
            where = f" (envFrom {src.ref[0]})" if src.position < 0 and src.ref else ""
            yield (
                app.workload.resource,
                f"{app.label()} sets {name}{where}, which Yuxi-Know {contract.version} ({app.group}) never "
                "reads and kit-env.yaml does not declare",
            )


@rule(
    "YK-APP-002",
    family=FAMILY,
    title="Required variables are set, never optional",
    message="The application fails, or runs insecurely, without the variables its contract marks required "
    "(POSTGRES_URL, REDIS_URL, JWT_SECRET_KEY); an `optional: true` reference turns a missing Secret "
    "key into a silently unset variable.",
    fix="Set the variable on every container that runs the application, from a Secret key that exists, "
    "without `optional: true`.",
)
def required_variables(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    for app in app_containers(ctx, contract):
        if app.component is None:
            continue
        for var in contract.required(app.group):
            src = app.env.get(var.name)
            if src is None:
                if not app.unresolved:
                    yield app.workload.resource, f"{app.label()} ({app.component}) does not set {var.name}"
            elif src.optional:
                yield app.workload.resource, f"{app.label()} takes {var.name} from an optional reference"


def _credential_problem(app: AppContainer, name: str, src: Source) -> str | None:
    if src.kind in ("secret", "secret-keys"):
        return None
    if src.kind == "configmap":
        return f"comes from ConfigMap {src.ref[0] if src.ref else '?'}"
    if src.kind != "value":
        return f"comes from a {src.kind} reference, not a Secret"
    text = SCHEME_REF.sub("scheme", src.value or "", count=1)
    split = urlsplit(text) if "://" in text else None
    if split is not None and split.netloc:
        userinfo = split.netloc.rpartition("@")[0] if "@" in split.netloc else ""
        password = userinfo.partition(":")[2]
        if not password:
            return "is a URL that carries no credentials from a Secret"
        wanted = VAR_REF.fullmatch(password)
        if wanted is None:
            return "is a URL with a literal password"
        secret_parts = [wanted.group(1)]
    else:
        if VAR_REF.sub("", text).strip():
            return "is a literal"
        secret_parts = VAR_REF.findall(text)
        if not secret_parts:
            return "is empty"
    for part in secret_parts:
        ref = app.env.get(part)
        if ref is None and not app.unresolved:
            return f"takes its credential from $({part}), which the container does not define"
        if ref is not None and ref.kind not in ("secret", "secret-keys"):
            return f"takes its credential from $({part}), which is not from a Secret"
    return None


@rule(
    "YK-APP-003",
    family=FAMILY,
    title="Credentials come from Secrets",
    message="A variable the contract marks secret (POSTGRES_URL, REDIS_URL, JWT_SECRET_KEY, passwords, "
    "keys) must come from a Secret: a secretKeyRef, or a value whose credential is a $(VAR) of an "
    "earlier secretKeyRef variable (the kubelet assembles the URL). A literal, a ConfigMap or a "
    "password typed into a URL puts the credential in plain configuration.",
    fix="Use `valueFrom.secretKeyRef`, or assemble the URL as scheme://$(USER):$(PASSWORD)@host with "
    "USER and PASSWORD defined above it from secretKeyRefs.",
)
def secret_sources(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    for app in app_containers(ctx, contract):
        for name, src in sorted(app.env.items()):
            var = contract.env_group(app.group).get(name)
            if var is None or not var.secret:
                continue
            problem = _credential_problem(app, name, src)
            if problem:
                yield app.workload.resource, f"{app.label()} {name} {problem}"


def _replicas(ctx: Context, w: Workload) -> int:
    if ctx.hpa_for(w) is not None:
        return 2  # an HPA may run several at any time
    return ctx.effective_replicas(w) or 1


def shared_state_problems(ctx: Context, contract: app_contract.Contract) -> Iterator[Finding]:
    running = _running(ctx, contract, "app")
    workloads = {id(a.workload): a.workload for a in running}
    processes = sum(_replicas(ctx, w) for w in workloads.values())
    if processes < 2:
        return
    if contract.reads("app", CHECKPOINTER):
        for app in running:
            value = app.value(CHECKPOINTER, contract)
            if value != "postgres":
                yield (
                    app.workload.resource,
                    f"{app.label()}: {CHECKPOINTER} is {value or 'unset'} with {processes} app processes "
                    "(sqlite is one file under saves/ that every replica writes)",
                )
    for name in (n for n in SHARED_ACROSS_REPLICAS if contract.reads("app", n)):
        sources = [(a, a.env.get(name)) for a in running]
        signatures = {repr(s.signature()) if s else "unset" for _, s in sources}
        if len(signatures) > 1:
            for app, src in sources:
                shown = "unset" if src is None else (src.value if src.value is not None else src.ref)
                yield app.workload.resource, f"{app.label()}: {name} is {shown}; replicas disagree on it"


@rule(
    "YK-APP-004",
    family=FAMILY,
    title="Several app replicas share their state",
    message="With more than one app process (api and worker replicas together, or an HPA), state that "
    "lives per process or per file breaks: LangGraph's default sqlite checkpointer is one file under "
    "saves/ written by every replica, and values every replica must agree on (the JWT key, the "
    "instance id of versions that read one) must come from one source.",
    fix=f"Set {CHECKPOINTER}=postgres in api-settings, and give every api and worker container the same "
    "source for the shared values.",
)
def shared_state(ctx: Context) -> Iterator[Finding]:
    yield from shared_state_problems(ctx, load_contract())


@rule(
    "YK-APP-005",
    family=FAMILY,
    title="RUNNING_IN_DOCKER comes with MODEL_DIR_IN_DOCKER",
    message="With RUNNING_IN_DOCKER set (any value: the app tests only that it is non-empty) the app takes "
    "local models from MODEL_DIR_IN_DOCKER, and RapidOCR joins paths with it; unset, they fail.",
    fix="Set MODEL_DIR_IN_DOCKER to where the models volume is mounted (/models).",
)
def model_dir(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    for app in app_containers(ctx, contract):
        if not (
            contract.reads(app.group, "RUNNING_IN_DOCKER")
            and contract.reads(app.group, "MODEL_DIR_IN_DOCKER")
        ):
            continue
        running = app.env.get("RUNNING_IN_DOCKER")
        if running is None or running.value == "":
            continue
        models = app.env.get("MODEL_DIR_IN_DOCKER")
        if models is None or models.value == "":
            yield app.workload.resource, f"{app.label()} sets RUNNING_IN_DOCKER without MODEL_DIR_IN_DOCKER"


def _service_host(url: str, namespace: str) -> tuple[str, int] | None:
    split = urlsplit(url)
    host, port = split.hostname, split.port or (443 if split.scheme == "https" else 80)
    if not host:
        return None
    for suffix in (".svc.cluster.local", ".svc"):
        host = host.removesuffix(suffix)
    name, _, ns = host.partition(".")
    if ns and ns != namespace:
        return None
    return name, port


@rule(
    "YK-APP-006",
    family=FAMILY,
    title="The sandbox provisioner the app calls exists",
    message="The agents' file and exec tools ask the sandbox provisioner at SANDBOX_PROVISIONER_URL "
    "(the contract's default when unset); versions that accept only SANDBOX_PROVIDER=provisioner fail "
    "those tools when no provisioner answers there.",
    fix="Add components/sandbox-provisioner (and its ./namespace) to the environment, or point "
    "SANDBOX_PROVISIONER_URL at the provisioner's Service and port.",
)
def sandbox_provisioner(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    provisioner_image = str((contract.components.get("sandbox-provisioner") or {}).get("image", ""))
    for app in _running(ctx, contract, "app"):
        if not contract.reads("app", SANDBOX_URL):
            continue
        provider = app.value(SANDBOX_PROVIDER, contract) if contract.reads("app", SANDBOX_PROVIDER) else None
        if provider not in (None, "provisioner"):
            continue
        url = app.value(SANDBOX_URL, contract) or ""
        target = _service_host(url, app.workload.namespace)
        if target is None:
            yield (
                app.workload.resource,
                f"{app.label()}: {SANDBOX_URL} {url or '(unset)'} names no in-namespace Service",
            )
            continue
        name, port = target
        svc = ctx.find("Service", app.workload.namespace, name)
        if svc is None:
            yield (
                app.workload.resource,
                f"{app.label()}: {SANDBOX_URL} names Service {name}, not in the render",
            )
            continue
        if port not in {p.get("port") for p in svc.spec.get("ports") or [] if isinstance(p, dict)}:
            yield app.workload.resource, f"{app.label()}: Service {name} has no port {port}"
            continue
        backends = [
            w
            for w in ctx.workloads
            if w.namespace == svc.namespace and map_matches(svc.spec.get("selector"), w.pod_labels)
        ]
        serves = any(
            split_image(str(c.spec.get("image", "")))[0].rsplit("/", 1)[-1] == provisioner_image
            for w in backends
            for c in w.main_containers
        )
        if provisioner_image and not serves:
            yield (
                app.workload.resource,
                f"{app.label()}: Service {name} selects no pod running {provisioner_image}",
            )


@rule(
    "YK-APP-007",
    family=FAMILY,
    title="Images the app starts are pinned",
    message="The sandbox provisioner starts sandbox pods from SANDBOX_IMAGE, an image of a third-party "
    "registry that is not in any `images:` list: unset it is upstream's `:latest`, and a moving tag "
    "means every sandbox may run different code.",
    fix="Mirror the sandbox image to your registry and set SANDBOX_IMAGE (site.ConfigMap.yaml) to a "
    "version tag or a digest.",
    envs=OUTSIDE_DEV,
)
def pinned_runtime_images(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    for app in app_containers(ctx, contract):
        for name in (n for n in IMAGE_VARIABLES if contract.reads(app.group, n)):
            src = app.env.get(name)
            if src is None or not src.value:
                yield app.workload.resource, f"{app.label()}: {name} is unset (upstream's default is :latest)"
                continue
            _, tag, digest = split_image(src.value)
            if not digest and (tag is None or tag == "latest"):
                yield app.workload.resource, f"{app.label()}: {name}={src.value} has no version tag or digest"


@rule(
    "YK-APP-008",
    family=FAMILY,
    title="$(VAR) refers to earlier variables",
    message="The kubelet expands $(VAR) in an env value only from variables defined before it (envFrom, "
    "then the env entries above), and in command/args from the container's variables; otherwise the "
    "text stays as it is, and e.g. a database URL reaches the app with `$(POSTGRES_PASSWORD)` in it.",
    fix="Move the referenced variable above the one that uses it, or define it (escape a literal "
    "`$(` as `$$(`).",
)
def expansion_order(ctx: Context) -> Iterator[Finding]:
    for c in ctx.containers():
        defined: set[str] = set()
        resolvable = True
        for src in c.spec.get("envFrom") or []:
            if not isinstance(src, dict):
                continue
            prefix = str(src.get("prefix") or "")
            for kind, field_ in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if field_ in src:
                    keys = available_keys(
                        ctx, kind, c.workload.namespace, str((src[field_] or {}).get("name", ""))
                    )
                    if isinstance(keys, set):
                        defined |= {prefix + k for k in keys}
                    else:
                        resolvable = False
        for entry in c.spec.get("env") or []:
            if not isinstance(entry, dict):
                continue
            value = entry.get("value")
            if isinstance(value, str):
                for ref in VAR_REF.findall(value):
                    if ref not in defined and resolvable:
                        later = any(
                            isinstance(e, dict) and e.get("name") == ref for e in c.spec.get("env") or []
                        )
                        how = "defined after it" if later else "not defined"
                        yield (
                            c.workload.resource,
                            f"{c.label()} env {entry.get('name')} refers to $({ref}), {how}",
                        )
            if entry.get("name"):
                defined.add(str(entry["name"]))
        for field_ in ("command", "args"):
            for ref in VAR_REF.findall(" ".join(map(str, c.spec.get(field_) or []))):
                if ref not in defined and resolvable:
                    yield c.workload.resource, f"{c.label()} {field_} refers to $({ref}), not defined"


@rule(
    "YK-APP-009",
    family=FAMILY,
    title="The app's images come from a registry you set",
    message="The application's images (and the images it starts, SANDBOX_IMAGE) on a reserved host, "
    "such as the kit's placeholder registry.example.invalid or dev's localhost, cannot be pulled: "
    "outside dev every pod of them stays in ImagePullBackOff.",
    fix="Push the images `yuxi-k8s images build` produces to your registry and set it in the overlay's "
    "`images:` (and SANDBOX_IMAGE in site.ConfigMap.yaml); then delete the overlay's allow patch for "
    "this rule.",
    envs=OUTSIDE_DEV,
)
def reserved_registries(ctx: Context) -> Iterator[Finding]:
    contract = load_contract()
    images = {str(c["image"]) for c in contract.components.values() if isinstance(c, dict) and c.get("image")}
    for c in ctx.containers():
        image = str(c.spec.get("image", ""))
        host = registry_host(image)
        if split_image(image)[0].rsplit("/", 1)[-1] in images and host and RESERVED_HOST.search(host):
            yield c.workload.resource, f"{c.label()} image {image} is on {host}"
    for app in app_containers(ctx, contract):
        for name in (n for n in IMAGE_VARIABLES if contract.reads(app.group, n)):
            value = (app.env[name].value or "") if name in app.env else ""
            host = registry_host(value) if value else None
            if host and RESERVED_HOST.search(host):
                yield app.workload.resource, f"{app.label()}: {name}={value} is on {host}"


TEST_HOOKS = "YUXI_K8S_TEST_HOOKS"


@rule(
    "YK-APP-010",
    family=FAMILY,
    title="No test hooks outside dev",
    message=f"{TEST_HOOKS}=1 makes yuxi-k8s-app add a route that enqueues test tasks and a header naming "
    "the pod on every response: for the kit's end-to-end tier, never for users.",
    fix=f"Remove {TEST_HOOKS} from the container's environment.",
    envs=OUTSIDE_DEV,
)
def no_test_hooks(ctx: Context) -> Iterator[Finding]:
    for app in app_containers(ctx, load_contract()):
        src = app.env.get(TEST_HOOKS)
        if src is not None and (src.value or "").strip() not in ("", "0"):
            yield app.workload.resource, f"{app.label()}: {TEST_HOOKS}={src.value}"
