"""Where a run is claimed: the fair claim, with ``max_running`` applied inside the query.

A worker with ``n`` free slots takes the ``n`` oldest runnable runs of any
automation, where a queued run is runnable when it is due (``available_at``
on the database's clock) and its automation has fewer than ``max_running``
runs running, counting the runs claimed in the same statement. A backlog of
one automation at its limit never holds back another's runs.

Two statements. The first finds the ``n`` automations with a free slot whose
oldest runnable run is oldest: the ``n`` oldest eligible runs can only come
from them. The second takes at most ``n`` of each one's oldest due runs (an
index seek per automation), ranks those few per automation, keeps the first
``free`` of each, and starts the ``n`` oldest. Nothing is ranked beyond that,
so a claim costs the same behind a backlog of ten thousand runs as of ten.

PostgreSQL, any number of workers: the first statement locks those
automations with ``FOR NO KEY UPDATE SKIP LOCKED``; the second runs in a new
snapshot, so running counts committed since are seen. Two claimers therefore
never both start an automation's last free slot, never wait for each other
(each skips what the other holds), and dispatches (KEY SHARE) never wait for
either. SQLite has one writer at a time (``BEGIN IMMEDIATE``), so it needs no
lock.

The same transaction loads what the runs need (automation settings, the
variant as it was in the run's revision, encrypted secrets), so starting a
run costs one transaction.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Select, Update, bindparam, func, select, tuple_, union_all, update
from sqlalchemy.orm import Session

from automation_server.db.models import (
    Automation,
    AutomationSecret,
    AutomationState,
    Revision,
    Run,
)
from automation_server.queue.clock import DbClock
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
    environment_digest: str | None
    entrypoint: list[str]
    env: dict[str, str]  # the automation's env, then the variant's
    encrypted_secrets: dict[str, str]
    payload: dict[str, Any]
    timeout_s: int
    network: str
    limits: dict[str, int]
    waited_s: float  # from due (queued or retry time) to claimed
    # The automation's state as of the claim (the run's start): AUTOMATION_STATE.
    state: dict[str, Any] = field(default_factory=dict)


def _running_counts() -> Any:
    return (
        select(Run.automation_id, func.count().label("n"))
        .where(Run.status == RunStatus.RUNNING)
        .group_by(Run.automation_id)
        .subquery("running")
    )


def _queued_automations() -> Any:
    """The automations with queued runs, one index seek each (a loose index scan of
    ``ix_runs_automation_queued``): not one step per queued run."""

    def first_after(previous: Any | None) -> Any:
        stmt = select(Run.automation_id).where(Run.status == RunStatus.QUEUED)
        if previous is not None:
            stmt = stmt.where(Run.automation_id > previous)
        # Ordered as only the queued-run indexes are: PostgreSQL would otherwise walk
        # an automation index through the history, filtering for a queued run.
        return stmt.order_by(Run.automation_id, Run.available_at).limit(1).scalar_subquery()

    found = select(first_after(None).label("aid")).cte("queued_automations", recursive=True)
    return found.union_all(select(first_after(found.c.aid)).where(found.c.aid.is_not(None)))


@cache
def _automations_statement(postgres: bool) -> Select[Any]:
    """Up to ``b_limit`` automations with a runnable run and a free slot, oldest
    runnable run first; on PostgreSQL locked, skipping those another claimer holds."""
    found = _queued_automations()
    # ORDER BY ... LIMIT 1 rather than min(): a seek in ix_runs_automation_queued
    # whatever the planner's statistics say.
    oldest_queued = (
        select(Run.available_at)
        .where(Run.automation_id == found.c.aid, Run.status == RunStatus.QUEUED)
        .order_by(Run.automation_id, Run.available_at)
        .limit(1)
        .scalar_subquery()
    )
    oldest = (
        select(found.c.aid.label("automation_id"), oldest_queued.label("oldest"))
        .where(found.c.aid.is_not(None))
        .subquery("oldest")
    )
    running = _running_counts()
    stmt = (
        select(Automation.id)
        .join(oldest, oldest.c.automation_id == Automation.id)
        .outerjoin(running, running.c.automation_id == Automation.id)
        .where(
            oldest.c.oldest <= DbClock.now_param(postgres),
            Automation.max_running > func.coalesce(running.c.n, 0),
        )
        .order_by(oldest.c.oldest, Automation.id)
        .limit(bindparam("b_limit"))
    )
    if postgres:
        stmt = stmt.with_for_update(of=Automation, skip_locked=True, key_share=True)
    return stmt


def _oldest_of(postgres: bool, i: int) -> Select[Any]:
    """Automation ``b_a{i}``'s ``b_limit`` oldest due runs: one index seek."""
    now = DbClock.now_param(postgres)
    first = (
        select(Run.id, Run.automation_id, Run.available_at)
        .where(
            Run.automation_id == bindparam(f"b_a{i}"),
            Run.status == RunStatus.QUEUED,
            Run.available_at <= now,
        )
        # automation_id first (one value here): an order only the per-automation
        # indexes give, so no plan walks the whole queue by age filtering for it.
        .order_by(Run.automation_id, Run.available_at, Run.id)
        .limit(bindparam("b_limit"))
        .subquery(f"first{i}")
    )
    return select(first.c.id, first.c.automation_id, first.c.available_at)


