"""Disabling an automation that keeps failing (DESIGN section 9.6).

The queue keeps each automation's streak of consecutive failures the program
caused (``failure_streak``: a success resets it; platform failures,
cancellations and skips leave it alone). This listener, called in the same
transaction, disables the automation once the streak reaches its
``disable_after_failures``, records why, audits it and notifies.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.db.models import Automation
from automation_server.ids import utcnow
from automation_server.logging import get_logger
from automation_server.notifications.events import NotifyEvent
from automation_server.notifications.outbox import Outbox
from automation_server.queue.listeners import RunFacts
from automation_server.queue.notify import Notifier
from automation_server.statuses import FailureOrigin

log = get_logger("automations")

ACTOR = "system:auto-disable"


class AutoDisable:
    def __init__(self, outbox: Outbox, notifier: Notifier) -> None:
        self._outbox = outbox
        self._notifier = notifier

    def run_created(self, session: Session, run: RunFacts) -> None:
        return None

    def run_finished(self, session: Session, run: RunFacts) -> None:
        if run.failure_origin != FailureOrigin.RUN:
            return
        row = session.scalars(
            select(Automation)
            .where(Automation.id == run.automation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()
        if row is None or not row.enabled or row.deleted_at is not None:
            return
        limit = row.disable_after_failures or 0
        if limit <= 0 or row.failure_streak < limit:
            return
        self._disable(session, row, run)

    def _disable(self, session: Session, row: Automation, run: RunFacts) -> None:
        reason = (
            f"disabled after {row.failure_streak} consecutive failed runs "
            f"(disable_after_failures={row.disable_after_failures}); the last was run "
            f"{run.id}: {run.error or run.status.value}"
        )
        row.enabled = False
        row.next_run_at = None
        row.disabled_reason = reason[:2000]
        row.updated_at = utcnow()
        record(
            session,
            org_id=row.org_id,
            actor=ACTOR,
            action="automation.disable",
            resource_type="automation",
            resource_id=row.id,
            before={"enabled": True},
            after={"enabled": False, "disabled_reason": row.disabled_reason, "run_id": run.id},
        )
        self._outbox.add(
            session,
            org_id=row.org_id,
            event=NotifyEvent.AUTOMATION_DISABLED,
            key=f"disabled:{run.id}",
            automation={"id": row.id, "name": row.name},
            run={"id": run.id, "status": run.status.value, "error": run.error},
        )
        self._notifier.schedules_changed(session)
        log.warning("automation.disabled", automation_id=row.id, run_id=run.id, reason=reason)
