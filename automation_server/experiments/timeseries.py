"""Per-variant time series of an experiment, from the per-minute rollups (no scan of runs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, literal, select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import ExperimentMetricMinute, ExperimentMinute, ExperimentRollup
from automation_server.errors import BadRequest, NotFound
from automation_server.experiments.scope import methods_for, scope, variant_order
from automation_server.ids import to_rfc3339, utcnow
from automation_server.pagination import parse_time
from automation_server.security.accounts import Caller

BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21_600, "1d": 86_400}
MAX_POINTS = 2000


class ExperimentTimeseries:
    def __init__(self, db: Database) -> None:
        self._db = db

    def timeseries(
        self,
        caller: Caller,
        experiment_id: str,
        *,
        metric: str | None,
        bucket: str,
        since: str | None,
        until: str | None,
        include_forced: bool = False,
    ) -> dict[str, Any]:
        if bucket not in BUCKETS:
            raise BadRequest(
                f"bucket: must be one of {', '.join(BUCKETS)}",
                field="bucket",
                code="invalid_bucket",
            )
        step = BUCKETS[bucket]
        methods = methods_for(include_forced)
        with self._db.read() as session:
            start, end = self._window(session, caller, experiment_id, step, since, until)
            runs = self._run_buckets(session, caller, experiment_id, methods, start, end, step)
            values = (
                self._metric_buckets(
                    session, caller, experiment_id, methods, metric, start, end, step
                )
                if metric
                else {}
            )
            order = variant_order(session, caller.org_id, experiment_id)
        variants = sorted(
            {v for v, _ in runs} | {v for v, _ in values},
            key=lambda v: (order.get(v, len(order)), v),
        )
        points = range(int(start.timestamp()), int(end.timestamp()), step)
        return {
            "experiment_id": experiment_id,
            "bucket": bucket,
            "metric": metric,
            "since": to_rfc3339(start),
            "until": to_rfc3339(end),
            "series": [
                {
                    "variant": v,
                    "points": [_point(t, runs.get((v, t)), values.get((v, t))) for t in points],
                }
                for v in variants
            ],
        }

    def _window(
        self,
        session: Session,
        caller: Caller,
        experiment_id: str,
        step: int,
        since: str | None,
        until: str | None,
    ) -> tuple[datetime, datetime]:
        r = ExperimentRollup
        first, last = session.execute(
            select(func.min(r.first_at), func.max(r.last_at)).where(
                r.org_id == caller.org_id, r.experiment_id == experiment_id
            )
        ).one()
        if first is None:
            raise NotFound(f"no experiment '{experiment_id}' with runs in this organization")
        start = parse_time(since, "since") or first
        end = parse_time(until, "until") or max(last or first, utcnow())
        start, end = _floor(start, step), _floor(end, step) + timedelta(seconds=step)
        if (end - start).total_seconds() / step > MAX_POINTS:
            if since and until:
                raise BadRequest(
                    f"more than {MAX_POINTS} buckets: choose a larger bucket or a "
                    "shorter since/until range",
                    field="bucket",
                    code="too_many_buckets",
                )
            start = end - timedelta(seconds=step * MAX_POINTS)
        return start, end

    def _run_buckets(
        self,
        session: Session,
        caller: Caller,
        experiment_id: str,
        methods: Sequence[str],
        start: datetime,
        end: datetime,
        step: int,
    ) -> dict[tuple[str, int], tuple[int, int, int]]:
        """Runs, succeeded and finished per (variant, bucket) from the per-minute rollups."""
        m = ExperimentMinute
        t = bucket_of(m.minute, step)
        rows = session.execute(
            select(m.variant, t, func.sum(m.runs), func.sum(m.succeeded), func.sum(m.finished))
            .where(
                *scope(m, caller.org_id, experiment_id, methods),
                m.minute >= _minute(start),
                m.minute < _minute(end),
            )
            .group_by(m.variant, t)
        ).all()
        return {(v, int(b)): (int(n), int(s or 0), int(d or 0)) for v, b, n, s, d in rows}

    def _metric_buckets(
        self,
        session: Session,
        caller: Caller,
        experiment_id: str,
        methods: Sequence[str],
        metric: str | None,
        start: datetime,
        end: datetime,
        step: int,
    ) -> dict[tuple[str, int], tuple[int, float]]:
        m = ExperimentMetricMinute
        t = bucket_of(m.minute, step)
        rows = session.execute(
            select(m.variant, t, func.sum(m.count), func.sum(m.sum))
            .where(
                *scope(m, caller.org_id, experiment_id, methods),
                m.name == metric,
                m.minute >= _minute(start),
                m.minute < _minute(end),
            )
            .group_by(m.variant, t)
        ).all()
        return {(v, int(b)): (int(n), float(total) / int(n)) for v, b, n, total in rows if n}


def bucket_of(minute: Any, step: int) -> Any:
    """The UTC-aligned start (epoch seconds) of the ``step``-second bucket holding a
    minute column (epoch seconds // 60), as a SQL expression (integer division on both
    databases)."""
    return (minute * 60) // literal(step, Integer) * literal(step, Integer)


def _minute(value: datetime) -> int:
    return int(value.timestamp()) // 60


def _floor(value: datetime, step: int) -> datetime:
    seconds = int(value.timestamp()) // step * step
    return datetime.fromtimestamp(seconds, tz=UTC)


def _point(
    t: int, run: tuple[int, int, int] | None, metric: tuple[int, float] | None
) -> dict[str, Any]:
    count, ok, done = run or (0, 0, 0)
    return {
        "t": to_rfc3339(datetime.fromtimestamp(t, tz=UTC)),
        "count": count,
        "finished": done,
        "success_rate": ok / done if done else None,
        "metric_count": metric[0] if metric else 0,
        "metric_mean": metric[1] if metric else None,
    }
