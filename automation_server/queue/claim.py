"""Where a run is claimed: the fair claim, with ``max_running`` applied inside the query.

A worker with ``n`` free slots takes the ``n`` oldest runnable runs of any
automation, where a queued run is runnable when it is due (``available_at``
on the database's clock) and its automation has fewer than ``max_running``
runs running, counting the runs claimed in the same statement (a window
ranks each automation's queued runs, and only the first ``free`` of each are
eligible). A backlog of one automation at its limit never holds back
another's runs.

PostgreSQL, any number of workers: the claim first locks the automations it
may take runs from, oldest runnable run first, with ``FOR NO KEY UPDATE SKIP
LOCKED``; a second statement (a new snapshot, so running counts committed
since are seen) claims within those automations and returns the runs. Two
claimers therefore never both start an automation's last free slot, never
wait for each other (each skips what the other holds), and dispatches (KEY
SHARE) never wait for either. SQLite has one writer at a time (``BEGIN
IMMEDIATE``), so the second statement alone is safe there.

The same transaction loads what the runs need (automation settings, the
variant as it was in the run's revision, encrypted secrets), so starting a
run costs one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, tuple_, update
from sqlalchemy.orm import Session

from automation_server.db.models import Automation, AutomationSecret, Revision, Run
from automation_server.statuses import RunStatus


@dataclass(frozen=True)
class ClaimedRun:
    """A run moved to ``running`` for one worker, with everything its attempt needs."""

    run_id: str
    automation_id: str
    automation_name: str
    experiment_id: str | None
    variant: str
    revision: int
    trigger: str
    attempt: int
    digest: str
    entrypoint: list[str]
    env: dict[str, str]  # the automation's env, then the variant's
    encrypted_secrets: dict[str, str]
    payload: dict[str, Any]
    timeout_s: int
    network: str
    limits: dict[str, int]
    waited_s: float  # from due (queued or retry time) to claimed


def _running_counts() -> Any:
    return (
        select(Run.automation_id, func.count().label("n"))
        .where(Run.status == RunStatus.RUNNING)
        .group_by(Run.automation_id)
        .subquery("running")
    )


def lock_claimable_automations(
    session: Session, now: ColumnElement[datetime], limit: int
) -> list[str]:
    """PostgreSQL: lock up to ``limit`` automations with a runnable run and a free slot.

    Ordered by their oldest runnable run; automations another claimer holds
    are skipped, not waited for.
    """
    oldest = (
        select(Run.automation_id, func.min(Run.available_at).label("oldest"))
        .where(Run.status == RunStatus.QUEUED, Run.available_at <= now)
        .group_by(Run.automation_id)
        .subquery("oldest")
    )
    running = _running_counts()
    query = (
        select(Automation.id)
        .join(oldest, oldest.c.automation_id == Automation.id)
        .outerjoin(running, running.c.automation_id == Automation.id)
        .where(Automation.max_running > func.coalesce(running.c.n, 0))
        .order_by(oldest.c.oldest, Automation.id)
        .limit(limit)
        .with_for_update(of=Automation, skip_locked=True, key_share=True)
    )
    return list(session.scalars(query))


def _eligible(
    now: ColumnElement[datetime], limit: int, automations: list[str] | None
) -> Select[Any]:
    """Ids of the ``limit`` oldest queued runs that fit their automation's free slots."""
    running = _running_counts()
    ranked = (
        select(
            Run.id,
            Run.available_at,
            func.row_number()
            .over(partition_by=Run.automation_id, order_by=(Run.available_at, Run.id))
            .label("rank"),
            (Automation.max_running - func.coalesce(running.c.n, 0)).label("free"),
        )
        .join(Automation, Automation.id == Run.automation_id)
        .outerjoin(running, running.c.automation_id == Run.automation_id)
        .where(Run.status == RunStatus.QUEUED, Run.available_at <= now)
    )
    if automations is not None:
        ranked = ranked.where(Run.automation_id.in_(automations))
    sub = ranked.subquery("ranked")
    return (
        select(sub.c.id)
        .where(sub.c.rank <= sub.c.free)
        .order_by(sub.c.available_at, sub.c.id)
        .limit(limit)
    )


def start_runs(
    session: Session,
    *,
    worker_id: str,
    limit: int,
    now: ColumnElement[datetime],
    lease_until: ColumnElement[datetime],
    automations: list[str] | None,
) -> list[Any]:
    """Move the eligible runs to ``running`` under this worker's lease; their rows."""
    stmt = (
        update(Run)
        .where(Run.id.in_(_eligible(now, limit, automations)), Run.status == RunStatus.QUEUED)
        .values(
            status=RunStatus.RUNNING,
            lease_owner=worker_id,
            lease_expires_at=lease_until,
            started_at=now,
        )
        .returning(
            Run.id,
            Run.automation_id,
            Run.automation_revision,
            Run.experiment_id,
            Run.variant,
            Run.trigger,
            Run.attempt,
            Run.tarball_digest,
            Run.payload,
            Run.available_at,
            Run.started_at,
        )
    )
    rows = list(session.execute(stmt).all())
    rows.sort(key=lambda r: (r.available_at, r.id))
    return rows


def load_claimed(session: Session, rows: list[Any]) -> list[ClaimedRun]:
    """What each started run needs, read in the claiming transaction."""
    if not rows:
        return []
    pairs = {(r.automation_id, r.automation_revision) for r in rows}
    context = {
        (c.id, c.number): c
        for c in session.execute(
            select(
                Automation.id,
                Automation.name,
                Automation.env,
                Automation.timeout_s,
                Automation.network,
                Automation.limits,
                Revision.number,
                Revision.variants,
            )
            .join(Revision, Revision.automation_id == Automation.id)
            .where(tuple_(Revision.automation_id, Revision.number).in_(sorted(pairs)))
        )
    }
    secrets: dict[str, dict[str, str]] = defaultdict(dict)
    for automation_id, name, ciphertext in session.execute(
        select(
            AutomationSecret.automation_id, AutomationSecret.name, AutomationSecret.ciphertext
        ).where(AutomationSecret.automation_id.in_({r.automation_id for r in rows}))
    ):
        secrets[automation_id][name] = ciphertext
    return [_claimed(r, context[(r.automation_id, r.automation_revision)], secrets) for r in rows]


def _claimed(row: Any, ctx: Any, secrets: dict[str, dict[str, str]]) -> ClaimedRun:
    variant = next(v for v in ctx.variants if v["name"] == row.variant)
    return ClaimedRun(
        run_id=row.id,
        automation_id=row.automation_id,
        automation_name=ctx.name,
        experiment_id=row.experiment_id,
        variant=row.variant,
        revision=row.automation_revision,
        trigger=row.trigger,
        attempt=row.attempt,
        digest=row.tarball_digest,
        entrypoint=list(variant["entrypoint"]),
        env={**ctx.env, **variant.get("env", {})},
        encrypted_secrets=dict(secrets.get(row.automation_id, {})),
        payload=dict(row.payload),
        timeout_s=ctx.timeout_s,
        network=ctx.network,
        limits=dict(ctx.limits),
        waited_s=max(0.0, (row.started_at - row.available_at).total_seconds()),
    )
