"""Issue 21's defects found by reading, second part (8, 10, 14): each replayed without a cluster.

Each test names what it relies on (the app's source, an operator's documented behaviour); the
rehearsal with the real operators is a separate tier.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static.test_first_install import named, render
from yuxi_k8s.paths import REPO_ROOT

SIZES = REPO_ROOT / "components" / "sizes"


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- 8. max_connections covers what the pods may open at the HPA's maximum ----------------------

# superuser_reserved_connections (3, PostgreSQL's default) + the operator's instance manager, its
# metrics exporter and the Barman Cloud plugin (components/sizes/README.md, "Connections").
RESERVED = 3 + 10
HEADROOM = 1.25
# What a rolling update adds at the HPA's maximum: the api's maxSurge (base/api.Deployment.yaml) and
# the worker's default 25 % of 2-4 replicas, rounded up.
API_SURGE = 1


def sqlalchemy_default_pool() -> int:
    """pool_size + max_overflow of SQLAlchemy's QueuePool when create_*engine names neither."""
    from sqlalchemy.pool import QueuePool

    params = inspect.signature(QueuePool.__init__).parameters
    return int(params["pool_size"].default) + int(params["max_overflow"].default)


def app_connections_per_pod(tree: Path) -> int:
    """The app's two pools (yuxi/storage/postgres/manager.py): its SQLAlchemy engine and LangGraph's
    psycopg pool. Read from the pinned source, so a release that sizes them fails here."""
    source = (tree / "backend" / "package" / "yuxi" / "storage" / "postgres" / "manager.py").read_text()
    engine_call = re.search(r"create_async_engine\((.*?)\n\s*\)", source, re.S)
    assert engine_call, "manager.py: create_async_engine call"
    assert not re.search(r"pool_size|max_overflow|poolclass", engine_call.group(1)), (
        "the app now sizes its SQLAlchemy pool: count it here and in components/sizes/README.md"
    )
    langgraph = re.search(r"AsyncConnectionPool\((.*?)\n\s*\)", source, re.S)
    assert langgraph, "manager.py: the LangGraph AsyncConnectionPool"
    max_size = re.search(r"max_size\s*=\s*(\d+)", langgraph.group(1))
    assert max_size, "the LangGraph pool names max_size"
    return sqlalchemy_default_pool() + int(max_size.group(1))


def kit_connections(**engine_kwargs: Any) -> int:
    """The kit's store engine (yuxi_k8s.state.db_backend.make_engine), without connecting."""
    from yuxi_k8s.state.db_backend import make_engine

    engine = make_engine("postgresql+psycopg://u:p@localhost:1/db", **engine_kwargs)
    try:
        return int(engine.pool.size()) + int(engine.pool._max_overflow)
    finally:
        engine.dispose()


