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
:mod:`automation_server.experiments.stats.moments`); the per-minute metric rows
keep (n, sum, M2) and merge the same way.

The statements are built once per dialect with bound parameters and run
with plain parameter dicts (several metrics in one executemany), so a
finished run costs a handful of executions and no statement construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Float, Insert, bindparam, cast
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
KEY = ("org_id", "experiment_id", "automation_id", "revision", "variant", "method")
MINUTE_KEY = ("org_id", "experiment_id", "variant", "method", "minute")


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


def _insert(dialect: str, model: Any) -> Insert:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


@cache
def _upsert(
    dialect: str,
    model: Any,
    key: tuple[str, ...],
    add: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
    initial: tuple[str, ...] = (),
    moments: tuple[str, str, str] | None = None,
    spread: tuple[str, str, str] | None = None,
) -> Insert:
    """INSERT the row, or on conflict add the ``add`` columns, take the newest ``keep``
    values, leave ``initial`` ones as first written, and merge one observation into the
    ``moments`` (count, mean, m2) or ``spread`` (count, sum, m2) columns. Every value is
    a bound parameter of its name."""
    names = [*key, *add, *keep, *initial, *(moments or ()), *(spread or ())]
    stmt = _insert(dialect, model).values({name: bindparam(name) for name in names})
    table = model.__table__
    excluded = stmt.excluded  # type: ignore[attr-defined]
    updates: dict[str, Any] = {name: table.c[name] + excluded[name] for name in add}
    updates.update({name: excluded[name] for name in keep})
    if moments is not None:
        updates.update(_chan(table, excluded, *moments))
    if spread is not None:
        updates.update(_chan_of_sums(table, excluded, *spread))
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)  # type: ignore[attr-defined, no-any-return]


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


def _chan_of_sums(table: Any, excluded: Any, n: str, total: str, m2: str) -> dict[str, Any]:
    """Chan's merge for rows that keep (n, sum, M2), the means being sum / n: the minute
    rows kept a sum before M2 was added, and time series still read it. Only deviations
    of means are squared, so nothing cancels. A NULL M2 (unknown, see migration 0011)
    stays NULL: the minute's spread is still not known."""
    n_a, n_b = cast(table.c[n], Float), cast(excluded[n], Float)
    delta = excluded[total] / n_b - table.c[total] / n_a
    return {
        n: table.c[n] + excluded[n],
        total: table.c[total] + excluded[total],
        m2: table.c[m2] + excluded[m2] + delta * delta * n_a * n_b / (n_a + n_b),
    }


@cache
def _plain_insert(dialect: str, model: Any, names: tuple[str, ...]) -> Insert:
    return _insert(dialect, model).values({name: bindparam(name) for name in names})


def _run(session: Session, stmt: Insert, params: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
    session.execute(stmt, params)


class ExperimentRollups:
    """The queue's listener that keeps experiment statistics (see the module docstring)."""

    def run_created(self, session: Session, run: RunFacts) -> None:
        if run.experiment_id is None:
            return
        dialect = session.get_bind().dialect.name
        _run(session, _upsert(dialect, ExperimentMinute, MINUTE_KEY, ("runs",)), {
            **_minute_key(run), "runs": 1,
        })  # fmt: skip
        stmt = _upsert(
            dialect, ExperimentRollup, KEY, ("assigned",), keep=("last_at",), initial=("first_at",)
        )
        _run(session, stmt, {
            **_key(run), "assigned": 1, "last_at": run.created_at, "first_at": run.created_at,
        })  # fmt: skip

    def run_finished(self, session: Session, run: RunFacts) -> None:
        dialect = session.get_bind().dialect.name
        measured = run.status in MEASURED and run.failure_origin is not FailureOrigin.INFRASTRUCTURE
        metrics = {k: float(v) for k, v in run.metrics.items()} if measured else {}
        if metrics:
            names = ("run_id", "name", "org_id", "experiment_id", "variant", "created_at", "value")
            base = {
                "run_id": run.id,
                "org_id": run.org_id,
                "experiment_id": run.experiment_id,
                "variant": run.variant,
                "created_at": run.created_at,
            }
            _run(session, _plain_insert(dialect, RunMetric, names), [
                {**base, "name": name, "value": value} for name, value in metrics.items()
            ])  # fmt: skip
        if run.experiment_id is None:
            return
        self._count_status(session, dialect, run, measured)
        if measured:
            self._measure(session, dialect, run, metrics)

    def _count_status(self, session: Session, dialect: str, run: RunFacts, measured: bool) -> None:
        key = _key(run)
        if run.failure_origin is FailureOrigin.INFRASTRUCTURE:
            stmt = _upsert(dialect, ExperimentRollup, KEY, ("infrastructure_failures",))
            _run(session, stmt, {**key, "infrastructure_failures": 1})
            return
        column = run.status.value
        if column not in STATUS_COLUMNS:
            return
        if not (measured and run.duration_ms is not None):
            _run(session, _upsert(dialect, ExperimentRollup, KEY, (column,)), {**key, column: 1})
            return
        duration = float(run.duration_ms)
        moments = ("duration_count", "duration_mean", "duration_m2")
        stmt = _upsert(dialect, ExperimentRollup, KEY, (column,), moments=moments)
        _run(session, stmt, {
            **key, column: 1, "duration_count": 1, "duration_mean": duration, "duration_m2": 0.0,
        })  # fmt: skip
        bucket = _upsert(dialect, ExperimentDurationBucket, (*KEY, "bucket"), ("count",))
        _run(session, bucket, {**key, "bucket": bucket_index(duration), "count": 1})

    def _measure(
        self, session: Session, dialect: str, run: RunFacts, metrics: dict[str, float]
    ) -> None:
        minute = _minute_key(run)
        stmt = _upsert(dialect, ExperimentMinute, MINUTE_KEY, ("finished", "succeeded"))
        _run(session, stmt, {
            **minute, "finished": 1, "succeeded": int(run.status is RunStatus.SUCCEEDED),
        })  # fmt: skip
        if not metrics:
            return
        key = _key(run)
        rollup = _upsert(
            dialect, ExperimentMetricRollup, (*KEY, "name"), moments=("count", "mean", "m2")
        )
        _run(session, rollup, [
            {**key, "name": name, "count": 1, "mean": value, "m2": 0.0}
            for name, value in metrics.items()
        ])  # fmt: skip
        series = _upsert(
            dialect, ExperimentMetricMinute, (*MINUTE_KEY, "name"), spread=("count", "sum", "m2")
        )
        _run(session, series, [
            {**minute, "name": name, "count": 1, "sum": value, "m2": 0.0}
            for name, value in metrics.items()
        ])  # fmt: skip
