"""Cumulative effects: each treatment minus the control over time, with the summary's
always-valid interval, from the per-minute rollups (no scan of runs).

At the end of every bucket the point is what the summary would have said then
about everything created before it: the Welch difference of the success
rates (0/1 outcomes) or of a metric's means, and the mSPRT interval tuned as
the summary tunes it (tau2 from the pooled variance of the data up to then).
A run counts in the minute it was created in, as the time series count it.

The minute rows of a metric are merged per bucket in SQL with a two-pass sum
(each minute's mean against its bucket's mean, from a window function), so
the spread of a bucket never comes from sum(x^2) - sum(x)^2 / n; the few bucket
rows are then merged in Python with Chan's formula (:mod:`.stats.moments`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, Select, cast, func, select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import ExperimentMetricMinute, ExperimentMinute
from automation_server.experiments import stats
from automation_server.experiments.comparisons import ALPHA
from automation_server.experiments.scope import methods_for, scope, variant_order
from automation_server.experiments.stats.checks import finite
from automation_server.experiments.timeseries import BUCKETS, MAX_POINTS, bucket_of
from automation_server.ids import to_rfc3339, utcnow
from automation_server.security.accounts import Caller

SUCCESS_RATE = "success_rate"
Buckets = dict[str, dict[int, stats.MeanStats]]  # variant -> bucket start (epoch s) -> stats


@dataclass(frozen=True, slots=True)
class EffectPoint:
    """Treatment minus control over every run created before ``t``."""

    t: datetime
    control: stats.MeanStats
    treatment: stats.MeanStats
    estimate: float | None
    interval: tuple[float, float] | None  # always-valid (1 - ALPHA)
    tau2: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "t": to_rfc3339(self.t),
            "control_count": self.control.count,
            "treatment_count": self.treatment.count,
            "estimate": finite(self.estimate),
            "always_valid": list(self.interval) if self.interval else None,
            "tau2": self.tau2,
        }


@dataclass(frozen=True, slots=True)
class EffectSeries:
    variant: str
    points: tuple[EffectPoint, ...]


@dataclass(frozen=True, slots=True)
class Effects:
    measure: str  # "success_rate" or a metric's name
    control: str
    bucket: str
    # Minutes before this are left out: their metric spread is not known (migration 0011).
    complete_from: datetime | None
    series: tuple[EffectSeries, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "control": self.control,
            "bucket": self.bucket,
            "alpha": ALPHA,
            "complete_from": to_rfc3339(self.complete_from),
            "series": [
                {"variant": s.variant, "points": [p.to_json() for p in s.points]}
                for s in self.series
            ],
        }


def compare(
    control: stats.MeanStats, treatment: stats.MeanStats, *, rate: bool
) -> tuple[float | None, tuple[float, float] | None, float | None]:
    """(estimate, always-valid interval, tau2) of treatment minus control, as the summary
    computes them (Welch standard error, data-driven tau2); a rate's interval is cut at
    [-1, 1], where a difference of two rates lies."""
    if control.mean is None or treatment.mean is None:
        return None, None, None
    estimate = treatment.mean - control.mean
    diff = stats.welch_diff(control, treatment)
    tuning = stats.default_tau2(control, treatment, alpha=ALPHA)
    if diff is None or tuning is None:
        return estimate, None, None
    low, high = stats.msprt_interval(
        diff.estimate, diff.std_error**2, tau2=tuning.tau2, alpha=ALPHA
    )
    if rate:
        low, high = max(-1.0, low), min(1.0, high)
    return diff.estimate, (low, high), tuning.tau2


def cumulative(
    buckets: Buckets,
    control: str,
    treatment: str,
    starts: Sequence[int],
    step: int,
    *,
    rate: bool,
) -> tuple[EffectPoint, ...]:
    """One point at the end of each bucket of ``starts`` (ascending), over everything up to
    it; buckets before the first start are folded into the first point."""
    ours, theirs = buckets.get(control, {}), buckets.get(treatment, {})
    first = starts[0] if starts else 0
    c = _merged(s for t, s in ours.items() if t < first)
    v = _merged(s for t, s in theirs.items() if t < first)
    points = []
    for start in starts:
        c = c.merge(ours.get(start, stats.MeanStats(0)))
        v = v.merge(theirs.get(start, stats.MeanStats(0)))
        if not (c.count and v.count):
            continue  # nothing to compare yet
        estimate, interval, tau2 = compare(c, v, rate=rate)
        when = datetime.fromtimestamp(start + step, tz=UTC)
        points.append(EffectPoint(when, c, v, estimate, interval, tau2))
    return tuple(points)


def _merged(parts: Any) -> stats.MeanStats:
    out = stats.MeanStats(0)
    for part in parts:
        out = out.merge(part)
    return out


class ExperimentEffects:
    """Reads the minute rollups into :class:`Effects` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def effects(
        self,
        caller: Caller,
        experiment_id: str,
        *,
        measure: str,
        control: str,
        bucket: str,
        include_forced: bool = False,
        now: datetime | None = None,
    ) -> Effects:
        step = BUCKETS[bucket]
        methods = methods_for(include_forced)
        with self._db.read() as session:
            where = _scope_of(caller, experiment_id, methods, measure)
            cutoff = _unknown_until(session, where, measure)
            buckets = _buckets(session, where, measure, step, cutoff)
            order = variant_order(session, caller.org_id, experiment_id)
        starts = _starts(buckets, step, now or utcnow())
        treatments = sorted(
            (v for v in buckets if v != control), key=lambda v: (order.get(v, len(order)), v)
        )
        series = tuple(
            EffectSeries(
                v, cumulative(buckets, control, v, starts, step, rate=measure == SUCCESS_RATE)
            )
            for v in treatments
        )
        complete_from = None if cutoff is None else datetime.fromtimestamp(cutoff * 60, tz=UTC)
        return Effects(measure, control, bucket, complete_from, series)


