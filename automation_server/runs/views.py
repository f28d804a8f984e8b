"""Run rows to the API's run record."""

from __future__ import annotations

from automation_server.db.models import Run
from automation_server.ids import to_rfc3339
from automation_server.runs.schemas import AssignmentOut, AttemptOut, RunOut


def run_out(run: Run) -> RunOut:
    a = run.assignment
    return RunOut(
        id=run.id,
        automation_id=run.automation_id,
        automation_revision=run.automation_revision,
        experiment_id=run.experiment_id,
        variant=run.variant,
        assignment=AssignmentOut(
            method=a["method"],
            bucket=a.get("bucket"),
            key=a.get("key"),
            weights=dict(a.get("weights", {})),
        ),
        tarball_digest=run.tarball_digest,
        environment_digest=run.environment_digest,
        trigger=run.trigger,
        scheduled_for=to_rfc3339(run.scheduled_for),
        status=run.status,  # type: ignore[arg-type]
        failure_origin=run.failure_origin,  # type: ignore[arg-type]
        attempt=run.attempt,
        attempts=[AttemptOut(**x) for x in run.attempts],
        exit_code=run.exit_code,
        error=run.error,
        created_at=to_rfc3339(run.created_at) or "",
        started_at=to_rfc3339(run.started_at),
        finished_at=to_rfc3339(run.finished_at),
        duration_ms=run.duration_ms,
        metrics=dict(run.metrics),
        outputs=dict(run.outputs),
        log_bytes=run.log_bytes,
        log_truncated=run.log_truncated,
        sandbox=run.sandbox,
        limits=dict(run.limits) if run.limits else None,
    )