def _eligible(postgres: bool, automations: int) -> Select[Any]:
    """Ids of the ``b_limit`` oldest candidate runs that fit their automation's free
    slots. The candidates are at most ``b_limit`` runs of each of the automations
    found first: no more of one automation can be among the oldest ``b_limit``,
    so nothing is ranked beyond them, however long a backlog is."""
    candidates = union_all(*(_oldest_of(postgres, i) for i in range(automations)))
    cand = candidates.subquery("candidates")
    running = _running_counts()
    ranked = (
        select(
            cand.c.id,
            cand.c.available_at,
            func.row_number()
            .over(partition_by=cand.c.automation_id, order_by=(cand.c.available_at, cand.c.id))
            .label("rank"),
            (Automation.max_running - func.coalesce(running.c.n, 0)).label("free"),
        )
        .join(Automation, Automation.id == cand.c.automation_id)
        .outerjoin(running, running.c.automation_id == cand.c.automation_id)
        .subquery("ranked")
    )
    return (
        select(ranked.c.id)
        .where(ranked.c.rank <= ranked.c.free)
        .order_by(ranked.c.available_at, ranked.c.id)
        .limit(bindparam("b_limit"))
    )


@cache
def _start_statement(postgres: bool, automations: int) -> Update:
    """Move the eligible runs to ``running`` under the worker's lease, returning them."""
    now = DbClock.now_param(postgres)
    return (
        update(Run)
        .where(Run.id.in_(_eligible(postgres, automations)), Run.status == RunStatus.QUEUED)
        .values(
            status=RunStatus.RUNNING,
            lease_owner=bindparam("b_worker"),
            lease_expires_at=DbClock.after_param(postgres, "lease"),
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
            Run.environment_digest,
            Run.payload,
            Run.available_at,
            Run.started_at,
        )
    )


def start_runs(
    session: Session, clock: DbClock, *, worker_id: str, limit: int, lease_s: float
) -> list[Any]:
    """Claim up to ``limit`` runs for the worker (see the module docstring); their rows."""
    params: dict[str, Any] = {**clock.params(lease=lease_s), "b_limit": limit}
    conn = session.connection()
    automations = list(conn.scalars(_automations_statement(clock.postgres), params))
    if not automations:
        return []
    params.update({f"b_a{i}": a for i, a in enumerate(automations)})
    stmt = _start_statement(clock.postgres, len(automations))
    rows = list(conn.execute(stmt, {**params, "b_worker": worker_id}))
    rows.sort(key=lambda r: (r.available_at, r.id))
    return rows


class RevisionCache:
    """Variant definitions per (automation, revision): revisions never change, so each
    is read from the database once per process (bounded, oldest entries dropped)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def variants(self, session: Session, pairs: set[tuple[str, int]]) -> dict[Any, Any]:
        with self._lock:
            found = {p: self._items[p] for p in pairs if p in self._items}
        missing = sorted(pairs - set(found))
        if missing:
            rows = (
                session.connection()
                .execute(
                    select(Revision.automation_id, Revision.number, Revision.variants).where(
                        tuple_(Revision.automation_id, Revision.number).in_(missing)
                    )
                )
                .all()
            )
            fetched = {(a, n): list(v) for a, n, v in rows}
            found.update(fetched)
            with self._lock:
                self._items.update(fetched)
                while len(self._items) > self._size:
                    self._items.pop(next(iter(self._items)))
        return found


def load_claimed(session: Session, rows: list[Any], revisions: RevisionCache) -> list[ClaimedRun]:
    """What each started run needs, read in the claiming transaction: the automations'
    settings, secrets and state in one query, the (immutable) revisions from the cache."""
    if not rows:
        return []
    variants = revisions.variants(session, {(r.automation_id, r.automation_revision) for r in rows})
    settings: dict[str, Any] = {}
    secrets: dict[str, dict[str, str]] = defaultdict(dict)
    states: dict[str, dict[str, Any]] = {}
    ids = sorted({r.automation_id for r in rows})
    for row in session.connection().execute(_settings_statement(), {"b_ids": ids}):
        settings[row.id] = row
        if row.secret_name is not None:
            secrets[row.id][row.secret_name] = row.ciphertext
        if row.state is not None:
            states[row.id] = dict(row.state)
    return [
        _claimed(
            r,
            settings[r.automation_id],
            variants[(r.automation_id, r.automation_revision)],
            secrets.get(r.automation_id, {}),
            states.get(r.automation_id, {}),
        )
        for r in rows
    ]


@cache
def _settings_statement() -> Select[Any]:
    """The automations' settings, secrets and state (one row per secret), built once."""
    return (
        select(
            Automation.id,
            Automation.name,
            Automation.env,
            Automation.timeout_s,
            Automation.network,
            Automation.limits,
            AutomationSecret.name.label("secret_name"),
            AutomationSecret.ciphertext,
            AutomationState.state,
        )
        .outerjoin(AutomationSecret, AutomationSecret.automation_id == Automation.id)
        .outerjoin(AutomationState, AutomationState.automation_id == Automation.id)
        .where(Automation.id.in_(bindparam("b_ids", expanding=True)))
    )


def _claimed(
    row: Any,
    ctx: Any,
    variants: list[dict[str, Any]],
    secrets: dict[str, str],
    state: dict[str, Any],
) -> ClaimedRun:
    variant = next(v for v in variants if v["name"] == row.variant)
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
        environment_digest=row.environment_digest,
        entrypoint=list(variant["entrypoint"]),
        env={**ctx.env, **variant.get("env", {})},
        encrypted_secrets=dict(secrets),
        payload=dict(row.payload),
        timeout_s=ctx.timeout_s,
        network=ctx.network,
        limits=dict(ctx.limits),
        waited_s=max(0.0, (row.started_at - row.available_at).total_seconds()),
        state=state,
    )