def readme_row(title: str) -> dict[str, str]:
    """One row of components/sizes/README.md's table, by size."""
    for line in (SIZES / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == title:
            return dict(zip(("small", "medium", "large"), cells[1:], strict=True))
    raise AssertionError(f"components/sizes/README.md: no row {title!r}")


def size_figures(size: str) -> tuple[int, int, int]:
    """HPA maximum, worker replicas and max_connections of one size, from its files (small: no
    overlay runs CloudNativePG with it, so its README figure, the one for a managed database)."""
    kustomization = yaml.safe_load((SIZES / size / "kustomization.yaml").read_text())
    workers = next(r["count"] for r in kustomization["replicas"] if r["name"] == "worker")
    hpa_max = load(SIZES / size / "api-hpa.patch.yaml")[0]["spec"]["maxReplicas"]
    documented = int(readme_row("PostgreSQL `max_connections`")[size])
    patch = SIZES / size / "cloudnative-pg" / "postgres.patch.yaml"
    if patch.exists():
        shipped = int(load(patch)[0]["spec"]["postgresql"]["parameters"]["max_connections"])
        assert shipped == documented, (size, shipped, documented)
    return hpa_max, workers, documented


def test_the_per_pod_count_is_what_the_docs_state(pinned_tree: Path) -> None:
    # app: 15 + 10; kit: its pool 10, the change-feed listener 1, a reload's connection 1.
    per_pod = app_connections_per_pod(pinned_tree) + kit_connections() + 2
    assert per_pod == 37, per_pod
    assert "may open **37** connections" in (SIZES / "README.md").read_text()
    # The migrate Job: the CLI's engine (pool_size=1, yuxi_k8s.state.commands) + one psycopg connection.
    assert kit_connections(pool_size=1) + 1 == 7


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_max_connections_covers_the_hpa_maximum_with_headroom(size: str, pinned_tree: Path) -> None:
    per_pod = app_connections_per_pod(pinned_tree) + kit_connections() + 2
    migrate = kit_connections(pool_size=1) + 1
    hpa_max, workers, max_connections = size_figures(size)
    pods = hpa_max + API_SURGE + workers + math.ceil(workers * 0.25)
    peak = per_pod * pods + migrate + RESERVED
    assert max_connections >= HEADROOM * peak, (
        f"{size}: max_connections {max_connections} < {HEADROOM} x {peak} "
        f"({pods} pods x {per_pod} + migrate {migrate} + reserved {RESERVED})"
    )
    assert readme_row("PostgreSQL connections the pods may open (below)")[size] == str(peak)


RENDERED_SIZES = [("overlays/prod", "medium"), ("tests/static/combinations/prod-large", "large")]


@pytest.mark.parametrize(("path", "size"), RENDERED_SIZES)
def test_the_rendered_cluster_has_its_sizes_connections_and_guaranteed_qos(path: str, size: str) -> None:
    cluster = named(render(path), "Cluster", "postgres")
    assert cluster["spec"]["postgresql"]["parameters"]["max_connections"] == str(size_figures(size)[2])
    resources = cluster["spec"]["resources"]
    # Guaranteed QoS: every container's requests equal its limits, cpu and memory both.
    assert resources["requests"] == resources["limits"], resources
    assert set(resources["limits"]) == {"cpu", "memory"}


# --- 10. Argo CD's health check of the pre-migrate Backup ------------------------------------------

HEALTH_PATCH = REPO_ROOT / "gitops" / "argocd" / "argocd-cm" / "health-backup.patch.yaml"
HEALTH_KEY = "resource.customizations.health.postgresql.cnpg.io_Backup"


def backup_health(backup: dict[str, Any]) -> dict[str, str]:
    """Run the shipped Lua as Argo CD does: the object as the global `obj`, the script's table back."""
    lupa = importlib.import_module("lupa")  # pinned in constraints.txt, the dev extra: never skipped
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([to_lua(v) for v in value])
        return value

    script = load(HEALTH_PATCH)[0]["data"][HEALTH_KEY]
    runtime.globals().obj = to_lua(backup)
    result = runtime.execute(script)
    return {"status": result["status"], "message": result["message"]}


def a_backup(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    backup: dict[str, Any] = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {"name": "pre-migrate-0123abcd", "namespace": "yuxi-prod", **metadata},
        "spec": {"cluster": {"name": "postgres"}, "method": "plugin"},
    }
    if status is not None:
        backup["status"] = status
    return backup


@pytest.mark.parametrize(
    ("status", "health"),
    [
        (None, "Progressing"),
        ({}, "Progressing"),
        ({"phase": ""}, "Progressing"),
        ({"phase": "pending"}, "Progressing"),
        ({"phase": "started"}, "Progressing"),
        ({"phase": "running"}, "Progressing"),
        ({"phase": "finalizing"}, "Progressing"),
        ({"phase": "completed", "stoppedAt": "2026-05-04T13:31:00Z"}, "Healthy"),
        ({"phase": "failed", "error": "can't execute barman-cloud-backup: exit status 4"}, "Degraded"),
        ({"phase": "walArchivingFailing"}, "Degraded"),
    ],
)
def test_the_backup_health_check_waits_for_completion_and_fails_on_failure(
    status: dict[str, Any] | None, health: str
) -> None:
    assert backup_health(a_backup(status))["status"] == health


def test_a_failed_backup_says_why_and_a_deleted_one_waits() -> None:
    failed = backup_health(a_backup({"phase": "failed", "error": "exit status 4"}))
    assert failed == {"status": "Degraded", "message": "backup failed: exit status 4"}
    deleting = a_backup({"phase": "completed"}, deletionTimestamp="2026-05-04T13:31:00Z")
    assert backup_health(deleting)["status"] == "Progressing"


def test_the_health_check_is_a_merge_patch_of_argocd_cm_alone() -> None:
    (patch,) = load(HEALTH_PATCH)
    assert (patch["kind"], patch["metadata"]) == ("ConfigMap", {"name": "argocd-cm", "namespace": "argocd"})
    assert set(patch["data"]) == {HEALTH_KEY}


# --- 14. the HPA scales on CPU, never on memory -----------------------------------------------------


@pytest.mark.parametrize("path", ["overlays/staging", *(path for path, _ in RENDERED_SIZES)])
def test_the_api_hpa_scales_on_cpu_only(path: str) -> None:
    """A Python process keeps the memory it freed (CPython's arenas, glibc's heap): an HPA on memory
    scales up on a burst and never back down (components/hpa/README.md)."""
    hpa = named(render(path), "HorizontalPodAutoscaler", "api")
    metrics = [(m["type"], m.get("resource", {}).get("name")) for m in hpa["spec"]["metrics"]]
    assert metrics == [("Resource", "cpu")], metrics


# --- 14. MigrationFailed: the Job's Failed condition, not its failed pods ---------------------------


def test_migration_failed_follows_the_jobs_failed_condition() -> None:
    """kube-state-metrics' kube_job_status_failed is the Job's status.failed, a count of failed pods:
    after a retry succeeds it stays 1 until the Job is deleted (ttlSecondsAfterFinished, a day).
    kube_job_failed{condition="true"} is 1 only while the Job has the Failed condition."""
    rule = named(render("overlays/prod"), "PrometheusRule", "yuxi-know")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    expr = rules["YuxiKnowMigrationFailed"]["expr"]
    assert "kube_job_status_failed" not in expr, expr
    assert re.fullmatch(
        r'kube_job_failed\{namespace="yuxi-prod",job_name="migrate",condition="true"\} == 1', expr
    ), expr


# --- 14. the docs say when a pre-migrate backup is taken --------------------------------------------

BACKUP_DOCS = [
    "README.md",
    "docs/deploy.md",
    "overlays/prod/README.md",
    "components/cloudnative-pg/README.md",
    "components/cloudnative-pg/kustomization.yaml",
    "components/cloudnative-pg/pre-migrate-image.Backup.yaml",
]


@pytest.mark.parametrize("path", BACKUP_DOCS)
def test_no_doc_promises_a_backup_on_every_rollout(path: str) -> None:
    """The Backup is named after the api image's digest: under Flux and kubectl, a rollout that
    changes only settings applies the existing (completed) Backup again and takes none."""
    text = " ".join((REPO_ROOT / path).read_text().split())
    claims = ("every rollout's migration", "of every rollout", "before every migration", "every rollout:")
    for claim in claims:
        assert claim not in text, f"{path}: {claim!r}"


def test_the_backup_name_follows_the_image_and_the_docs_say_what_that_means() -> None:
    backup = next(o for o in render("overlays/prod") if o["kind"] == "Backup")
    api = named(render("overlays/prod"), "Deployment", "api")
    digest = api["spec"]["template"]["spec"]["containers"][0]["image"].rsplit("sha256:", 1)[1]
    assert backup["metadata"]["name"] == f"pre-migrate-{digest}"
    deploy = " ".join((REPO_ROOT / "docs/deploy.md").read_text().split())
    assert "**Argo CD**: on every sync" in deploy
    assert "**without a new backup**" in deploy


# --- 14. REDIS_URL: redis:// or rediss:// --------------------------------------------------------------


def redis_settings(path: str) -> tuple[str, set[str]]:
    objs = render(path)
    settings = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("api-settings")
    )
    urls = {
        e["value"]
        for o in objs
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
        for e in c.get("env") or []
        if e["name"] == "REDIS_URL"
    }
    return settings["data"]["REDIS_SCHEME"], urls


