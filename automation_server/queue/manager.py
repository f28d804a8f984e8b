"""The runs table as a queue: the only place that writes queue state.

Enqueue, claim, heartbeat, finish, retry, hand back, cancel and reap all live
here; workers, schedulers and the API call these methods and never build queue
SQL themselves.

Claiming: on PostgreSQL candidates are picked with ``FOR UPDATE SKIP LOCKED``,
so concurrent workers never wait on or take the same row. SQLAlchemy renders
nothing for that clause on SQLite; there :meth:`Database.write` opens every
transaction with ``BEGIN IMMEDIATE``, which serialises claimers on the write
lock, so the same statements are safe. The per-automation ``max_running`` check
locks the candidates' automation rows in id order, so two claimers cannot both
start the last free slot and cannot deadlock each other.

Fencing: every transition of a running run checks ``lease_owner``, so a worker
whose lease was reaped cannot overwrite what happened since.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation, Run
from automation_server.errors import Conflict, NotFound
from automation_server.experiments.rollups import record_finish
from automation_server.ids import to_rfc3339, utcnow
from automation_server.logging import get_logger
from automation_server.observability import Metrics
from automation_server.queue.notify import Notifier

log = get_logger("queue")

FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped"})
RETRYABLE = frozenset({"failed", "timed_out"})
WORKER_LOST = "worker lost"
# Exponential backoff is capped so a misconfigured retry never waits for days.
MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class RunResult:
    """What a worker learned from executing one attempt."""

    status: str
    exit_code: int | None
    error: str | None
    duration_ms: int
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    log_bytes: int = 0
    log_truncated: bool = False
    sandbox: str | None = None
    limits: dict[str, Any] | None = None


@dataclass(frozen=True)
class FinishReport:
    """What :meth:`RunQueue.finish` did: ``final`` is False when a retry was queued."""

    recorded: bool
    final: bool
    status: str


def backoff_delay(backoff_s: float, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff, jittered to 50-100% of ``backoff_s * 2^(attempt-1)``."""
    base = min(MAX_BACKOFF_S, backoff_s * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).random()
    return base * (0.5 + 0.5 * jitter)