def _scope_of(
    caller: Caller, experiment_id: str, methods: Sequence[str], measure: str
) -> list[Any]:
    if measure == SUCCESS_RATE:
        return scope(ExperimentMinute, caller.org_id, experiment_id, methods)
    m = ExperimentMetricMinute
    return [*scope(m, caller.org_id, experiment_id, methods), m.name == measure]


def _unknown_until(session: Session, where: list[Any], measure: str) -> int | None:
    """The first minute after the last one whose metric spread is unknown (NULL M2), or
    None: the effect is measured from there on, over the same minutes for every arm."""
    if measure == SUCCESS_RATE:
        return None  # a rate's spread follows from its counts
    m = ExperimentMetricMinute
    last = session.scalar(select(func.max(m.minute)).where(*where, m.m2.is_(None)))
    return None if last is None else int(last) + 1


def _buckets(
    session: Session, where: list[Any], measure: str, step: int, cutoff: int | None
) -> Buckets:
    if measure == SUCCESS_RATE:
        query = _rate_query(where, step)
    else:
        since = [ExperimentMetricMinute.minute >= cutoff] if cutoff is not None else []
        query = _metric_query([*where, *since], step)
    out: Buckets = defaultdict(dict)
    for variant, start, part in _rows(session, query, measure):
        out[variant][start] = part
    return dict(out)


def _rows(session: Session, query: Select[Any], measure: str) -> list[tuple[str, int, Any]]:
    rows = session.execute(query).all()
    if measure == SUCCESS_RATE:
        return [
            (v, int(t), stats.MeanStats.from_successes(int(ok or 0), int(n)))
            for v, t, n, ok in rows
            if n
        ]
    return [
        (v, int(t), stats.MeanStats(int(n), float(total) / int(n), max(0.0, float(m2 or 0.0))))
        for v, t, n, total, m2 in rows
        if n
    ]


def _rate_query(where: list[Any], step: int) -> Select[Any]:
    m = ExperimentMinute
    t = bucket_of(m.minute, step)
    return (
        select(m.variant, t, func.sum(m.finished), func.sum(m.succeeded))
        .where(*where)
        .group_by(m.variant, t)
    )


def _metric_query(where: list[Any], step: int) -> Select[Any]:
    """(variant, bucket, n, sum, M2) with M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2)
    over the bucket's minute rows i, the bucket's mean from a window over them."""
    m = ExperimentMetricMinute
    t = bucket_of(m.minute, step)
    part = (m.variant, t)
    centre = cast(func.sum(m.sum).over(partition_by=part), Float) / cast(
        func.sum(m.count).over(partition_by=part), Float
    )
    rows = (
        select(m.variant, t.label("t"), m.count, m.sum, m.m2, centre.label("centre"))
        .where(*where)
        .subquery()
    )
    deviation = rows.c.sum / cast(rows.c.count, Float) - rows.c.centre
    return select(
        rows.c.variant,
        rows.c.t,
        func.sum(rows.c.count),
        func.sum(rows.c.sum),
        func.sum(rows.c.m2 + cast(rows.c.count, Float) * deviation * deviation),
    ).group_by(rows.c.variant, rows.c.t)


def _starts(buckets: Buckets, step: int, now: datetime) -> list[int]:
    """Bucket starts from the first with data to the one holding ``now`` (or the last
    data), at most MAX_POINTS of them (earlier ones are folded into the first point)."""
    found = [t for by_start in buckets.values() for t in by_start]
    if not found:
        return []
    last = max(max(found), int(now.timestamp()) // step * step)
    first = max(min(found), last - step * (MAX_POINTS - 1))
    return list(range(first, last + 1, step))
