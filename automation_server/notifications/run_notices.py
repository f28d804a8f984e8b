"""``run.failed`` and ``run.timed_out``: the queue tells this listener of every run's
final state, in the transaction that records it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.db.models import Automation, Run
from automation_server.ids import to_rfc3339
from automation_server.notifications.events import NotifyEvent
from automation_server.notifications.outbox import Outbox
from automation_server.queue.listeners import RunFacts
from automation_server.statuses import RunStatus

EVENTS = {RunStatus.FAILED: NotifyEvent.RUN_FAILED, RunStatus.TIMED_OUT: NotifyEvent.RUN_TIMED_OUT}


class RunNotices:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def run_created(self, session: Session, run: RunFacts) -> None:
        return None

    def run_finished(self, session: Session, run: RunFacts) -> None:
        event = EVENTS.get(run.status)
        if event is None:
            return
        channels = self._outbox.channels_for(session, run.org_id, event, run.automation_id)
        if not channels:  # the common case costs one small query, only on failures
            return
        name = session.scalar(select(Automation.name).where(Automation.id == run.automation_id))
        self._outbox.write(
            session,
            channels,
            run.org_id,
            event,
            f"run:{run.id}",
            {"id": run.automation_id, "name": str(name)},
            run=_run_json(session, run.id),
        )


def _run_json(session: Session, run_id: str) -> dict[str, Any] | None:
    """The run's outcome as the run record names it (GET /v1/runs/{id} has the rest)."""
    # populate_existing: the queue changed the row with a Core UPDATE in this session.
    row = session.get(Run, run_id, populate_existing=True)
    if row is None:
        return None
    return {
        "id": row.id,
        "status": row.status,
        "automation_id": row.automation_id,
        "revision": row.automation_revision,
        "experiment_id": row.experiment_id,
        "variant": row.variant,
        "trigger": row.trigger,
        "attempt": row.attempt,
        "failure_origin": row.failure_origin,
        "exit_code": row.exit_code,
        "error": row.error,
        "duration_ms": row.duration_ms,
        "created_at": to_rfc3339(row.created_at),
        "finished_at": to_rfc3339(row.finished_at),
    }
