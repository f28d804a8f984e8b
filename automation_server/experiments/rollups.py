"""Keeping experiment rollups current, inside the transactions that change runs.

:class:`ExperimentRollups` listens to the queue: a run is counted as assigned
when it is created, and its final status, duration and metrics are added when
it finishes for good (not between retry attempts). Only outcomes of origin
``run`` are measured; an infrastructure failure is counted apart
(``infrastructure_failures``) and never as the variant failing.

Counts are upserts (INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n)
on both databases, so concurrent finishers never lose a count: on PostgreSQL
they queue on the row lock, on SQLite on the write lock. Means and spreads
are (n, mean, M2) merged with Chan's formula in the same statement (see
:mod:`automation_server.experiments.stats.moments`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Insert, cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from automation_server.db.models import (
    ExperimentDurationBucket,
    ExperimentMetricMinute,
    ExperimentMetricRollup,
    ExperimentMinute,
    ExperimentRollup,
    RunMetric,
)
from automation_server.experiments.sketch import bucket_index
from automation_server.queue.listeners import RunFacts
from automation_server.statuses import MEASURED, FailureOrigin, RunStatus

STATUS_COLUMNS = ("succeeded", "failed", "timed_out", "cancelled", "skipped")


def _key(run: RunFacts) -> dict[str, Any]:
    return {
        "org_id": run.org_id,
        "experiment_id": run.experiment_id,
        "automation_id": run.automation_id,
        "revision": run.revision,
        "variant": run.variant,
        "method": run.method,
    }


def _minute_key(run: RunFacts) -> dict[str, Any]:
    """Time-series rows are keyed by the minute the run was created in (UTC epoch // 60)."""
    return {
        "org_id": run.org_id,
        "experiment_id": run.experiment_id,
        "variant": run.variant,
        "method": run.method,
        "minute": int(run.created_at.timestamp()) // 60,
    }


def _insert(session: Session, model: Any) -> Insert:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _upsert(
    session: Session,
    model: Any,
    key: dict[str, Any],
    add: dict[str, Any],
    *,
    keep: dict[str, Any] | None = None,
    initial: dict[str, Any] | None = None,
    moments: tuple[str, str, str, float] | None = None,
) -> None:
    """Insert the row, or add ``add`` to its columns; ``keep`` columns take the newest
    value, ``initial`` ones are written by the insert only, and ``moments`` =
    (count, mean, m2 column names, value) merges one observation into them."""
    values = {**key, **add, **(keep or {}), **(initial or {})}
    if moments is not None:
        n, mean, m2, value = moments
        values.update({n: 1, mean: value, m2: 0.0})
    stmt = _insert(session, model).values(**values)
    table = model.__table__
    excluded = stmt.excluded  # type: ignore[attr-defined]
    updates: dict[str, Any] = {name: table.c[name] + excluded[name] for name in add}
    updates.update({name: excluded[name] for name in keep or {}})
    if moments is not None:
        updates.update(_chan(table, excluded, *moments[:3]))
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)  # type: ignore[attr-defined]
    session.execute(stmt)


def _chan(table: Any, excluded: Any, n: str, mean: str, m2: str) -> dict[str, Any]:
    """Chan et al.'s merge of (n, mean, M2) pairs, in SQL (SET sees the old row values)."""
    n_a, n_b = cast(table.c[n], Float), cast(excluded[n], Float)
    delta = excluded[mean] - table.c[mean]
    total = n_a + n_b
    return {
        n: table.c[n] + excluded[n],
        mean: table.c[mean] + delta * n_b / total,
        m2: table.c[m2] + excluded[m2] + delta * delta * n_a * n_b / total,
    }


class ExperimentRollups:
    """The queue's listener that keeps experiment statistics (see the module docstring)."""

    def run_created(self, session: Session, run: RunFacts) -> None:
        if run.experiment_id is None:
            return
        _upsert(session, ExperimentMinute, _minute_key(run), {"runs": 1})
        _upsert(
            session,
            ExperimentRollup,
            _key(run),
            {"assigned": 1},
            keep={"last_at": run.created_at},
            initial={"first_at": run.created_at},
        )

    def run_finished(self, session: Session, run: RunFacts) -> None:
        measured = run.status in MEASURED and run.failure_origin is not FailureOrigin.INFRASTRUCTURE
        metrics = dict(run.metrics) if measured else {}
        if metrics:
            session.execute(
                _insert(session, RunMetric).values(
                    [
                        {
                            "run_id": run.id,
                            "name": name,
                            "org_id": run.org_id,
                            "experiment_id": run.experiment_id,
                            "variant": run.variant,
                            "created_at": run.created_at,
                            "value": float(value),
                        }
                        for name, value in metrics.items()
                    ]
                )
            )
        if run.experiment_id is None:
            return
        self._count_status(session, run, measured)
        if measured:
            self._measure(session, run, metrics)

    def _count_status(self, session: Session, run: RunFacts, measured: bool) -> None:
        if run.failure_origin is FailureOrigin.INFRASTRUCTURE:
            _upsert(session, ExperimentRollup, _key(run), {"infrastructure_failures": 1})
            return
        column = run.status.value
        if column not in STATUS_COLUMNS:
            return
        duration = float(run.duration_ms) if measured and run.duration_ms is not None else None
        _upsert(
            session,
            ExperimentRollup,
            _key(run),
            {column: 1},
            moments=None
            if duration is None
            else ("duration_count", "duration_mean", "duration_m2", duration),
        )
        if duration is not None:
            _upsert(
                session,
                ExperimentDurationBucket,
                {**_key(run), "bucket": bucket_index(duration)},
                {"count": 1},
            )

    def _measure(self, session: Session, run: RunFacts, metrics: dict[str, float]) -> None:
        _upsert(
            session,
            ExperimentMinute,
            _minute_key(run),
            {"finished": 1, "succeeded": int(run.status is RunStatus.SUCCEEDED)},
        )
        for name, value in metrics.items():
            v = float(value)
            _upsert(
                session,
                ExperimentMetricRollup,
                {**_key(run), "name": name},
                {},
                moments=("count", "mean", "m2", v),
            )
            _upsert(
                session,
                ExperimentMetricMinute,
                {**_minute_key(run), "name": name},
                {"count": 1, "sum": v},
            )