class RunQueue:
    def __init__(self, db: Database, notifier: Notifier, metrics: Metrics | None = None) -> None:
        self._db = db
        self._notifier = notifier
        self._metrics = metrics or Metrics()

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    # ---- enqueue ---------------------------------------------------------------

    def insert(self, session: Session, run: Run, *, flush: bool = True) -> Run:
        """Add a queued (or skipped) run in the caller's transaction and wake workers.

        ``flush=False`` lets a caller inserting many runs (the scheduler) send them
        in one batch at commit.
        """
        session.add(run)
        if flush:
            session.flush()
        if run.status == "queued":
            self._notifier.runs_queued(session)
        return run

    # ---- claim -----------------------------------------------------------------

    def claim(self, worker_id: str, limit: int, lease_s: float) -> list[str]:
        """Move up to ``limit`` due runs to ``running`` for this worker; their ids, oldest first."""
        if limit <= 0:
            return []
        now = utcnow()
        with self._db.write() as session:
            candidates = session.execute(
                select(Run.id, Run.automation_id)
                .where(Run.status == "queued", Run.available_at <= now)
                .order_by(Run.available_at, Run.id)
                .limit(max(limit * 4, 20))
                .with_for_update(skip_locked=True)
            ).all()
            if not candidates:
                return []
            free = self._free_slots(session, {c.automation_id for c in candidates})
            chosen: list[str] = []
            for run_id, automation_id in candidates:
                if len(chosen) == limit:
                    break
                if free.get(automation_id, 0) > 0:
                    free[automation_id] -= 1
                    chosen.append(run_id)
            if chosen:
                session.execute(
                    update(Run)
                    .where(Run.id.in_(chosen), Run.status == "queued")
                    .values(
                        status="running",
                        lease_owner=worker_id,
                        lease_expires_at=now + timedelta(seconds=lease_s),
                        started_at=now,
                    )
                )
        return chosen

    def _free_slots(self, session: Session, automation_ids: Iterable[str]) -> dict[str, int]:
        """Free ``max_running`` slots per automation, with their rows locked in id order."""
        rows = session.execute(
            select(Automation.id, Automation.concurrency)
            .where(Automation.id.in_(sorted(automation_ids)))
            .order_by(Automation.id)
            # NO KEY UPDATE: claimers of one automation serialise, while dispatches
            # (KEY SHARE) keep inserting runs for it without waiting.
            .with_for_update(key_share=True)
        ).all()
        running = dict(
            session.execute(
                select(Run.automation_id, func.count())
                .where(Run.automation_id.in_([r.id for r in rows]), Run.status == "running")
                .group_by(Run.automation_id)
            ).all()
        )
        return {r.id: int(r.concurrency.get("max_running", 1)) - running.get(r.id, 0) for r in rows}

    # ---- while running ---------------------------------------------------------

    def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], lease_s: float
    ) -> tuple[set[str], set[str]]:
        """Renew leases; returns (runs whose cancel was requested, runs this worker lost)."""
        if not run_ids:
            return set(), set()
        now = utcnow()
        with self._db.write() as session:
            session.execute(
                update(Run)
                .where(Run.id.in_(run_ids), Run.lease_owner == worker_id, Run.status == "running")
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
            )
            rows = session.execute(
                select(Run.id, Run.status, Run.lease_owner, Run.cancel_requested).where(
                    Run.id.in_(run_ids)
                )
            ).all()
        cancel = {r.id for r in rows if r.cancel_requested}
        lost = {r.id for r in rows if r.status != "running" or r.lease_owner != worker_id}
        lost |= set(run_ids) - {r.id for r in rows}
        return cancel, lost

    def cancel_requested(self, run_id: str) -> bool:
        with self._db.read() as session:
            return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))

    # ---- finish ----------------------------------------------------------------

    def finish(self, run_id: str, worker_id: str, result: RunResult) -> FinishReport:
        """Record an attempt's end; queue a retry when the policy allows one."""
        now = utcnow()
        with self._db.write() as session:
            run = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one()
            if run.status != "running" or run.lease_owner != worker_id:
                log.warning(
                    "run.finish_ignored", run_id=run_id, status=run.status, reason="lease lost"
                )
                return FinishReport(recorded=False, final=False, status=run.status)
            retry = self._retry_delay(session, run, result.status)
            self._record_attempt(run, result, now)
            if retry is not None:
                self._requeue(run, now + timedelta(seconds=retry), result.error)
                self._notifier.runs_queued(session)
                return FinishReport(recorded=True, final=False, status="queued")
            self._complete(session, run, result.status, now)
            return FinishReport(recorded=True, final=True, status=result.status)

    def _retry_delay(self, session: Session, run: Run, status: str) -> float | None:
        if status not in RETRYABLE or run.cancel_requested:
            return None
        policy = session.scalar(select(Automation.retry).where(Automation.id == run.automation_id))
        policy = policy or {}
        if run.attempt >= int(policy.get("max_attempts", 1)):
            return None
        return backoff_delay(float(policy.get("backoff_s", 30)), run.attempt)

    def _record_attempt(self, run: Run, result: RunResult, now: datetime) -> None:
        run.exit_code, run.error = result.exit_code, result.error
        run.finished_at = now
        run.duration_ms = result.duration_ms
        run.metrics, run.outputs = result.metrics, result.outputs
        run.log_bytes, run.log_truncated = result.log_bytes, result.log_truncated
        run.sandbox, run.limits = result.sandbox, result.limits
        run.status = result.status

    def _requeue(self, run: Run, available_at: datetime, error: str | None) -> None:
        """Keep the attempt in ``attempts`` and put the run back in the queue."""
        run.attempts = [
            *run.attempts,
            {
                "attempt": run.attempt,
                "status": run.status,
                "exit_code": run.exit_code,
                "error": error,
                "started_at": to_rfc3339(run.started_at),
                "finished_at": to_rfc3339(run.finished_at),
            },
        ]
        run.attempt += 1
        run.status = "queued"
        run.available_at = available_at
        run.lease_owner = run.lease_expires_at = None
        run.started_at = run.finished_at = run.exit_code = run.duration_ms = None
        run.error = None

    def _complete(self, session: Session, run: Run, status: str, now: datetime) -> None:
        """The run's final state: counted in its experiment's rollups exactly here."""
        run.status = status
        run.finished_at = run.finished_at or now
        run.lease_owner = run.lease_expires_at = None
        record_finish(session, run)
        self._metrics.runs_finished.labels(status).inc()
        session.execute(
            update(Automation)
            .where(Automation.id == run.automation_id)
            .values(last_run_id=run.id, last_run_status=status)
        )

    def hand_back(self, run_id: str, worker_id: str) -> bool:
        """Re-queue a running run without counting an attempt (graceful shutdown)."""
        with self._db.write() as session:
            result = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.lease_owner == worker_id, Run.status == "running")
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_expires_at=None,
                    started_at=None,
                    available_at=utcnow(),
                )
            )
            if result.rowcount:  # type: ignore[attr-defined]
                self._notifier.runs_queued(session)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # ---- cancel and reap -------------------------------------------------------

    def cancel_queued(self, session: Session, automation_id: str, reason: str) -> int:
        """Cancel every queued run of an automation (it was deleted), in the caller's txn."""
        now = utcnow()
        runs = session.scalars(
            select(Run)
            .where(Run.automation_id == automation_id, Run.status == "queued")
            .with_for_update()
        ).all()
        for run in runs:
            run.error = reason
            self._complete(session, run, "cancelled", now)
        return len(runs)

    def cancel(self, org_id: str, run_id: str) -> Run:
        """Cancel a queued run at once, or ask the worker of a running one to stop it."""
        now = utcnow()
        with self._db.write() as session:
            run = session.scalars(
                select(Run).where(Run.id == run_id, Run.org_id == org_id).with_for_update()
            ).one_or_none()
            if run is None:
                raise NotFound(f"no run with id '{run_id}'")
            if run.status in FINISHED:
                raise Conflict(f"run {run_id} already finished ({run.status})", code="run_finished")
            run.cancel_requested = True
            if run.status == "queued":
                run.error = "cancelled before it started"
                self._complete(session, run, "cancelled", now)
            else:
                self._notifier.run_cancelled(session, run.id)
            session.flush()
            return run

    def reap(self) -> int:
        """Runs whose worker stopped renewing its lease: retry or fail them ('worker lost')."""
        now = utcnow()
        reaped = 0
        with self._db.write() as session:
            runs = session.scalars(
                select(Run)
                .where(Run.status == "running", Run.lease_expires_at < now)
                .with_for_update(skip_locked=True)
                .limit(100)
            ).all()
            for run in runs:
                lost = RunResult(
                    status="failed",
                    exit_code=None,
                    error=WORKER_LOST,
                    duration_ms=_elapsed_ms(run.started_at, now),
                )
                retry = self._retry_delay(session, run, "failed")
                self._record_attempt(run, lost, now)
                if run.cancel_requested:
                    run.status = "cancelled"
                    self._complete(session, run, "cancelled", now)
                elif retry is not None:
                    self._requeue(run, now + timedelta(seconds=retry), WORKER_LOST)
                else:
                    self._complete(session, run, "failed", now)
                log.warning(
                    "run.reaped",
                    run_id=run.id,
                    automation_id=run.automation_id,
                    status=run.status,
                    attempt=run.attempt,
                )
                reaped += 1
            if reaped:
                self._notifier.runs_queued(session)
        return reaped


def _elapsed_ms(start: datetime | None, end: datetime) -> int:
    return int((end - start).total_seconds() * 1000) if start else 0
