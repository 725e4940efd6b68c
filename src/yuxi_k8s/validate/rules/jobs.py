"""Jobs are bounded: a retry limit and a deadline or clean-up TTL."""

from __future__ import annotations

from collections.abc import Iterator

from yuxi_k8s.validate.model import Context, job_spec
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
