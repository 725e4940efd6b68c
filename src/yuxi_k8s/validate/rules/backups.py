"""Backups: prod's PostgreSQL is backed up continuously, and before every migration.

The application's state is in PostgreSQL (settings in database mode, knowledge-base metadata,
agent checkpoints); a prod render whose database has no backup loses it with one bad volume or
one bad migration. What counts as configured (CloudNativePG 1.28):

- a WAL archiver: the Barman Cloud plugin (``spec.plugins`` entry with ``isWALArchiver: true``
  whose ``barmanObjectName`` is an ``ObjectStore`` of the render), or the deprecated in-tree
  ``spec.backup.barmanObjectStore``;
- base backups on a schedule: a ``ScheduledBackup`` of that Cluster with the same method.

A managed database (an ``ExternalName`` Service ``postgres``) is backed up by its provider, which
the render cannot show; an in-cluster PostgreSQL StatefulSet has no backup at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import COMPONENT, Context, Resource, as_mapping, as_mappings
from yuxi_k8s.validate.rules import Finding, rule
from yuxi_k8s.validate.rules.jobs import HOOK, WAVE, _wave

FAMILY = "backups"
CNPG = "postgresql.cnpg.io"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
STAGE = "yuxi-k8s.io/rollout-stage"


def _clusters(ctx: Context) -> list[Resource]:
    return [r for r in ctx.of_kind("Cluster") if r.group == CNPG]


def _archiver(ctx: Context, cluster: Resource) -> tuple[str | None, str | None]:
    """(method, problem): the Cluster's WAL archiving ("plugin:<name>" or "barmanObjectStore"), or
    why there is none."""
    for plugin in as_mappings(cluster.spec.get("plugins")):
        if not plugin.get("isWALArchiver") or plugin.get("enabled") is False:
            continue
        name = str(plugin.get("name", ""))
        store = as_mapping(plugin.get("parameters")).get("barmanObjectName")
        if name == BARMAN_PLUGIN:
            if not store:
                return (
                    None,
                    f"plugin {name} archives WAL but names no ObjectStore (parameters.barmanObjectName)",
                )
            if ctx.find("ObjectStore", cluster.namespace, str(store)) is None:
                return None, f"plugin {name} archives WAL to ObjectStore {store}, which is not in the render"
        return f"plugin:{name}", None
    if as_mapping(as_mapping(cluster.spec.get("backup")).get("barmanObjectStore")):
        return "barmanObjectStore", None
    return None, "no WAL archiving (no spec.plugins entry with isWALArchiver: true, no spec.backup)"


def _method(backup: Resource) -> str:
    method = str(backup.spec.get("method") or "barmanObjectStore")
    if method == "plugin":
        return f"plugin:{as_mapping(backup.spec.get('pluginConfiguration')).get('name', '')}"
    return method


def _backups_of(ctx: Context, cluster: Resource, kind: str) -> list[Resource]:
    return [
        b
        for b in ctx.of_kind(kind)
        if b.group == CNPG
        and b.namespace == cluster.namespace
        and as_mapping(b.spec.get("cluster")).get("name") == cluster.name
    ]


@rule(
    "YK-BAK-001",
    family=FAMILY,
    title="PostgreSQL is backed up (prod)",
    message="prod's PostgreSQL holds the application's state. Without WAL archiving and scheduled base "
    "backups to an object store, a lost volume, a deleted Cluster or a bad migration cannot be undone, and "
    "there is no point in time to restore to.",
    fix="Use components/cloudnative-pg as shipped: the Barman Cloud plugin archives WAL to the "
    "ObjectStore `postgres-backup` (spec.plugins, isWALArchiver: true) and the ScheduledBackup "
    "`postgres-daily` takes base backups; set BACKUP_* in app/site.ConfigMap.yaml. A managed "
    "database: its provider's backups.",
    envs=("prod",),
)
def postgres_backed_up(ctx: Context) -> Iterator[Finding]:
    for cluster in _clusters(ctx):
        method, problem = _archiver(ctx, cluster)
        if problem:
            yield cluster, problem
            continue
        scheduled = _backups_of(ctx, cluster, "ScheduledBackup")
        if not any(_method(s) == method for s in scheduled):
            found = ", ".join(f"{s.name} ({_method(s)})" for s in scheduled) or "none"
            yield (
                cluster,
                f"archives WAL ({method}) but no ScheduledBackup takes base backups that way ({found})",
            )
    for sts in ctx.of_kind("StatefulSet"):
        if sts.labels.get(COMPONENT) == "postgres":
            yield (
                sts,
                "an in-cluster PostgreSQL StatefulSet: nothing backs it up (use components/cloudnative-pg)",
            )


@rule(
    "YK-BAK-002",
    family=FAMILY,
    title="A backup runs before the migration (prod)",
    message="The migrate Job changes the database on every rollout; a base backup taken just before it is "
    "the point to restore to when the migration or the new version goes wrong. It must come first in every "
    "delivery path: Argo CD (a hook in a wave before the Job's), Flux and plain kubectl (the first stage, "
    "`yuxi-k8s.io/rollout-stage: database`, which the migrate stage waits for).",
    fix="Keep components/cloudnative-pg's `pre-migrate` Backup: a Sync hook in wave 0 (hook-delete-policy "
    "BeforeHookCreation) annotated `yuxi-k8s.io/rollout-stage: database`, of the Cluster, with the Cluster's "
    "archiving method.",
    envs=("prod",),
)
def backup_before_migration(ctx: Context) -> Iterator[Finding]:
    jobs = [w.resource for w in ctx.workloads if w.kind == "Job" and w.component == "migrate"]
    for cluster in _clusters(ctx):
        method, _ = _archiver(ctx, cluster)
        for job in (j for j in jobs if j.namespace == cluster.namespace):
            ok = [
                b
                for b in _backups_of(ctx, cluster, "Backup")
                if str(b.annotations.get(HOOK, "")) in ("Sync", "PreSync")
                and _wave(b) < _wave(job)
                and b.annotations.get(STAGE) == "database"
                and (method is None or _method(b) == method)
            ]
            if not ok:
                yield (
                    cluster,
                    f"no Backup of it runs before {job} (wave {job.annotations.get(WAVE, '0')}): want "
                    f"a Backup with {HOOK}: Sync, a lower {WAVE} and {STAGE}: database",
                )


def _store_secrets(store: Resource) -> set[str]:
    """The Secrets an ObjectStore reads its credentials from."""
    credentials = as_mapping(as_mapping(store.spec.get("configuration")).get("s3Credentials"))
    return {
        str(as_mapping(ref).get("name"))
        for ref in credentials.values()
        if isinstance(ref, dict) and as_mapping(ref).get("name")
    }


@rule(
    "YK-BAK-003",
    family=FAMILY,
    title="The archive's credentials outlive the GitOps objects",
    message="The Cluster is never pruned or deleted by GitOps, so it keeps archiving WAL after a Flux "
    "Kustomization or Argo CD Application is deleted. An ExternalSecret with `creationPolicy: Owner` (the "
    "default) makes its Secret a child of the ExternalSecret: deleted with it, the object store's "
    "credentials are gone, archiving fails and the WAL fills the primary's disk.",
    fix="Give the ExternalSecret of the object store's credentials `target.creationPolicy: Orphan` "
    "(components/cloudnative-pg/postgres-backup-s3.ExternalSecret.yaml).",
    envs=("prod",),
)
def archive_credentials_survive(ctx: Context) -> Iterator[Finding]:
    for cluster in _clusters(ctx):
        stores = [
            ctx.find(
                "ObjectStore", cluster.namespace, str(as_mapping(p.get("parameters")).get("barmanObjectName"))
            )
            for p in as_mappings(cluster.spec.get("plugins"))
        ]
        for store in (s for s in stores if s is not None):
            for secret in sorted(_store_secrets(store)):
                for es in ctx.of_kind("ExternalSecret"):
                    target = as_mapping(es.spec.get("target"))
                    if es.namespace != cluster.namespace or str(target.get("name") or es.name) != secret:
                        continue
                    policy = str(target.get("creationPolicy") or "Owner")
                    if policy == "Owner":
                        yield (
                            es,
                            f"writes {secret}, the credentials of ObjectStore {store.name}, with "
                            f"creationPolicy {policy}: deleted with the ExternalSecret",
                        )
