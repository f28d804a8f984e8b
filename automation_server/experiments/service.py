"""Experiment summaries and time series, computed from rollups with SQL aggregation.

The summary reads ``experiment_rollups`` and friends (a few rows per variant and
revision, whatever the number of runs) and hands the sums to ``stats.py``;
nothing here loops over runs. Every formula and its source is in ``stats.py``
and the README.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, func, literal, select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import (
    Automation,
    ExperimentDurationBucket,
    ExperimentMetricMinute,
    ExperimentMetricRollup,
    ExperimentMinute,
    ExperimentRollup,
    Revision,
)
from automation_server.errors import BadRequest, Invalid, NotFound
from automation_server.experiments import stats
from automation_server.experiments.policy import ArmStats
from automation_server.experiments.sketch import quantile
from automation_server.ids import to_rfc3339, utcnow
from automation_server.pagination import parse_time
from automation_server.security.accounts import Caller

ALPHA = 0.05
BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21_600, "1d": 86_400}
MAX_POINTS = 2000
COUNTS = (
    "assigned",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "infrastructure_failures",
)

GroupKey = tuple[int | None, str]  # (revision or None, variant)


def _methods(include_forced: bool) -> tuple[str, ...]:
    return ("random", "sticky", "forced") if include_forced else ("random", "sticky")


class ExperimentService:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- list -------------------------------------------------------------------

    def list_all(self, caller: Caller) -> dict[str, Any]:
        r = ExperimentRollup
        query = (
            select(
                r.experiment_id,
                func.sum(r.assigned),
                func.sum(r.succeeded + r.failed + r.timed_out + r.cancelled + r.skipped),
                func.min(r.first_at),
                func.max(r.last_at),
                func.count(func.distinct(r.variant)),
            )
            .where(r.org_id == caller.org_id)
            .group_by(r.experiment_id)
            .order_by(func.max(r.last_at).desc())
        )
        with self._db.read() as session:
            rows = session.execute(query).all()
            automations = self._automations_by_experiment(session, caller)
        return {
            "items": [
                {
                    "experiment_id": e,
                    "runs": int(assigned or 0),
                    "runs_finished": int(done or 0),
                    "variants": int(variants),
                    "first_run_at": to_rfc3339(first),
                    "last_activity_at": to_rfc3339(last),
                    "automation_ids": automations.get(e, []),
                }
                for e, assigned, done, first, last, variants in rows
            ]
        }

    def _automations_by_experiment(self, session: Session, caller: Caller) -> dict[str, list[str]]:
        pairs = session.execute(
            select(ExperimentRollup.experiment_id, ExperimentRollup.automation_id)
            .distinct()
            .where(ExperimentRollup.org_id == caller.org_id)
        ).all()
        out: dict[str, list[str]] = defaultdict(list)
        for experiment_id, automation_id in pairs:
            out[experiment_id].append(automation_id)
        return {k: sorted(v) for k, v in out.items()}

    # ---- summary ------------------------------------------------------------------

    def summary(
        self,
        caller: Caller,
        experiment_id: str,
        *,
        by: str = "variant",
        control: str | None = None,
        include_forced: bool = False,
    ) -> dict[str, Any]:
        if by not in ("variant", "revision"):
            raise BadRequest("by: must be 'variant' or 'revision'", field="by", code="invalid_by")
        methods = _methods(include_forced)
        with self._db.read() as session:
            groups = self._group_rows(session, caller, experiment_id, by, methods)
            if not groups:
                raise NotFound(f"no experiment '{experiment_id}' with runs in this organization")
            order = self._variant_order(session, caller, experiment_id)
            metrics = self._metric_rows(session, caller, experiment_id, by, methods)
            durations = self._duration_rows(session, caller, experiment_id, by, methods)
            srm = self._srm(session, caller.org_id, experiment_id)
        names = sorted({v for _, v in groups}, key=lambda v: (order.get(v, len(order)), v))
        control = control or names[0]
        if control not in names:
            raise Invalid(
                f"control: no variant '{control}' in experiment '{experiment_id}'",
                field="control",
                code="unknown_variant",
            )
        items = self._items(groups, metrics, durations, names, control, by)
        return {
            "experiment_id": experiment_id,
            "by": by,
            "control": control,
            "include_forced": include_forced,
            "variants": items,
            "srm": srm,
            "srm_flagged": any(s["flagged"] for s in srm),
            "always_valid": {
                "method": "mixture sequential probability ratio test (normal mixture)",
                "alpha": ALPHA,
                "confidence": 1 - ALPHA,
                "tuning": "per comparison: tau2 = r*(alpha) * 2 * pooled variance / 100, "
                "narrowest at 100 runs per variant; each comparison states its tau2",
            },
        }

    def _group_col(self, model: Any, by: str) -> list[Any]:
        return [model.revision, model.variant] if by == "revision" else [model.variant]

    def _scope(
        self, model: Any, org_id: str, experiment_id: str, methods: Sequence[str]
    ) -> list[ColumnElement[bool]]:
        return [
            model.org_id == org_id,
            model.experiment_id == experiment_id,
            model.method.in_(methods),
        ]

    def _group_rows(
        self, session: Session, caller: Caller, experiment_id: str, by: str, methods: Sequence[str]
    ) -> dict[GroupKey, dict[str, Any]]:
        """Counts per group (summed in SQL) and the duration moments (merged with Chan's
        formula over the few rollup rows of each group)."""
        r = ExperimentRollup
        cols = self._group_col(r, by)
        rows = session.execute(
            select(
                *cols,
                *(getattr(r, c) for c in COUNTS),
                r.duration_count,
                r.duration_mean,
                r.duration_m2,
            ).where(*self._scope(r, caller.org_id, experiment_id, methods))
        ).all()
        out: dict[GroupKey, dict[str, Any]] = {}
        for row in rows:
            group = out.setdefault(
                _key(row, by), {**dict.fromkeys(COUNTS, 0), "duration": stats.MeanStats(0)}
            )
            values = row[len(cols) :]
            for name, value in zip(COUNTS, values, strict=False):
                group[name] += int(value or 0)
            n, mean, m2 = values[len(COUNTS) :]
            group["duration"] = group["duration"].merge(
                stats.MeanStats(int(n or 0), float(mean or 0.0), float(m2 or 0.0))
            )
        return out

    def _metric_rows(
        self, session: Session, caller: Caller, experiment_id: str, by: str, methods: Sequence[str]
    ) -> dict[GroupKey, dict[str, stats.MeanStats]]:
        m = ExperimentMetricRollup
        cols = self._group_col(m, by)
        rows = session.execute(
            select(*cols, m.name, m.count, m.mean, m.m2).where(
                *self._scope(m, caller.org_id, experiment_id, methods)
            )
        ).all()
        return _merged_metrics(rows, lambda row: _key(row, by), len(cols))

    def _duration_rows(
        self, session: Session, caller: Caller, experiment_id: str, by: str, methods: Sequence[str]
    ) -> dict[GroupKey, dict[int, int]]:
        d = ExperimentDurationBucket
        cols = self._group_col(d, by)
        rows = session.execute(
            select(*cols, d.bucket, func.sum(d.count))
            .where(*self._scope(d, caller.org_id, experiment_id, methods))
            .group_by(*cols, d.bucket)
        ).all()
        out: dict[GroupKey, dict[int, int]] = defaultdict(dict)
        for row in rows:
            bucket, count = row[len(cols) :]
            out[_key(row, by)][int(bucket)] = int(count)
        return out

    def _variant_order(
        self, session: Session, caller: Caller, experiment_id: str
    ) -> dict[str, int]:
        """Variants in the order of the experiment's newest revision (the first is the control)."""
        latest = session.execute(
            select(Revision.variants)
            .join(Automation, Automation.id == Revision.automation_id)
            .where(Automation.org_id == caller.org_id, Revision.experiment_id == experiment_id)
            .order_by(Revision.created_at.desc())
            .limit(1)
        ).scalar()
        return {v["name"]: i for i, v in enumerate(latest or [])}

    def _srm(self, session: Session, org_id: str, experiment_id: str) -> list[dict[str, Any]]:
        """Chi-square of randomly assigned runs against the weights, per revision."""
        r = ExperimentRollup
        rows = session.execute(
            select(r.automation_id, r.revision, r.variant, func.sum(r.assigned))
            .where(*self._scope(r, org_id, experiment_id, ("random",)))
            .group_by(r.automation_id, r.revision, r.variant)
        ).all()
        observed: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
        for automation_id, revision, variant, count in rows:
            observed[(automation_id, revision)][variant] = int(count)
        out = []
        for (automation_id, number), counts in sorted(observed.items()):
            rev = session.get(Revision, (automation_id, number))
            weights = {v["name"]: int(v["weight"]) for v in (rev.variants if rev else [])}
            names = list(weights) + [v for v in counts if v not in weights]
            result = stats.srm_check(
                [counts.get(v, 0) for v in names], [weights.get(v, 0) for v in names]
            )
            out.append(
                {
                    "automation_id": automation_id,
                    "revision": number,
                    "observed": {v: counts.get(v, 0) for v in names},
                    "weights": weights,
                    **result.to_json(),
                }
            )
        return out

    def _items(
        self,
        groups: dict[GroupKey, dict[str, Any]],
        metrics: dict[GroupKey, dict[str, stats.MeanStats]],
        durations: dict[GroupKey, dict[int, int]],
        names: list[str],
        control: str,
        by: str,
    ) -> list[dict[str, Any]]:
        revisions = sorted({rev for rev, _ in groups}, key=lambda r: r or 0)
        items = []
        for revision in revisions:
            base = (revision, control)
            for name in names:
                key = (revision, name)
                if key not in groups:
                    continue
                item = _variant_item(
                    key, groups[key], metrics.get(key, {}), durations.get(key, {}), by
                )
                if name != control and base in groups:
                    item["vs_control"] = _comparison(
                        groups[base], groups[key], metrics.get(base, {}), metrics.get(key, {})
                    )
                items.append(item)
        return items

    # ---- one revision, for champion/challenger decisions ----------------------------

    def revision_arms(
        self, session: Session, org_id: str, experiment_id: str, automation_id: str, revision: int
    ) -> tuple[dict[str, ArmStats], bool]:
        """Per-variant statistics of one revision (randomised runs) and its SRM flag."""
        r, m = ExperimentRollup, ExperimentMetricRollup
        scope = (
            r.org_id == org_id,
            r.experiment_id == experiment_id,
            r.automation_id == automation_id,
            r.revision == revision,
            r.method.in_(("random", "sticky")),
        )
        rows = session.execute(
            select(r.variant, func.sum(r.succeeded), func.sum(r.succeeded + r.failed + r.timed_out))
            .where(*scope)
            .group_by(r.variant)
        ).all()
        metric_rows = session.execute(
            select(m.variant, m.name, m.count, m.mean, m.m2).where(
                m.org_id == org_id,
                m.experiment_id == experiment_id,
                m.automation_id == automation_id,
                m.revision == revision,
                m.method.in_(("random", "sticky")),
            )
        ).all()
        merged = _merged_metrics(metric_rows, lambda row: (None, str(row[0])), 1)
        metrics = {variant: by_name for (_, variant), by_name in merged.items()}
        arms = {v: ArmStats(int(ok or 0), int(n or 0), metrics.get(v, {})) for v, ok, n in rows}
        srm = [
            s
            for s in self._srm(session, org_id, experiment_id)
            if s["automation_id"] == automation_id and s["revision"] == revision
        ]
        return arms, any(s["flagged"] for s in srm)

    # ---- time series ---------------------------------------------------------------

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
        methods = _methods(include_forced)
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
            order = self._variant_order(session, caller, experiment_id)
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
        t = (m.minute * 60) // literal(step, Integer) * literal(step, Integer)
        rows = session.execute(
            select(m.variant, t, func.sum(m.runs), func.sum(m.succeeded), func.sum(m.finished))
            .where(
                *self._scope(m, caller.org_id, experiment_id, methods),
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
        t = (m.minute * 60) // literal(step, Integer) * literal(step, Integer)
        rows = session.execute(
            select(m.variant, t, func.sum(m.count), func.sum(m.sum))
            .where(
                *self._scope(m, caller.org_id, experiment_id, methods),
                m.name == metric,
                m.minute >= _minute(start),
                m.minute < _minute(end),
            )
            .group_by(m.variant, t)
        ).all()
        return {(v, int(b)): (int(n), float(total) / int(n)) for v, b, n, total in rows if n}


# ---- helpers ---------------------------------------------------------------------


def _key(row: Any, by: str) -> GroupKey:
    return (int(row[0]), str(row[1])) if by == "revision" else (None, str(row[0]))


def _merged_metrics(
    rows: Sequence[Any], key_of: Callable[[Any], GroupKey], offset: int
) -> dict[GroupKey, dict[str, stats.MeanStats]]:
    """(name, count, mean, m2) rollup rows merged per group and metric (Chan et al.)."""
    out: dict[GroupKey, dict[str, stats.MeanStats]] = defaultdict(dict)
    for row in rows:
        name, count, mean, m2 = row[offset:]
        part = stats.MeanStats(int(count), float(mean), float(m2))
        by_name = out[key_of(row)]
        by_name[name] = by_name.get(name, stats.MeanStats(0)).merge(part)
    return out


def _variant_item(
    key: GroupKey,
    g: dict[str, Any],
    metrics: dict[str, stats.MeanStats],
    durations: dict[int, int],
    by: str,
) -> dict[str, Any]:
    finished = {s: int(g[s]) for s in ("succeeded", "failed", "timed_out", "cancelled", "skipped")}
    # Measured outcomes (origin "run") only: a lost worker says nothing about the variant.
    trials = finished["succeeded"] + finished["failed"] + finished["timed_out"]
    infra = int(g["infrastructure_failures"])
    finished["failed"] += infra  # by status, as the runs show
    wilson = stats.wilson_interval(finished["succeeded"], trials)
    item: dict[str, Any] = {"variant": key[1]}
    if by == "revision":
        item["revision"] = key[0]
    item.update(
        {
            "runs_assigned": int(g["assigned"]),
            "runs_finished": finished,
            "infrastructure_failures": infra,
            "success_rate": {
                "estimate": finished["succeeded"] / trials if trials else None,
                "interval": list(wilson) if wilson else None,
                "successes": finished["succeeded"],
                "trials": trials,
                "method": "wilson",
            },
            "duration_ms": {
                "count": g["duration"].count,
                "p50": quantile(durations, 0.5),
                "p95": quantile(durations, 0.95),
                "mean": g["duration"].mean,
            },
            "metrics": {name: _metric_item(m) for name, m in sorted(metrics.items())},
            "vs_control": None,
        }
    )
    return item


def _metric_item(m: stats.MeanStats) -> dict[str, Any]:
    interval = stats.t_interval(m)
    return {
        "count": m.count,
        "mean": m.mean,
        "interval": list(interval) if interval else None,
        "method": "student-t",
    }


def _rates(g: dict[str, Any]) -> tuple[int, int]:
    trials = int(g["succeeded"] + g["failed"] + g["timed_out"])
    return int(g["succeeded"]), trials


def _comparison(
    base: dict[str, Any],
    other: dict[str, Any],
    base_metrics: dict[str, stats.MeanStats],
    metrics: dict[str, stats.MeanStats],
) -> dict[str, Any]:
    s_c, n_c = _rates(base)
    s_v, n_v = _rates(other)
    rate = _compare(
        stats.MeanStats.from_successes(s_c, n_c), stats.MeanStats.from_successes(s_v, n_v)
    )
    _clip_to_rate_range(rate)
    rate["prob_better"] = stats.prob_beats_control_rate(s_c, n_c, s_v, n_v) if n_c and n_v else None
    rate["prob_better_method"] = "beta(1,1) posteriors"
    out: dict[str, Any] = {"success_rate": rate, "metrics": {}}
    for name in sorted(set(metrics) & set(base_metrics)):
        cmp = _compare(base_metrics[name], metrics[name])
        cmp["prob_better"] = stats.prob_beats_control_mean(base_metrics[name], metrics[name])
        cmp["prob_better_method"] = "normal approximation"
        out["metrics"][name] = cmp
    return out


def _clip_to_rate_range(comparison: dict[str, Any]) -> None:
    """A difference of two rates lies in [-1, 1]: intervals are cut there (still valid,
    since the true difference cannot lie outside)."""
    for part in (comparison.get("difference"), comparison.get("always_valid")):
        if part and part.get("interval"):
            low, high = part["interval"]
            part["interval"] = [max(-1.0, low), min(1.0, high)]


def _compare(a: stats.MeanStats, b: stats.MeanStats) -> dict[str, Any]:
    """Welch difference (b - a) and its always-valid mSPRT interval."""
    diff = stats.welch_diff(a, b)
    if diff is None:
        point = b.mean - a.mean if a.mean is not None and b.mean is not None else None
        return {
            "difference": {"estimate": point, "interval": None, "method": "welch"},
            "always_valid": None,
        }
    tuning = stats.default_tau2(a, b, alpha=ALPHA)
    always: dict[str, Any] | None = None
    if tuning is not None:
        low, high = stats.msprt_interval(
            diff.estimate, diff.std_error**2, tau2=tuning.tau2, alpha=ALPHA
        )
        always = {"interval": [low, high], **tuning.to_json()}
    return {"difference": diff.to_json(), "always_valid": always}


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
