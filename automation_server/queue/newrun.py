"""A run about to be queued: what dispatch decided, before the queue inserts it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation_server.db.models import Run
from automation_server.ids import new_id
from automation_server.statuses import RunStatus


@dataclass(frozen=True)
class NewRun:
    org_id: str
    automation_id: str
    revision: int
    experiment_id: str | None
    variant: str
    assignment: dict[str, Any]
    method: str
    tarball_digest: str
    trigger: str
    payload: dict[str, Any]
    now: datetime  # the database's time: created_at and available_at
    scheduled_for: datetime | None = None
    idempotency_key: str | None = None
    skipped_reason: str | None = None  # set: recorded as ``skipped``, never executed
    environment_digest: str | None = None  # the variant's locked packages, fixed now

    def to_row(self) -> Run:
        return Run(**self.values())

    def values(self) -> dict[str, Any]:
        """The new row's columns (a fresh id each call)."""
        skipped = self.skipped_reason is not None
        return dict(
            id=new_id(),
            org_id=self.org_id,
            automation_id=self.automation_id,
            automation_revision=self.revision,
            experiment_id=self.experiment_id,
            variant=self.variant,
            assignment=self.assignment,
            assignment_method=self.method,
            tarball_digest=self.tarball_digest,
            environment_digest=self.environment_digest,
            trigger=self.trigger,
            scheduled_for=self.scheduled_for,
            status=RunStatus.SKIPPED if skipped else RunStatus.QUEUED,
            failure_origin=None,
            attempt=1,
            infra_failures=0,
            attempts=[],
            exit_code=None,
            error=self.skipped_reason,
            payload=self.payload,
            idempotency_key=self.idempotency_key,
            available_at=self.now,
            cancel_requested=False,
            created_at=self.now,
            finished_at=self.now if skipped else None,
            metrics={},
            outputs={},
            log_bytes=0,
            log_truncated=False,
        )