@pytest.mark.parametrize("path", ["overlays/dev", "overlays/staging", "overlays/prod"])
def test_redis_url_takes_its_scheme_from_the_settings(path: str) -> None:
    scheme, urls = redis_settings(path)
    assert scheme == "redis"
    assert urls == {"$(REDIS_SCHEME)://:$(REDIS_PASSWORD)@$(REDIS_HOST):6379/0"}, urls


def test_a_managed_redis_over_tls_is_one_site_setting(tmp_path: Path) -> None:
    """EXTERNAL_REDIS_SCHEME: rediss in (a copy of) staging's site settings: every REDIS_URL is rediss."""
    from yuxi_k8s.validate.render import render_one

    for tree in ("base", "components"):
        (tmp_path / tree).symlink_to(REPO_ROOT / tree)
    overlay = tmp_path / "overlays" / "staging"
    shutil.copytree(REPO_ROOT / "overlays" / "staging", overlay)
    site = overlay / "app" / "site.ConfigMap.yaml"
    text = site.read_text()
    assert "  EXTERNAL_REDIS_SCHEME: redis\n" in text
    site.write_text(text.replace("  EXTERNAL_REDIS_SCHEME: redis\n", "  EXTERNAL_REDIS_SCHEME: rediss\n"))
    rendered = render_one(str(overlay))
    assert rendered.error is None, rendered.error
    settings = next(o for o in rendered.objects if o["metadata"]["name"].startswith("api-settings"))
    assert settings["data"]["REDIS_SCHEME"] == "rediss"


# --- 14. the Gateway API is the recommended entry; the Ingress stays an option -------------------------


