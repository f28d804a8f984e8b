"""Experiment summaries, computed from rollups with SQL aggregation.

The summary reads ``experiment_rollups`` and friends (a few rows per variant and
revision, whatever the number of runs) and hands the sums to ``stats.py``;
nothing here loops over runs. Every formula and its source is in ``stats.py``
and the README.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import (
    Automation,
    ExperimentDurationBucket,
    ExperimentMetricRollup,
    ExperimentRollup,
    Revision,
)
from automation_server.errors import BadRequest, Invalid, NotFound
from automation_server.experiments import stats
from automation_server.experiments.comparisons import (
    ALPHA,
    Declared,
    adjust_for_many,
    comparison,
    metric_facts,
    variant_item,
)
from automation_server.experiments.policy import ArmStats
from automation_server.experiments.scope import methods_for, scope, variant_order
from automation_server.experiments.timeseries import ExperimentTimeseries
from automation_server.ids import to_rfc3339
from automation_server.security.accounts import Caller

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


class ExperimentService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._series = ExperimentTimeseries(db)

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
        methods = methods_for(include_forced)
        with self._db.read() as session:
            groups = self._group_rows(session, caller, experiment_id, by, methods)
            if not groups:
                raise NotFound(f"no experiment '{experiment_id}' with runs in this organization")
            order = variant_order(session, caller.org_id, experiment_id)
            metrics = self._metric_rows(session, caller, experiment_id, by, methods)
            durations = self._duration_rows(session, caller, experiment_id, by, methods)
            srm = self._srm(session, caller.org_id, experiment_id)
            declared = self.declared_metrics(session, caller.org_id, experiment_id)
        names = sorted({v for _, v in groups}, key=lambda v: (order.get(v, len(order)), v))
        control = control or names[0]
        if control not in names:
            raise Invalid(
                f"control: no variant '{control}' in experiment '{experiment_id}'",
                field="control",
                code="unknown_variant",
            )
        items = self._items(groups, metrics, durations, names, control, by, declared)
        reported = {name for by_name in metrics.values() for name in by_name}
        return {
            "experiment_id": experiment_id,
            "by": by,
            "control": control,
            "include_forced": include_forced,
            "metrics": metric_facts(declared, reported),
            "variants": items,
            "multiple_comparisons": adjust_for_many(items),
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

    def declared_metrics(self, session: Session, org_id: str, experiment_id: str) -> Declared:
        """The metrics declared by the experiment's automations (the most recently updated
        automation wins where two declare one metric differently)."""
        rows = session.execute(
            select(Automation.metrics)
            .where(Automation.org_id == org_id, Automation.experiment_id == experiment_id)
            .order_by(Automation.updated_at)
        ).all()
        declared: Declared = {}
        for (metrics,) in rows:
            declared.update(metrics or {})
        return declared

    def _group_col(self, model: Any, by: str) -> list[Any]:
        return [model.revision, model.variant] if by == "revision" else [model.variant]

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
            ).where(*scope(r, caller.org_id, experiment_id, methods))
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
                *scope(m, caller.org_id, experiment_id, methods)
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
            .where(*scope(d, caller.org_id, experiment_id, methods))
            .group_by(*cols, d.bucket)
        ).all()
        out: dict[GroupKey, dict[int, int]] = defaultdict(dict)
        for row in rows:
            bucket, count = row[len(cols) :]
            out[_key(row, by)][int(bucket)] = int(count)
        return out

    def _srm(self, session: Session, org_id: str, experiment_id: str) -> list[dict[str, Any]]:
        """Chi-square of randomly assigned runs against the weights, per revision."""
        r = ExperimentRollup
        rows = session.execute(
            select(r.automation_id, r.revision, r.variant, func.sum(r.assigned))
            .where(*scope(r, org_id, experiment_id, ("random",)))
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
        declared: Declared,
    ) -> list[dict[str, Any]]:
        revisions = sorted({rev for rev, _ in groups}, key=lambda r: r or 0)
        items = []
        for revision in revisions:
            base = (revision, control)
            for name in names:
                key = (revision, name)
                if key not in groups:
                    continue
                item = variant_item(
                    key, groups[key], metrics.get(key, {}), durations.get(key, {}), by, declared
                )
                if name != control and base in groups:
                    item["vs_control"] = comparison(
                        groups[base],
                        groups[key],
                        metrics.get(base, {}),
                        metrics.get(key, {}),
                        declared,
                    )
                items.append(item)
        return items

    def timeseries(self, caller: Caller, experiment_id: str, **query: Any) -> dict[str, Any]:
        """Per-variant series over time (see :mod:`.timeseries`)."""
        return self._series.timeseries(caller, experiment_id, **query)

    # ---- one revision, for champion/challenger decisions ----------------------------

    def revision_arms(
        self, session: Session, org_id: str, experiment_id: str, automation_id: str, revision: int
    ) -> tuple[dict[str, ArmStats], bool]:
        """Per-variant statistics of one revision (randomised runs) and its SRM flag."""
        arms = self.automation_arms(session, org_id, experiment_id, automation_id, revision)
        srm = [
            s
            for s in self._srm(session, org_id, experiment_id)
            if s["automation_id"] == automation_id and s["revision"] == revision
        ]
        return arms, any(s["flagged"] for s in srm)

    def automation_arms(
        self,
        session: Session,
        org_id: str,
        experiment_id: str,
        automation_id: str,
        revision: int | None = None,
    ) -> dict[str, ArmStats]:
        """Per-variant statistics of the runs the server assigned (random or sticky), of
        one revision or, with ``revision=None``, of all of them."""
        r, m = ExperimentRollup, ExperimentMetricRollup
        rows = session.execute(
            select(r.variant, func.sum(r.succeeded), func.sum(r.succeeded + r.failed + r.timed_out))
            .where(*_assigned(r, org_id, experiment_id, automation_id, revision))
            .group_by(r.variant)
        ).all()
        metric_rows = session.execute(
            select(m.variant, m.name, m.count, m.mean, m.m2).where(
                *_assigned(m, org_id, experiment_id, automation_id, revision)
            )
        ).all()
        merged = _merged_metrics(metric_rows, lambda row: (None, str(row[0])), 1)
        metrics = {variant: by_name for (_, variant), by_name in merged.items()}
        return {v: ArmStats(int(ok or 0), int(n or 0), metrics.get(v, {})) for v, ok, n in rows}

    def random_outcomes(
        self, session: Session, org_id: str, experiment_id: str, automation_id: str, revision: int
    ) -> int:
        """Randomly assigned runs of the revision that ended with an outcome of their own."""
        r = ExperimentRollup
        total = session.scalar(
            select(func.sum(r.succeeded + r.failed + r.timed_out)).where(
                r.org_id == org_id,
                r.experiment_id == experiment_id,
                r.automation_id == automation_id,
                r.revision == revision,
                r.method == "random",
            )
        )
        return int(total or 0)


# ---- helpers ---------------------------------------------------------------------


def _assigned(
    model: Any, org_id: str, experiment_id: str, automation_id: str, revision: int | None
) -> list[Any]:
    where = [
        model.org_id == org_id,
        model.experiment_id == experiment_id,
        model.automation_id == automation_id,
        model.method.in_(("random", "sticky")),
    ]
    if revision is not None:
        where.append(model.revision == revision)
    return where


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
