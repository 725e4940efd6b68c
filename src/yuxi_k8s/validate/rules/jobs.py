"""Jobs are bounded: a retry limit and a deadline or clean-up TTL."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, Resource, job_spec
from yuxi_k8s.validate.rules import Finding, rule

FAMILY = "jobs"


@rule(
    "YK-JOB-001",
    family=FAMILY,
    title="Job sets backoffLimit",
    message="Without an explicit backoffLimit a failing Job retries 6 times with growing delays, "
    "hiding the failure for minutes.",
    fix="Set `spec.backoffLimit` (e.g. 2) on the Job (or the CronJob's jobTemplate).",
)
def backoff_limit(ctx: Context) -> Iterator[Finding]:
    for res in ctx.of_kind("Job", "CronJob"):
        spec = job_spec(res) or {}
        if "backoffLimit" not in spec:
            yield res, "no backoffLimit"


@rule(
    "YK-JOB-002",
    family=FAMILY,
    title="Job has a deadline or TTL",
    message="An unbounded Job can hang forever (no activeDeadlineSeconds) or pile up finished pods "
    "(no ttlSecondsAfterFinished).",
    fix="Set `spec.activeDeadlineSeconds` or `spec.ttlSecondsAfterFinished`.",
)
def deadline(ctx: Context) -> Iterator[Finding]:
    for res in ctx.of_kind("Job", "CronJob"):
        spec = job_spec(res) or {}
        if "activeDeadlineSeconds" not in spec and "ttlSecondsAfterFinished" not in spec:
            yield res, "neither activeDeadlineSeconds nor ttlSecondsAfterFinished"


WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"


def _wave(res: Resource) -> float:
    """Argo CD order: PreSync hooks first, then sync waves (default 0)."""
    if "PreSync" in str(res.annotations.get(HOOK, "")):
        return float("-inf")
    try:
        return int(str(res.annotations.get(WAVE, "0")))
    except ValueError:
        return 0


@rule(
    "YK-JOB-003",
    family=FAMILY,
    title="Migration runs before the app (Argo CD)",
    message="The migration Job must finish before the api rolls out; in Argo CD that means a PreSync hook or "
    "a sync-wave lower than the api's (Flux orders it with a separate Kustomization and dependsOn).",
    fix='Annotate the Job `argocd.argoproj.io/sync-wave: "1"` (or hook: PreSync) and the api/worker '
    'Deployments with a higher wave (e.g. "2").',
)
def migration_order(ctx: Context) -> Iterator[Finding]:
    settings = ctx.setting("migrations", {}) or {}
    job_component = settings.get("job_component", "migrate")
    before = set(settings.get("before", ["api", "worker"]))
    jobs = [w for w in ctx.workloads if w.kind == "Job" and w.component == job_component]
    apps = [w for w in ctx.workloads if w.kind != "Job" and w.component in before]
    for job in jobs:
        for app in apps:
            if app.namespace == job.namespace and _wave(job.resource) >= _wave(app.resource):
                yield (
                    job.resource,
                    (
                        f"sync-wave {job.resource.annotations.get(WAVE, '0')} is not before "
                        f"{app.resource} (wave {app.resource.annotations.get(WAVE, '0')})"
                    ),
                )
