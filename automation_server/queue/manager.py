"""The runs table as a queue: the only place that inserts runs or changes their state.

Enqueue, claim, heartbeat, finish, retry, hand back, cancel, reap and expire
all live here; dispatch, the scheduler, workers, retention and the API call
these methods and never build run SQL themselves. Other concepts hear of
created and finished runs through :class:`RunListener`s, called inside the
same transaction.

Every time the queue compares comes from the database's clock
(:mod:`.clock`); the fair claim is in :mod:`.claim` and the retry decisions
in :mod:`.outcomes`.

Fencing: every transition of a running run checks ``lease_owner``, so a worker
whose lease was reaped cannot overwrite what happened since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation, Run, RunMetric, WebhookDelivery
from automation_server.errors import Conflict, NotFound
from automation_server.logging import get_logger
from automation_server.observability import Metrics
from automation_server.queue.claim import ClaimedRun, RevisionCache, load_claimed, start_runs
from automation_server.queue.clock import DbClock
from automation_server.queue.listeners import RunFacts, RunListener
from automation_server.queue.newrun import NewRun
from automation_server.queue.notify import Notifier
from automation_server.queue.outcomes import AttemptState, RetryPolicy, next_step
from automation_server.queue.results import WORKER_LOST, FinishReport, RunResult
from automation_server.queue.statements import (
    STATE,
    attempt_entry,
    facts_of_row,
    facts_of_state,
    final_update,
    finish_select,
    insert_run,
    last_run_update,
    requeue_update,
    streak_step,
)
from automation_server.statuses import ACTIVE, FINISHED, RunStatus

log = get_logger("queue")


class RunQueue:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        metrics: Metrics | None = None,
        *,
        max_infra_attempts: int = 3,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._metrics = metrics or Metrics()
        self._max_infra = max_infra_attempts
        self.clock = DbClock(postgres=not db.is_sqlite)
        self._listeners: list[RunListener] = []
        self._revisions = RevisionCache()

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    def add_listener(self, listener: RunListener) -> None:
        self._listeners.append(listener)

    # ---- enqueue ---------------------------------------------------------------

    def now(self, session: Session) -> datetime:
        """The database's current time (what ``created_at`` and ``available_at`` use)."""
        return self.clock.read(session)

    def enqueue(self, session: Session, new: NewRun, *, flush: bool = True) -> Run:
        """Insert a queued (or skipped) run in the caller's transaction and wake workers.

        ``flush=False`` lets a caller inserting many runs (the scheduler) send them
        in one batch at commit.
        """
        if flush:  # one run: a Core insert, no unit-of-work bookkeeping
            values = new.values()
            session.execute(insert_run(), values)
            run = Run(**values)
        else:  # many runs (the scheduler): added now, sent in one batch at commit
            run = new.to_row()
            session.add(run)
        if run.status == RunStatus.QUEUED:
            self._notifier.runs_queued(session)
        facts = facts_of_row(run)
        for listener in self._listeners:
            listener.run_created(session, facts)
        if run.status == RunStatus.SKIPPED:
            for listener in self._listeners:
                listener.run_finished(session, facts)
        return run

    def idempotent_run(
        self, session: Session, automation_id: str, key: str, window: timedelta
    ) -> Run | None:
        """The run created with this idempotency key within ``window``; an older one
        gives the key up (so it can be used again)."""
        run = session.scalars(
            select(Run).where(Run.automation_id == automation_id, Run.idempotency_key == key)
        ).one_or_none()
        if run is None:
            return None
        if run.created_at >= self.now(session) - window:
            return run
        session.execute(update(Run).where(Run.id == run.id).values(idempotency_key=None))
        return None

    def revision_variants(
        self, session: Session, automation_id: str, number: int
    ) -> list[dict[str, Any]] | None:
        """The variants of an (immutable) revision, cached per process."""
        found = self._revisions.variants(session, {(automation_id, number)})
        return found.get((automation_id, number))

    def active_counts(self, session: Session, automation_ids: Sequence[str]) -> dict[str, int]:
        """Queued plus running runs per automation."""
        rows = session.execute(
            select(Run.automation_id, func.count())
            .where(Run.automation_id.in_(automation_ids), Run.status.in_(ACTIVE))
            .group_by(Run.automation_id)
        ).all()
        return {a: int(n) for a, n in rows}

    def queued_in_org(self, session: Session, org_id: str) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.org_id == org_id, Run.status == RunStatus.QUEUED)
            )
            or 0
        )

    # ---- claim -----------------------------------------------------------------

    def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedRun]:
        """Start up to ``limit`` runnable runs for this worker, oldest first (see claim.py)."""
        if limit <= 0:
            return []
        with self._db.write() as session:
            rows = start_runs(
                session, self.clock, worker_id=worker_id, limit=limit, lease_s=lease_s
            )
            return load_claimed(session, rows, self._revisions)

    # ---- while running ---------------------------------------------------------

    def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], lease_s: float
    ) -> tuple[set[str], set[str]]:
        """Renew leases; returns (runs whose cancel was requested, runs this worker lost)."""
        if not run_ids:
            return set(), set()
        with self._db.write() as session:
            session.execute(
                update(Run)
                .where(
                    Run.id.in_(run_ids),
                    Run.lease_owner == worker_id,
                    Run.status == RunStatus.RUNNING,
                )
                .values(lease_expires_at=self.clock.after(lease_s))
            )
            rows = session.execute(
                select(Run.id, Run.status, Run.lease_owner, Run.cancel_requested).where(
                    Run.id.in_(run_ids)
                )
            ).all()
        cancel = {r.id for r in rows if r.cancel_requested}
        lost = {r.id for r in rows if r.status != RunStatus.RUNNING or r.lease_owner != worker_id}
        lost |= set(run_ids) - {r.id for r in rows}
        return cancel, lost

    # ---- finish ----------------------------------------------------------------

    def finish(
        self,
        run_id: str,
        worker_id: str,
        result: RunResult,
        before_commit: Callable[[], object] | None = None,
    ) -> FinishReport:
        """Record an attempt's end: retry it, or give the run its final status.

        ``before_commit`` runs last inside the transaction: the worker waits there
        for the run's log to be stored, so the log is written while this
        transaction does its work, and is there whenever the status says finished.
        SQLite has a single writer, so there it runs before the transaction: a
        slow object store must not hold every other writer (claims, dispatches)
        behind this run's log.
        """
        wait_first = self._db.is_sqlite
        if wait_first and before_commit is not None:
            before_commit()
        with self._db.write() as session:
            params = {**self.clock.params(), "b_run": run_id}
            row = (
                session.connection()
                .execute(finish_select(self.clock.postgres), params)
                .one_or_none()
            )
            if row is None or row.status != RunStatus.RUNNING or row.lease_owner != worker_id:
                status = RunStatus(row.status) if row else RunStatus.CANCELLED
                log.warning("run.finish_ignored", run_id=run_id, status=status, reason="lease lost")
                return FinishReport(recorded=False, final=False, status=status)
            report = self._settle(session, row, result)
            if before_commit is not None and not wait_first:
                before_commit()
            return report

    def _settle(self, session: Session, row: Any, result: RunResult) -> FinishReport:
        """Apply one attempt's result to a locked run row (finish and reap share this)."""
        state = AttemptState(row.attempt, row.infra_failures, row.cancel_requested)
        step = next_step(result, state, RetryPolicy.of(row.retry, self._max_infra))
        common = {
            "b_id": row.id,
            "b_infra": step.infra_failures,
            "b_log_bytes": result.log_bytes,
            "b_log_truncated": result.log_truncated,
            "b_sandbox": result.sandbox,
            "b_limits": result.limits,
        }
        # The queue's own transaction (finish, reap) holds no ORM objects of these
        # rows: Core execution skips the ORM's bulk-update bookkeeping.
        conn = session.connection()
        if step.retry_in_s is not None:
            entry = attempt_entry(row, result, row.db_now)
            conn.execute(
                requeue_update(self.clock.postgres),
                {
                    **common,
                    **self.clock.params(retry=step.retry_in_s),
                    "b_attempt": row.attempt + 1,
                    "b_attempts": [*row.attempts, entry],
                },
            )
            self._notifier.runs_queued(session)
            log.info(
                "run.retry_queued",
                run_id=row.id,
                origin=result.failure_origin,
                retry_in_s=round(step.retry_in_s, 3),
            )
            return FinishReport(recorded=True, final=False, status=RunStatus.QUEUED)
        conn.execute(
            final_update(),
            {
                **common,
                "b_status": step.status,
                "b_origin": step.failure_origin,
                "b_exit_code": result.exit_code,
                "b_error": result.error,
                "b_duration_ms": result.duration_ms,
                "b_metrics": result.metrics,
                "b_outputs": result.outputs,
                "b_finished_at": row.db_now,
            },
        )
        self._finished(
            session, facts_of_state(row, result, step.status, step.failure_origin), own=True
        )
        # Champion/challenger or a bandit: the worker evaluates the automation next.
        allocation = getattr(row, "allocation", None) or {}
        policy = bool(getattr(row, "auto_promote", None)) or allocation.get("mode") == "bandit"
        return FinishReport(recorded=True, final=True, status=step.status, evaluate=policy)

    def _finished(self, session: Session, facts: RunFacts, *, own: bool = False) -> None:
        """A run's final state: listeners hear of it here, in the same transaction.

        ``own``: the session is the queue's own (no ORM objects loaded), so the
        update runs as Core; a caller's session keeps the ORM's synchronisation."""
        # First the automation's last run and failure streak: listeners read them.
        (session.connection() if own else session).execute(
            last_run_update(),
            {
                "b_aid": facts.automation_id,
                "b_run": facts.id,
                "b_status": facts.status.value,
                "b_streak": streak_step(facts),
            },
        )
        for listener in self._listeners:
            listener.run_finished(session, facts)
        self._metrics.runs_finished.labels(facts.status.value).inc()
        # A slot of this automation is free: other workers may claim its next run.
        # The worker recording its own finish (``own``) wakes itself once the slot
        # is free; a local wake now would claim with the slot still counted busy.
        self._notifier.runs_queued(session, local=not own)

    def hand_back(self, run_id: str, worker_id: str) -> bool:
        """Re-queue a running run without counting an attempt (graceful shutdown)."""
        with self._db.write() as session:
            result = session.execute(
                update(Run)
                .where(
                    Run.id == run_id,
                    Run.lease_owner == worker_id,
                    Run.status == RunStatus.RUNNING,
                )
                .values(
                    status=RunStatus.QUEUED,
                    lease_owner=None,
                    lease_expires_at=None,
                    started_at=None,
                    available_at=self.clock.now(),
                )
            )
            handed = bool(result.rowcount)  # type: ignore[attr-defined]
            if handed:
                self._notifier.runs_queued(session)
            return handed

    # ---- cancel and reap -------------------------------------------------------

    def cancel_queued(self, session: Session, automation_id: str, reason: str) -> int:
        """Cancel every queued run of an automation (it was deleted), in the caller's txn."""
        rows = session.execute(
            select(*STATE, self.clock.now().label("db_now"))
            .where(Run.automation_id == automation_id, Run.status == RunStatus.QUEUED)
            .with_for_update(of=Run)
        ).all()
        for row in rows:
            self._cancel_now(session, row, reason)
        return len(rows)

    def _cancel_now(self, session: Session, row: Any, reason: str) -> None:
        session.execute(
            update(Run)
            .where(Run.id == row.id)
            .values(
                status=RunStatus.CANCELLED,
                cancel_requested=True,
                error=reason,
                finished_at=row.db_now,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        cancelled = RunResult(RunStatus.CANCELLED, None, reason, None)
        self._finished(session, facts_of_state(row, cancelled, RunStatus.CANCELLED, None))

    def cancel(self, org_id: str, run_id: str) -> Run:
        """Cancel a queued run at once, or ask the worker of a running one to stop it."""
        with self._db.write() as session:
            row = session.execute(
                select(*STATE, self.clock.now().label("db_now"))
                .where(Run.id == run_id, Run.org_id == org_id)
                .with_for_update(of=Run)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no run with id '{run_id}'")
            if row.status in FINISHED:
                raise Conflict(f"run {run_id} already finished ({row.status})", code="run_finished")
            if row.status == RunStatus.QUEUED:
                self._cancel_now(session, row, "cancelled before it started")
            else:
                session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
                self._notifier.run_cancelled(session, run_id)
            session.flush()
            run = session.get(Run, run_id, populate_existing=True)
            assert run is not None
            return run

    def reap(self) -> int:
        """Runs whose worker stopped renewing its lease: an infrastructure failure to retry."""
        with self._db.write() as session:
            rows = session.execute(
                select(*STATE, Automation.retry, self.clock.now().label("db_now"))
                .join(Automation, Automation.id == Run.automation_id)
                .where(Run.status == RunStatus.RUNNING, Run.lease_expires_at < self.clock.now())
                .with_for_update(of=Run, skip_locked=True)
                .limit(100)
            ).all()
            for row in rows:
                lost = RunResult.infrastructure(WORKER_LOST)
                report = self._settle(session, row, lost)
                log.warning(
                    "run.reaped",
                    run_id=row.id,
                    automation_id=row.automation_id,
                    status=report.status,
                    attempt=row.attempt,
                )
        return len(rows)

    # ---- retention ------------------------------------------------------------

    def expire_finished(self, session: Session, before: datetime, limit: int) -> list[str]:
        """Delete up to ``limit`` runs that finished before ``before``; their ids."""
        ids = list(
            session.scalars(
                select(Run.id)
                .where(Run.status.in_(FINISHED), Run.finished_at < before)
                .limit(limit)
            )
        )
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            session.execute(delete(RunMetric).where(RunMetric.run_id.in_(chunk)))
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.run_id.in_(chunk)))
            session.execute(delete(Run).where(Run.id.in_(chunk)))
        return ids

    def logs_to_forget(self, session: Session, before: datetime, limit: int) -> list[str]:
        """Runs finished before ``before`` that still have a log; marks them as having none."""
        ids = list(
            session.scalars(
                select(Run.id)
                .where(Run.status.in_(FINISHED), Run.finished_at < before, Run.log_bytes > 0)
                .limit(limit)
            )
        )
        if ids:
            session.execute(
                update(Run).where(Run.id.in_(ids)).values(log_bytes=0, log_truncated=False)
            )
        return ids