def test_the_docs_recommend_the_gateway_api_and_list_the_settings_it_reads() -> None:
    """ingress-nginx was retired (best-effort maintenance ended in March 2026): docs/deploy.md leads
    with components/gateway, and the site settings it lists are exactly those the component reads."""
    deploy = (REPO_ROOT / "docs/deploy.md").read_text()
    section = deploy[deploy.index("## Exposing the site: Gateway API or Ingress") :]
    section = section[: section.index("\n## ", 1)]
    assert "**Use the Gateway API**" in section and "retired" in section
    read = set(
        re.findall(
            r"fieldPath: data\.([A-Z_]+)", (REPO_ROOT / "components/gateway/kustomization.yaml").read_text()
        )
    )
    listed = set(re.findall(r"`((?:GATEWAY|INGRESS)_[A-Z_]+)`", section))
    assert read <= listed, read - listed
    # The overlays keep the Ingress (an option, not restructured).
    for env in ("staging", "prod"):
        app = (REPO_ROOT / "overlays" / env / "app" / "kustomization.yaml").read_text()
        assert "../../../components/ingress" in app


# --- 14. nginx resolves MinIO's name per request ----------------------------------------------------

NGINX = REPO_ROOT / "base" / "config" / "nginx"


def run_start_sh(tmp_path: Path, resolv: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "resolv.conf").write_text(resolv)
    env = {
        "PATH": os.environ["PATH"],
        "YUXI_RESOLV_CONF": str(tmp_path / "resolv.conf"),
        "YUXI_NGINX_DNS_DIR": str(tmp_path),
        "YUXI_NGINX": "true",  # instead of nginx: the script's last step, exec'd with nginx's flags
    }
    return subprocess.run(
        ["sh", str(NGINX / "start.sh")], env=env, capture_output=True, text=True, check=False
    )


def test_start_sh_writes_the_pods_resolver_and_search_domain(tmp_path: Path) -> None:
    """A pod's resolv.conf (dnsPolicy ClusterFirst): nginx's resolver takes its nameservers, and the
    Service name gets its first search domain (nginx's resolver applies none)."""
    done = run_start_sh(
        tmp_path,
        "search yuxi-prod.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\nnameserver fd00:10:96::a\noptions ndots:5\n",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "nginx-resolver.conf").read_text() == (
        "resolver 10.96.0.10 [fd00:10:96::a] valid=10s;\nresolver_timeout 5s;\n"
    )
    assert (tmp_path / "nginx-dns-search.conf").read_text() == 'default "yuxi-prod.svc.cluster.local";\n'


def test_start_sh_refuses_a_resolv_conf_without_search_domain(tmp_path: Path) -> None:
    done = run_start_sh(tmp_path, "nameserver 10.96.0.10\n")
    assert done.returncode == 1 and "no nameserver or search domain" in done.stderr


def test_the_object_proxy_resolves_minio_at_request_time() -> None:
    """nginx resolves a literal proxy_pass host once, at start; through a variable it asks the
    resolver per request (nginx docs, ngx_http_proxy_module, proxy_pass)."""
    conf = (NGINX / "nginx.conf").read_text()
    assert "include /tmp/nginx-resolver*.conf;" in conf
    assert re.search(r'map "" \$yuxi_dns_search \{\s*include /tmp/nginx-dns-search\*\.conf;\s*\}', conf)
    objs = render("overlays/prod")
    web = named(objs, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0]
    assert web["command"] == ["sh", "/etc/nginx/yuxi/start.sh"]
    nginx = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("web-nginx")
    )
    assert nginx["data"]["start.sh"] == (NGINX / "start.sh").read_text()
    proxy = nginx["data"]["minio-proxy-pass.conf"]
    assert proxy == 'set $minio_service "minio";\nproxy_pass http://$minio_service.$yuxi_dns_search:9000;\n'


# --- 11. object URLs: http:// and :9000 are the app's literals --------------------------------------


def test_the_app_still_writes_http_object_urls_on_port_9000(pinned_tree: Path) -> None:
    """The docs (components/ingress and components/gateway READMEs) tell an HTTPS site to answer
    TLS on 9000 because 0.6.1 writes `http://HOST_IP:9000/...`: if the app ever takes the scheme or
    the port from a setting, this fails and the advice is to be revisited."""
    client = (pinned_tree / "backend/package/yuxi/storage/minio/client.py").read_text()
    assert 'self.public_endpoint = f"{host_ip}:9000"' in client
    assert 'url = f"http://{self.public_endpoint}/{bucket_name}/{object_name}"' in client
    for readme in ("components/gateway/README.md", "components/ingress/README.md"):
        text = " ".join((REPO_ROOT / readme).read_text().split())
        assert "must answer TLS" in text, readme
