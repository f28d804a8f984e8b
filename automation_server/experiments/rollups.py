"""Keeping experiment rollups current, inside the transactions that change runs.

A run is counted as assigned when it is queued (or recorded as skipped), and
its final status, duration and metrics are added when it finishes for good
(not between retry attempts). Increments are upserts (INSERT ... ON CONFLICT
DO UPDATE SET n = n + excluded.n) on both databases, so concurrent finishers
never lose a count: on PostgreSQL they queue on the row lock, on SQLite on the
write lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from automation_server.db.models import (
    ExperimentDurationBucket,
    ExperimentMetricMinute,
    ExperimentMetricRollup,
    ExperimentMinute,
    ExperimentRollup,
    Run,
    RunMetric,
)
from automation_server.experiments.sketch import bucket_index

STATUS_COLUMNS = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
# Durations and metrics describe runs that executed to an end of their own.
MEASURED = frozenset({"succeeded", "failed", "timed_out"})


def _key(run: Run) -> dict[str, Any]:
    return {
        "org_id": run.org_id,
        "experiment_id": run.experiment_id,
        "automation_id": run.automation_id,
        "revision": run.automation_revision,
        "variant": run.variant,
        "method": run.assignment_method,
    }


def _minute_key(run: Run) -> dict[str, Any]:
    """Time-series rows are keyed by the minute the run was created in (UTC epoch // 60)."""
    return {
        "org_id": run.org_id,
        "experiment_id": run.experiment_id,
        "variant": run.variant,
        "method": run.assignment_method,
        "minute": int(run.created_at.timestamp()) // 60,
    }


def _upsert(
    session: Session,
    model: Any,
    key: dict[str, Any],
    add: dict[str, Any],
    keep: dict[str, Any] | None = None,
    initial: dict[str, Any] | None = None,
) -> None:
    """Insert the row, or add ``add`` to its columns; ``keep`` columns take the newest
    value and ``initial`` ones are written by the insert only."""
    dialect = session.get_bind().dialect.name
    stmt: Insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    values = {**key, **add, **(keep or {}), **(initial or {})}
    stmt = stmt.values(**values)
    table = model.__table__
    updates: dict[str, Any] = {name: table.c[name] + stmt.excluded[name] for name in add}  # type: ignore[attr-defined]
    updates.update({name: stmt.excluded[name] for name in keep or {}})  # type: ignore[attr-defined]
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)  # type: ignore[attr-defined]
    session.execute(stmt)


def record_assignment(session: Session, run: Run) -> None:
    """Count a newly created run (queued or skipped) for its variant."""
    if run.experiment_id is None:
        return
    add = {"assigned": 1}
    if run.status == "skipped":
        add["skipped"] = 1
    _upsert(session, ExperimentMinute, _minute_key(run), {"runs": 1})
    _upsert(
        session,
        ExperimentRollup,
        _key(run),
        add,
        keep={"last_at": run.created_at},
        initial={"first_at": run.created_at},
    )


def record_finish(session: Session, run: Run) -> None:
    """Add a run's final status, duration and metrics to its experiment's rollups."""
    metrics = dict(run.metrics) if run.status in MEASURED else {}
    for name, value in metrics.items():
        session.add(
            RunMetric(
                run_id=run.id,
                name=name,
                org_id=run.org_id,
                experiment_id=run.experiment_id,
                variant=run.variant,
                created_at=run.created_at,
                value=float(value),
            )
        )
    if run.experiment_id is None or run.status not in STATUS_COLUMNS:
        return
    key = _key(run)
    add: dict[str, Any] = {run.status: 1}
    measured = run.status in MEASURED and run.duration_ms is not None
    if measured:
        d = float(run.duration_ms or 0)
        add.update(duration_count=1, duration_sum=d, duration_sum_sq=d * d)
    _upsert(session, ExperimentRollup, key, add)
    if run.status in MEASURED:
        _upsert(
            session,
            ExperimentMinute,
            _minute_key(run),
            {"finished": 1, "succeeded": int(run.status == "succeeded")},
        )
    if measured:
        _upsert(
            session,
            ExperimentDurationBucket,
            {**key, "bucket": bucket_index(float(run.duration_ms or 0))},
            {"count": 1},
        )
    for name, value in metrics.items():
        v = float(value)
        _upsert(
            session,
            ExperimentMetricRollup,
            {**key, "name": name},
            {"count": 1, "sum": v, "sum_sq": v * v},
        )
        _upsert(
            session,
            ExperimentMetricMinute,
            {**_minute_key(run), "name": name},
            {"count": 1, "sum": v},
        )
