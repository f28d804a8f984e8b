"""Where a run is chosen: the variant is picked and written on the run row in the
same transaction that queues it, before anything executes.

The API's dispatch, the scheduler's ticks and webhooks all go through
:meth:`Dispatcher.enqueue`, so every kind of trigger gets the same assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.automations.validation import check_storable
from automation_server.db.engine import Database
from automation_server.db.models import Automation, Revision, Run
from automation_server.dispatch.assignment import choose_variant
from automation_server.errors import Conflict, NotFound, RateLimited, TooLarge
from automation_server.logging import get_logger
from automation_server.queue.manager import RunQueue
from automation_server.queue.newrun import NewRun
from automation_server.runs.schemas import DispatchRequest, RunOut
from automation_server.runs.views import run_out
from automation_server.security.accounts import Caller
from automation_server.statuses import RunStatus, Trigger

log = get_logger("dispatch")

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass
class Batch:
    """What the scheduler reads once for a batch of due automations."""

    revisions: dict[str, Revision] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)  # queued + running runs
    now: datetime | None = None  # the database's time, read once for the batch

    @classmethod
    def load(
        cls, session: Session, queue: RunQueue, automations: Sequence[Automation], now: datetime
    ) -> Batch:
        ids = [a.id for a in automations]
        revisions = session.scalars(
            select(Revision)
            .join(
                Automation,
                and_(
                    Automation.id == Revision.automation_id, Automation.revision == Revision.number
                ),
            )
            .where(Automation.id.in_(ids))
        )
        return cls(
            revisions={r.automation_id: r for r in revisions},
            active=queue.active_counts(session, ids),
            now=now,
        )


def seed_of(automation: Automation) -> str:
    """Sticky hashing is seeded by the experiment, or by the automation without one."""
    return automation.experiment_id or automation.id


class Dispatcher:
    def __init__(
        self,
        db: Database,
        queue: RunQueue,
        *,
        max_payload_bytes: int,
        max_queued_per_org: int = 10_000,
    ) -> None:
        self._db = db
        self._queue = queue
        self._max_payload_bytes = max_payload_bytes
        self._max_queued = max_queued_per_org

    @property
    def queue(self) -> RunQueue:
        return self._queue

    def dispatch(
        self,
        caller: Caller,
        automation_id: str,
        request: DispatchRequest,
        idempotency_key: str | None = None,
    ) -> RunOut:
        """Queue a manual run (202); a repeated Idempotency-Key returns the first run."""
        idempotency_key = idempotency_key or None  # an empty header is no key
        self.check_payload(request.payload, request.assignment_key)
        check_storable(idempotency_key, "Idempotency-Key")
        try:
            return self._dispatch_once(caller, automation_id, request, idempotency_key)
        except IntegrityError:
            # Another request with the same key won the race: answer with its run.
            existing = self._find_idempotent(caller, automation_id, idempotency_key)
            if existing is None:
                raise
            return existing

    def check_payload(self, payload: dict[str, Any], key: str | None = None) -> None:
        """Payloads are stored as JSON: bounded in size and storable as text."""
        check_storable(payload, "payload")
        check_storable(key, "assignment_key")
        size = len(msgspec.json.encode(payload))
        if size > self._max_payload_bytes:
            raise TooLarge(
                f"payload: {size} bytes is over the limit of {self._max_payload_bytes} bytes",
                field="payload",
            )

    def _dispatch_once(
        self,
        caller: Caller,
        automation_id: str,
        request: DispatchRequest,
        idempotency_key: str | None,
    ) -> RunOut:
        with self._db.write() as session:
            found = session.execute(
                # PostgreSQL's time in the same round trip: the run's created_at.
                select(Automation, self._queue.clock.now().label("db_now"))
                .where(
                    Automation.id == automation_id,
                    Automation.org_id == caller.org_id,
                    Automation.deleted_at.is_(None),
                )
                # KEY SHARE: waits for a PATCH (the revision is consistent) but not for
                # other dispatches or workers claiming this automation's runs.
                .with_for_update(read=True, key_share=True, of=Automation)
            ).one_or_none()
            if found is None:
                raise NotFound(f"no automation with id '{automation_id}'")
            automation = found[0]
            # PostgreSQL's now() is the transaction's start whenever it is read; on
            # SQLite (the host's clock) the time is read when the run is inserted.
            now = found[1].astimezone(UTC) if self._queue.clock.postgres else None
            if idempotency_key:
                existing = self._reuse_key(session, automation.id, idempotency_key)
                if existing is not None:
                    return run_out(existing)
            if not automation.enabled:
                raise Conflict(
                    f"automation '{automation.name}' is disabled; enable it with "
                    'PATCH {"enabled": true}',
                    code="automation_disabled",
                )
            run = self.enqueue(
                session,
                automation,
                trigger="manual",
                payload=request.payload,
                variant=request.variant,
                key=request.assignment_key,
                idempotency_key=idempotency_key,
                now=now,
            )
            return run_out(run)

    def _reuse_key(self, session: Session, automation_id: str, key: str) -> Run | None:
        """The run created with this key in the last 24 h; an older one gives the key up."""
        return self._queue.idempotent_run(session, automation_id, key, IDEMPOTENCY_WINDOW)

    def _find_idempotent(
        self, caller: Caller, automation_id: str, key: str | None
    ) -> RunOut | None:
        if not key:
            return None
        with self._db.read() as session:
            run = session.scalars(
                select(Run).where(
                    Run.automation_id == automation_id,
                    Run.org_id == caller.org_id,
                    Run.idempotency_key == key,
                )
            ).one_or_none()
            return run_out(run) if run else None

    def enqueue(
        self,
        session: Session,
        automation: Automation,
        *,
        trigger: str,
        payload: dict[str, Any],
        variant: str | None = None,
        key: str | None = None,
        scheduled_for: datetime | None = None,
        idempotency_key: str | None = None,
        rng: Callable[[], float] | None = None,
        batch: Batch | None = None,
        now: datetime | None = None,
    ) -> Run:
        """Choose the variant and insert the run, in the caller's transaction.

        ``batch`` carries what the scheduler read for many automations at once
        (current revisions, active run counts), saving queries per tick.
        """
        variants = (
            batch.revisions[automation.id].variants
            if batch and automation.id in batch.revisions
            else self._queue.revision_variants(session, automation.id, automation.revision)
        )
        if variants is None:  # every automation is created with revision 1
            raise NotFound(f"automation {automation.id} has no revision {automation.revision}")
        assignment = choose_variant(
            [(v["name"], int(v["weight"])) for v in variants],
            seed=seed_of(automation),
            forced=variant,
            key=key,
            rng=rng,
        )
        chosen = next(v for v in variants if v["name"] == assignment.variant)
        skipped = self._queue_full_reason(session, automation, trigger) or self._overlap_reason(
            session, automation, trigger, batch
        )
        new = NewRun(
            org_id=automation.org_id,
            automation_id=automation.id,
            revision=automation.revision,
            experiment_id=automation.experiment_id,
            variant=assignment.variant,
            assignment=assignment.to_json(),
            method=assignment.method,
            tarball_digest=chosen["digest"],
            environment_digest=chosen.get("environment_digest"),
            trigger=trigger,
            payload=payload,
            now=now or (batch.now if batch and batch.now else None) or self._queue.now(session),
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            skipped_reason=skipped,
        )
        run = self._queue.enqueue(session, new, flush=batch is None)
        if batch is not None and run.status == RunStatus.QUEUED:
            batch.active[automation.id] = batch.active.get(automation.id, 0) + 1
        self._queue.metrics.runs_dispatched.labels(trigger).inc()
        log.info(
            "run.queued" if not skipped else "run.skipped",
            run_id=run.id,
            automation_id=automation.id,
            variant=run.variant,
            trigger=trigger,
            method=assignment.method,
        )
        return run

    def _queue_full_reason(
        self, session: Session, automation: Automation, trigger: str
    ) -> str | None:
        """The per-organization cap on queued runs, for requests (manual and webhook): 429.

        Scheduled ticks are bounded by their schedules and misfire policy, and
        counting the backlog for every tick would make firing thousands of due
        automations quadratic.
        """
        if trigger not in (Trigger.MANUAL, Trigger.WEBHOOK):
            return None
        queued = self._queue.queued_in_org(session, automation.org_id)
        if queued < self._max_queued:
            return None
        message = (
            f"this organization already has {queued} queued runs (limit "
            f"{self._max_queued}); wait for them to run or cancel some"
        )
        raise RateLimited(message, retry_after_s=10)

    def _overlap_reason(
        self, session: Session, automation: Automation, trigger: str, batch: Batch | None = None
    ) -> str | None:
        """Why a scheduled or webhook fire is dropped by ``on_overlap: skip`` (None to run it).

        Manual dispatches are explicit requests and always queue.
        """
        policy = automation.concurrency
        if trigger == Trigger.MANUAL or policy.get("on_overlap", "skip") != "skip":
            return None
        limit = int(policy.get("max_running", 1))
        if batch is not None:
            active = batch.active.get(automation.id, 0)
        else:
            active = self._queue.active_counts(session, [automation.id]).get(automation.id, 0)
        if active < limit:
            return None
        return (
            f"skipped: {active} run(s) already queued or running "
            f"(concurrency.max_running={limit}, on_overlap=skip)"
        )
